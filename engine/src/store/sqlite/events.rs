//! Pushed events: stored once per id, with the runs they start.

use super::waits::end_waits;
use super::*;
use crate::store::rows::{PushedEventRow, PUSHED_EVENT_COLS};
use crate::store::{pushed_again, subscribed, Events, NewEvent};
use owlclaw_core::wire::{PushedEvent, ReceivedEvent};

/// The tenant's event `id`, if stored.
fn stored(conn: &Connection, tenant: &str, id: &str) -> Result<Option<PushedEvent>> {
    one(
        conn,
        &format!("SELECT {PUSHED_EVENT_COLS} FROM pushed_events WHERE tenant = ?1 AND id = ?2"),
        params![tenant, id],
        PushedEventRow::from_sqlite,
    )?
    .map(PushedEventRow::event)
    .transpose()
}

#[async_trait]
impl Events for SqliteStore {
    async fn push_event(&self, event: NewEvent, now: DateTime<Utc>) -> Result<PushedEvent> {
        self.write(move |c| {
            if let Some(existing) = stored(c, &event.tenant, &event.id)? {
                return pushed_again(&event, existing);
            }
            let runs: Vec<RunId> = event.runs.iter().map(|r| r.id).collect();
            exec(
                c,
                "INSERT INTO pushed_events (tenant, id, key, payload, runs, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    event.tenant,
                    event.id,
                    event.key,
                    event.payload.to_string(),
                    json!(runs).to_string(),
                    micros(now)
                ],
            )?;
            let seq = c.last_insert_rowid();
            insert_runs_tx(c, &event.runs, now, true)?;
            let received = ReceivedEvent {
                id: event.id,
                key: event.key,
                payload: event.payload,
                pushed_at: now,
            };
            let resumed = end_waits(c, &event.tenant, seq, &received, now)?;
            Ok(PushedEvent {
                id: received.id,
                key: received.key,
                payload: received.payload,
                created_at: now,
                runs,
                created: true,
                resumed,
            })
        })
        .await
    }

    async fn subscribers(&self, tenant: &str, key: &str) -> Result<Vec<TaskDef>> {
        let (tenant, key) = (tenant.to_string(), key.to_string());
        self.read(move |c| {
            let defs = all(
                c,
                "SELECT def FROM tasks WHERE tenant = ?1 ORDER BY name",
                params![tenant],
                |r| r.get::<_, String>(0),
            )?;
            Ok(subscribed(defs, &key))
        })
        .await
    }
}
