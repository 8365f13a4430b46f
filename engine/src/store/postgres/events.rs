//! Pushed events: stored once per id, with the runs they start.

use super::waits::end_waits;
use super::*;
use crate::store::rows::{PushedEventRow, PUSHED_EVENT_COLS};
use crate::store::{pushed_again, subscribed, Events, NewEvent};
use owlclaw_core::wire::{PushedEvent, ReceivedEvent};

impl PostgresStore {
    /// One attempt of [`Events::push_event`]. The unique `(tenant, id)` makes a concurrent push
    /// of the same id (another replica) wait for this one, then find it stored.
    async fn push_event_tx(&self, event: &NewEvent, now: DateTime<Utc>) -> R<PushedEvent> {
        let mut tx = self.pool.begin().await?;
        let runs: Vec<RunId> = event.runs.iter().map(|r| r.id).collect();
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO pushed_events (tenant, id, key, payload, runs, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant, id) DO NOTHING RETURNING seq",
        )
        .bind(&event.tenant)
        .bind(&event.id)
        .bind(&event.key)
        .bind(event.payload.to_string())
        .bind(serde_json::json!(runs).to_string())
        .bind(micros(now))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(seq) = inserted else {
            let row: PushedEventRow = sqlx::query_as(&format!(
                "SELECT {PUSHED_EVENT_COLS} FROM pushed_events WHERE tenant = $1 AND id = $2"
            ))
            .bind(&event.tenant)
            .bind(&event.id)
            .fetch_one(&mut *tx)
            .await?;
            return Ok(pushed_again(event, row.event()?)?);
        };
        let mut wakes = Wakes::default();
        insert_runs_tx(&mut tx, &event.runs, now, true, &mut wakes).await?;
        let received = ReceivedEvent {
            id: event.id.clone(),
            key: event.key.clone(),
            payload: event.payload.clone(),
            pushed_at: now,
        };
        let resumed = end_waits(&mut tx, &event.tenant, seq, &received, now, &mut wakes).await?;
        notify(&mut tx, wakes).await?;
        tx.commit().await?;
        Ok(PushedEvent {
            id: received.id,
            key: received.key,
            payload: received.payload,
            created_at: now,
            runs,
            created: true,
            resumed,
        })
    }
}

#[async_trait]
impl Events for PostgresStore {
    async fn push_event(&self, event: NewEvent, now: DateTime<Utc>) -> Result<PushedEvent> {
        let event = &event;
        self.retry(|| self.push_event_tx(event, now)).await
    }

    async fn subscribers(&self, tenant: &str, key: &str) -> Result<Vec<TaskDef>> {
        let defs: Vec<String> =
            sqlx::query_scalar("SELECT def FROM tasks WHERE tenant = $1 ORDER BY name")
                .bind(tenant)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.place.db(e))?;
        Ok(subscribed(defs, key))
    }
}
