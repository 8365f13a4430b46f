//! Runs: insert, read, list, cancel, retry, delete.

use super::*;

pub(super) async fn load(
    conn: &mut SqliteConnection,
    tenant: &str,
    id: RunId,
) -> Result<Option<RunSnapshot>> {
    let row: Option<RunRow> = sqlx::query_as("SELECT * FROM runs WHERE id = ? AND tenant = ?")
        .bind(id.to_string())
        .bind(tenant)
        .fetch_optional(conn)
        .await
        .map_err(db)?;
    row.map(RunRow::snapshot).transpose()
}

/// Inserts runs; see [`Store::insert_runs`]. With `ignore_conflicts`, an existing id is skipped
/// silently (cron ticks).
pub(super) async fn insert_runs_tx(
    conn: &mut SqliteConnection,
    runs: &[NewRun],
    now: DateTime<Utc>,
    ignore_conflicts: bool,
) -> Result<Vec<Inserted>> {
    let mut out = Vec::with_capacity(runs.len());
    for chunk in runs.chunks(CHUNK) {
        let rows: Vec<Value> = chunk
            .iter()
            .map(|r| {
                let status = if r.run_at > now {
                    "scheduled"
                } else {
                    "queued"
                };
                json!([
                    r.id.to_string(),
                    r.tenant,
                    r.task,
                    status,
                    r.retries + 1,
                    r.retries,
                    r.priority,
                    r.input.to_string(),
                    r.owner,
                    r.idempotency_key,
                    r.parent_id.map(|p| p.to_string()),
                    r.metadata.as_ref().map(|m| m.to_string()),
                    r.timeout.as_millis() as u64,
                    serde_json::to_string(&r.backoff).unwrap_or_default(),
                    micros(r.run_at.max(now)),
                ])
            })
            .collect();
        let inserted: Vec<(i64, String)> = sqlx::query_as(
            "INSERT INTO runs (id, tenant, task, status, attempt, max_attempts, retries, priority, input, owner, \
             idempotency_key, parent_id, metadata, timeout_ms, backoff, run_at, created_at) \
             SELECT value->>0, value->>1, value->>2, value->>3, 0, value->>4, value->>5, value->>6, value->>7, \
             value->>8, value->>9, value->>10, value->>11, value->>12, value->>13, value->>14, ?2 \
             FROM json_each(?1) WHERE true ON CONFLICT(id) DO NOTHING RETURNING seq, id",
        )
        .bind(Value::Array(rows).to_string())
        .bind(micros(now))
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
        let mut seqs: HashMap<String, i64> = inserted.into_iter().map(|(s, id)| (id, s)).collect();
        let mut queue = Vec::new();
        let mut timers = Vec::new();
        let mut events = Vec::new();
        for r in chunk {
            let id = r.id.to_string();
            // `remove`: a second request with the same id in one batch finds the first one.
            match seqs.remove(&id) {
                Some(seq) => {
                    let status = if r.run_at > now {
                        timers.push(json!([seq, micros(r.run_at)]));
                        RunStatus::Scheduled
                    } else {
                        queue.push(json!([seq, r.tenant, r.task, r.priority]));
                        RunStatus::Queued
                    };
                    events.push(json!([seq, status.as_str(), r.reason]));
                    out.push(Inserted::Created(r.snapshot(status, now)));
                }
                None if ignore_conflicts => {}
                None => {
                    let existing = load(&mut *conn, &r.tenant, r.id).await?.ok_or_else(|| {
                        Error::IdempotencyConflict {
                            key: r.idempotency_key.clone().unwrap_or_default(),
                            existing: r.id,
                        }
                    })?;
                    if existing.input != r.input || existing.task != r.task {
                        return Err(Error::IdempotencyConflict {
                            key: r.idempotency_key.clone().unwrap_or_default(),
                            existing: r.id,
                        });
                    }
                    out.push(Inserted::Existing(existing));
                }
            }
        }
        if !queue.is_empty() {
            sqlx::query(
                "INSERT INTO queue (run_seq, tenant, task, priority) \
                 SELECT value->>0, value->>1, value->>2, value->>3 FROM json_each(?)",
            )
            .bind(Value::Array(queue).to_string())
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        }
        if !timers.is_empty() {
            sqlx::query("INSERT INTO timers (run_seq, due_at) SELECT value->>0, value->>1 FROM json_each(?)")
                .bind(Value::Array(timers).to_string())
                .execute(&mut *conn)
                .await
                .map_err(db)?;
        }
        if !events.is_empty() {
            sqlx::query(
                "INSERT INTO events (run_seq, at, from_status, to_status, attempt, worker, reason) \
                 SELECT value->>0, ?2, NULL, value->>1, 0, NULL, value->>2 FROM json_each(?1)",
            )
            .bind(Value::Array(events).to_string())
            .bind(micros(now))
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        }
    }
    Ok(out)
}

