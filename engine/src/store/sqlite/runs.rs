//! Runs: insert, read, list, cancel, retry, delete.

use super::*;

pub(super) fn load(conn: &Connection, tenant: &str, id: RunId) -> Result<Option<RunSnapshot>> {
    let row = one(
        conn,
        "SELECT * FROM runs WHERE id = ?1 AND tenant = ?2",
        params![id.to_string(), tenant],
        RunRow::from_sqlite,
    )?;
    row.map(RunRow::snapshot).transpose()
}

/// Inserts runs; see [`Store::insert_runs`]. With `ignore_conflicts`, an existing id is skipped
/// silently (cron ticks).
pub(super) fn insert_runs_tx(
    conn: &Connection,
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
        let inserted: Vec<(i64, String)> = all(
            conn,
            "INSERT INTO runs (id, tenant, task, status, attempt, max_attempts, retries, priority, input, owner, \
             idempotency_key, parent_id, metadata, timeout_ms, backoff, run_at, created_at) \
             SELECT value->>0, value->>1, value->>2, value->>3, 0, value->>4, value->>5, value->>6, value->>7, \
             value->>8, value->>9, value->>10, value->>11, value->>12, value->>13, value->>14, ?2 \
             FROM json_each(?1) WHERE true ON CONFLICT(id) DO NOTHING RETURNING seq, id",
            params![Value::Array(rows).to_string(), micros(now)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
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
                    let existing =
                        load(conn, &r.tenant, r.id)?.ok_or_else(|| Error::IdempotencyConflict {
                            key: r.idempotency_key.clone().unwrap_or_default(),
                            existing: r.id,
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
        enqueue(conn, queue)?;
        if !timers.is_empty() {
            exec(
                conn,
                "INSERT INTO timers (run_seq, due_at) SELECT value->>0, value->>1 FROM json_each(?1)",
                params![Value::Array(timers).to_string()],
            )?;
        }
        if !events.is_empty() {
            exec(
                conn,
                "INSERT INTO events (run_seq, at, from_status, to_status, attempt, worker, reason) \
                 SELECT value->>0, ?2, NULL, value->>1, 0, NULL, value->>2 FROM json_each(?1)",
                params![Value::Array(events).to_string(), micros(now)],
            )?;
        }
    }
    Ok(out)
}

/// Deletes runs by seq with everything that refers to them.
pub(super) fn delete_seqs(conn: &Connection, seqs: &[i64]) -> Result<usize> {
    if seqs.is_empty() {
        return Ok(0);
    }
    for table in ["events", "steps", "queue", "timers", "leases"] {
        delete_from(conn, table, seqs)?;
    }
    exec(
        conn,
        "DELETE FROM runs WHERE seq IN (SELECT value FROM json_each(?1))",
        params![seqs_json(seqs)],
    )
}

#[async_trait]
impl Runs for SqliteStore {
    async fn insert_runs(&self, runs: Vec<NewRun>, now: DateTime<Utc>) -> Result<Vec<Inserted>> {
        self.write(move |c| insert_runs_tx(c, &runs, now, false))
            .await
    }

    async fn get_run(&self, tenant: &str, id: RunId) -> Result<Option<RunSnapshot>> {
        let tenant = tenant.to_string();
        self.read(move |c| load(c, &tenant, id)).await
    }

    async fn list_runs(&self, tenant: &str, filter: &ListFilter) -> Result<RunPage> {
        let (q, limit) = list_query(tenant, filter)?;
        self.read(move |c| {
            let rows = all(
                c,
                &q.sql,
                rusqlite::params_from_iter(&q.params),
                RunRow::from_sqlite,
            )?;
            page_of(rows, limit)
        })
        .await
    }

    async fn run_events(&self, tenant: &str, id: RunId) -> Result<Vec<RunEvent>> {
        let tenant = tenant.to_string();
        self.read(move |c| {
            let seq: i64 = one(
                c,
                "SELECT seq FROM runs WHERE id = ?1 AND tenant = ?2",
                params![id.to_string(), tenant],
                |r| r.get(0),
            )?
            .ok_or_else(|| Error::run_not_found(id))?;
            let rows = all(
                c,
                &format!("SELECT {EVENT_COLS} FROM events WHERE run_seq = ?1 ORDER BY id"),
                params![seq],
                EventRow::from_sqlite,
            )?;
            rows.into_iter().map(|r| r.event(id)).collect()
        })
        .await
    }

    async fn cancel_run(&self, tenant: &str, id: RunId, now: DateTime<Utc>) -> Result<RunSnapshot> {
        command(self, tenant, id, Command::Cancel, now).await
    }

    async fn retry_run(&self, tenant: &str, id: RunId, now: DateTime<Utc>) -> Result<RunSnapshot> {
        command(self, tenant, id, Command::Retry, now).await
    }

    async fn delete_runs(&self, tenant: &str, ids: &[RunId]) -> Result<usize> {
        let tenant = tenant.to_string();
        let ids = ids_json(ids);
        self.write(move |c| {
            let seqs: Vec<i64> = all(
                c,
                "SELECT seq FROM runs WHERE tenant = ?1 AND id IN (SELECT value FROM json_each(?2))",
                params![tenant, ids],
                |r| r.get(0),
            )?;
            delete_seqs(c, &seqs)
        })
        .await
    }

    async fn purge(&self, before: DateTime<Utc>, limit: u32) -> Result<usize> {
        self.write(move |c| {
            let seqs: Vec<i64> = all(
                c,
                "SELECT seq FROM runs WHERE finished_at IS NOT NULL AND finished_at < ?1 LIMIT ?2",
                params![micros(before), i64::from(limit)],
                |r| r.get(0),
            )?;
            delete_seqs(c, &seqs)
        })
        .await
    }
}

/// An operator's command on one run.
#[derive(Debug, Clone, Copy)]
enum Command {
    Cancel,
    Retry,
}

/// An operator's command on one run (cancel, retry): the life cycle decides on the run's state
/// read in a write transaction; returns the run as it is after.
async fn command(
    store: &SqliteStore,
    tenant: &str,
    id: RunId,
    command: Command,
    now: DateTime<Utc>,
) -> Result<RunSnapshot> {
    let tenant = tenant.to_string();
    store
        .write(move |c| {
            let mut st = state_by_id(c, &tenant, id)?.ok_or_else(|| Error::run_not_found(id))?;
            let happened = match command {
                Command::Cancel => Happening::Cancel,
                Command::Retry => Happening::Retry,
            };
            let change = st.plan(happened, now)?;
            apply(c, change.as_slice(), now)?;
            load(c, &tenant, id)?.ok_or_else(|| Error::run_not_found(id))
        })
        .await
}
