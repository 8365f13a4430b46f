//! Runs inserted inside an application's transaction (`enqueue_in`) through sqlx, on the
//! engine's own database: the rows [`insert_runs_tx`](super::runs::insert_runs_tx) writes, with
//! the same statements, on the application's connection.

use super::runs::{
    INSERT_EVENT, INSERT_EXPIRY, INSERT_LINKS, INSERT_QUEUE, INSERT_RUN, INSERT_TIMER,
    INSERT_WORKFLOW,
};
use super::*;
use crate::store::app_connection_error as app;
use sqlx::SqliteConnection;

/// The file of the `main` database of a connection, as SQLite resolved it (empty in memory).
async fn app_database_file(conn: &mut SqliteConnection) -> Result<String> {
    let rows: Vec<(i64, String, String)> = sqlx::query_as("PRAGMA database_list")
        .fetch_all(&mut *conn)
        .await
        .map_err(app)?;
    Ok(rows
        .into_iter()
        .find(|(_, name, _)| name == "main")
        .map(|(_, _, file)| file)
        .unwrap_or_default())
}

impl SqliteStore {
    pub(super) async fn insert_in_app_tx(
        &self,
        conn: &mut SqliteConnection,
        runs: Vec<NewRun>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Inserted>> {
        let ours: String = self
            .read(|c| {
                Ok(
                    one(c, "PRAGMA database_list", [], |r| r.get::<_, String>(2))?
                        .unwrap_or_default(),
                )
            })
            .await?;
        let theirs = app_database_file(conn).await?;
        if ours.is_empty() || ours != theirs {
            return Err(Error::invalid_input(
                "transaction",
                format!(
                    "the transaction is on {theirs:?}, not on the engine's database {ours:?}: \
                     runs can only be enqueued in a transaction on the engine's own database file"
                ),
            ));
        }
        let now_us = micros(now);
        let mut out = Vec::with_capacity(runs.len());
        for r in &runs {
            let status = if r.run_at > now {
                RunStatus::Scheduled
            } else {
                RunStatus::Queued
            };
            let done = sqlx::query(INSERT_RUN)
                .bind(r.id.to_string())
                .bind(&r.tenant)
                .bind(&r.task)
                .bind(status.as_str())
                .bind(i64::from(r.retries) + 1)
                .bind(i64::from(r.retries))
                .bind(i64::from(r.priority))
                .bind(r.input.to_string())
                .bind(&r.owner)
                .bind(&r.idempotency_key)
                .bind(r.parent_id.map(|p| p.to_string()))
                .bind(r.metadata.as_ref().map(|m| m.to_string()))
                .bind(r.timeout.as_millis() as i64)
                .bind(serde_json::to_string(&r.backoff).unwrap_or_default())
                .bind(micros(r.run_at.max(now)))
                .bind(now_us)
                .bind(r.concurrency_key())
                .bind(r.expires_at.map(micros))
                .execute(&mut *conn)
                .await
                .map_err(app)?;
            if done.rows_affected() == 0 {
                // The id exists: an idempotency key used again.
                let conflict = || Error::IdempotencyConflict {
                    key: r.idempotency_key.clone().unwrap_or_default(),
                    existing: r.id,
                };
                let (task, input): (String, String) =
                    sqlx::query_as("SELECT task, input FROM runs WHERE id = ?1 AND tenant = ?2")
                        .bind(r.id.to_string())
                        .bind(&r.tenant)
                        .fetch_optional(&mut *conn)
                        .await
                        .map_err(app)?
                        .ok_or_else(conflict)?;
                let same_input =
                    serde_json::from_str::<Value>(&input).ok() == Some(r.input.clone());
                if task != r.task || !same_input {
                    return Err(conflict());
                }
                // Committed before this transaction: the engine's connections see it; inserted
                // earlier in this one: as it was inserted.
                let existing = match self.get_run(&r.tenant, r.id).await? {
                    Some(s) => s,
                    None => r.snapshot(status, now),
                };
                out.push(Inserted::Existing(existing));
                continue;
            }
            let seq = done.last_insert_rowid();
            if status == RunStatus::Scheduled {
                sqlx::query(INSERT_TIMER)
                    .bind(seq)
                    .bind(micros(r.run_at))
                    .execute(&mut *conn)
                    .await
                    .map_err(app)?;
            } else {
                sqlx::query(INSERT_QUEUE)
                    .bind(seq)
                    .bind(&r.tenant)
                    .bind(&r.task)
                    .bind(i64::from(r.priority))
                    .bind(r.concurrency_key())
                    .execute(&mut *conn)
                    .await
                    .map_err(app)?;
            }
            sqlx::query(INSERT_EVENT)
                .bind(seq)
                .bind(now_us)
                .bind(status.as_str())
                .bind(&r.reason)
                .execute(&mut *conn)
                .await
                .map_err(app)?;
            if let Some(at) = r.expires_at {
                sqlx::query(INSERT_EXPIRY)
                    .bind(seq)
                    .bind(&r.tenant)
                    .bind(r.id.to_string())
                    .bind(micros(at))
                    .execute(&mut *conn)
                    .await
                    .map_err(app)?;
            }
            if r.workflow {
                sqlx::query(INSERT_WORKFLOW)
                    .bind(seq)
                    .bind(&r.tenant)
                    .bind(r.id.to_string())
                    .execute(&mut *conn)
                    .await
                    .map_err(app)?;
            }
            if !r.links.is_empty() {
                sqlx::query(INSERT_LINKS)
                    .bind(seq)
                    .bind(&r.tenant)
                    .bind(r.id.to_string())
                    .bind(serde_json::to_string(&r.links.on_success).unwrap_or_default())
                    .bind(serde_json::to_string(&r.links.on_error).unwrap_or_default())
                    .execute(&mut *conn)
                    .await
                    .map_err(app)?;
            }
            out.push(Inserted::Created(r.snapshot(status, now)));
        }
        Ok(out)
    }
}