/// Deletes runs by seq with everything that refers to them.
pub(super) async fn delete_seqs(conn: &mut SqliteConnection, seqs: &[i64]) -> Result<usize> {
    if seqs.is_empty() {
        return Ok(0);
    }
    let list = seqs_json(seqs);
    for table in ["events", "steps", "queue", "timers", "leases"] {
        sqlx::query(&format!(
            "DELETE FROM {table} WHERE run_seq IN (SELECT value FROM json_each(?))"
        ))
        .bind(&list)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    }
    let r = sqlx::query("DELETE FROM runs WHERE seq IN (SELECT value FROM json_each(?))")
        .bind(&list)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    Ok(r.rows_affected() as usize)
}

#[async_trait]
impl Runs for SqliteStore {
    async fn insert_runs(&self, runs: Vec<NewRun>, now: DateTime<Utc>) -> Result<Vec<Inserted>> {
        let mut tx = self.begin().await?;
        let out = insert_runs_tx(&mut tx, &runs, now, false).await?;
        tx.commit().await.map_err(db)?;
        Ok(out)
    }

    async fn get_run(&self, tenant: &str, id: RunId) -> Result<Option<RunSnapshot>> {
        let mut conn = self.read.acquire().await.map_err(db)?;
        load(&mut conn, tenant, id).await
    }

    async fn list_runs(&self, tenant: &str, filter: &ListFilter) -> Result<RunPage> {
        let (mut q, limit) = list_query(tenant, filter)?;
        let rows: Vec<RunRow> = q.build_query_as().fetch_all(&self.read).await.map_err(db)?;
        page_of(rows, limit)
    }

    async fn run_events(&self, tenant: &str, id: RunId) -> Result<Vec<RunEvent>> {
        let mut conn = self.read.acquire().await.map_err(db)?;
        let seq: i64 = sqlx::query_scalar("SELECT seq FROM runs WHERE id = ? AND tenant = ?")
            .bind(id.to_string())
            .bind(tenant)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?
            .ok_or_else(|| Error::run_not_found(id))?;
        let rows: Vec<EventRow> = sqlx::query_as(&format!(
            "SELECT {EVENT_COLS} FROM events WHERE run_seq = ? ORDER BY id"
        ))
        .bind(seq)
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
        rows.into_iter().map(|r| r.event(id)).collect()
    }

    async fn cancel_run(&self, tenant: &str, id: RunId, now: DateTime<Utc>) -> Result<RunSnapshot> {
        command(self, tenant, id, Happening::Cancel, now).await
    }

    async fn retry_run(&self, tenant: &str, id: RunId, now: DateTime<Utc>) -> Result<RunSnapshot> {
        command(self, tenant, id, Happening::Retry, now).await
    }

    async fn delete_runs(&self, tenant: &str, ids: &[RunId]) -> Result<usize> {
        let mut tx = self.begin().await?;
        let seqs: Vec<i64> = sqlx::query_scalar(
            "SELECT seq FROM runs WHERE tenant = ?1 AND id IN (SELECT value FROM json_each(?2))",
        )
        .bind(tenant)
        .bind(ids_json(ids))
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        let n = delete_seqs(&mut tx, &seqs).await?;
        tx.commit().await.map_err(db)?;
        Ok(n)
    }

    async fn purge(&self, before: DateTime<Utc>, limit: u32) -> Result<usize> {
        let mut tx = self.begin().await?;
        let seqs: Vec<i64> = sqlx::query_scalar(
            "SELECT seq FROM runs WHERE finished_at IS NOT NULL AND finished_at < ?1 LIMIT ?2",
        )
        .bind(micros(before))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        let n = delete_seqs(&mut tx, &seqs).await?;
        tx.commit().await.map_err(db)?;
        Ok(n)
    }
}

/// An operator's command on one run (cancel, retry): the life cycle decides on the run's state
/// read in a write transaction; returns the run as it is after.
async fn command(
    store: &SqliteStore,
    tenant: &str,
    id: RunId,
    command: Happening<'_>,
    now: DateTime<Utc>,
) -> Result<RunSnapshot> {
    let mut tx = store.begin().await?;
    let mut st = state_by_id(&mut tx, tenant, id)
        .await?
        .ok_or_else(|| Error::run_not_found(id))?;
    let change = st.plan(command, now)?;
    apply(&mut tx, change.as_slice(), now).await?;
    let snap = load(&mut tx, tenant, id)
        .await?
        .ok_or_else(|| Error::run_not_found(id))?;
    tx.commit().await.map_err(db)?;
    Ok(snap)
}
