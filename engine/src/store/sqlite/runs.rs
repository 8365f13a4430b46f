//! Runs: insert, read, list, cancel, retry, delete.

use super::*;
use crate::store::limits::{displaced, displacing};

pub(super) fn load(conn: &Connection, tenant: &str, id: RunId) -> Result<Option<RunSnapshot>> {
    let row = one(
        conn,
        "SELECT * FROM runs WHERE id = ?1 AND tenant = ?2",
        params![id.to_string(), tenant],
        RunRow::from_sqlite,
    )?;
    row.map(RunRow::snapshot).transpose()
}

/// Runs finished per minute and status (see [`Runs::ended_per_minute`]): `$1` the tenant, `$2`
/// and `$3` the bounds in µs (in this order: SQLite numbers `$N` by first appearance). The index
/// on `finished_at` bounds the scan to the window. PostgreSQL reads its `finished` table instead.
const ENDED_PER_MINUTE: &str = "SELECT finished_at / 60000000 AS m, status, count(*) FROM runs \
     WHERE tenant = $1 AND finished_at >= $2 AND finished_at < $3 GROUP BY m, status";

/// The statements that insert a run, shared by the engine's connection and an application's
/// transaction (`enqueue_in`, through sqlx).
pub(super) const INSERT_RUN: &str = "INSERT INTO runs (id, tenant, task, status, attempt, \
     max_attempts, retries, priority, input, owner, idempotency_key, parent_id, metadata, \
     timeout_ms, backoff, run_at, created_at, concurrency_key, expires_at) VALUES (?1, ?2, ?3, \
     ?4, 0, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18) \
     ON CONFLICT(id) DO NOTHING";
pub(super) const INSERT_QUEUE: &str =
    "INSERT INTO queue (run_seq, tenant, task, priority, ckey) VALUES (?1, ?2, ?3, ?4, ?5)";
pub(super) const INSERT_TIMER: &str = "INSERT INTO timers (run_seq, due_at) VALUES (?1, ?2)";
pub(super) const INSERT_EVENT: &str = "INSERT INTO events (run_seq, at, from_status, to_status, \
     attempt, worker, reason) VALUES (?1, ?2, NULL, ?3, 0, NULL, ?4)";
pub(super) const INSERT_EXPIRY: &str =
    "INSERT INTO expiries (run_seq, tenant, id, at) VALUES (?1, ?2, ?3, ?4)";
pub(super) const INSERT_WORKFLOW: &str =
    "INSERT INTO workflow_runs (run_seq, tenant, id, done) VALUES (?1, ?2, ?3, 0)";
pub(super) const INSERT_LINKS: &str =
    "INSERT INTO links (run_seq, tenant, id, on_success, on_error) VALUES (?1, ?2, ?3, ?4, ?5)";

/// Inserts runs; see [`Store::insert_runs`]. With `ignore_conflicts`, an existing id is skipped
/// silently (cron ticks). One cached statement per row and table: in-process there is no round
/// trip to save, and an `INSERT ... SELECT` from a JSON array costs the encoding, the decoding and
/// a statement journal besides.
pub(super) fn insert_runs_tx(
    conn: &Connection,
    runs: &[NewRun],
    now: DateTime<Utc>,
    ignore_conflicts: bool,
) -> Result<Vec<Inserted>> {
    let now_us = micros(now);
    let mut insert = conn.prepare_cached(INSERT_RUN).db()?;
    let mut queue = conn.prepare_cached(INSERT_QUEUE).db()?;
    let mut timer = conn.prepare_cached(INSERT_TIMER).db()?;
    let mut event = conn.prepare_cached(INSERT_EVENT).db()?;
    let mut out = Vec::with_capacity(runs.len());
    for r in runs {
        let status = if r.run_at > now {
            RunStatus::Scheduled
        } else {
            RunStatus::Queued
        };
        let created = insert
            .execute(params![
                r.id.to_string(),
                r.tenant,
                r.task,
                status.as_str(),
                i64::from(r.retries) + 1,
                i64::from(r.retries),
                i64::from(r.priority),
                r.input.to_string(),
                r.owner,
                r.idempotency_key,
                r.parent_id.map(|p| p.to_string()),
                r.metadata.as_ref().map(|m| m.to_string()),
                r.timeout.as_millis() as i64,
                serde_json::to_string(&r.backoff).unwrap_or_default(),
                micros(r.run_at.max(now)),
                now_us,
                r.concurrency_key(),
                r.expires_at.map(micros),
            ])
            .db()?
            == 1;
        if created {
            let seq = conn.last_insert_rowid();
            if status == RunStatus::Scheduled {
                timer.execute(params![seq, micros(r.run_at)]).db()?;
            } else {
                queue
                    .execute(params![
                        seq,
                        r.tenant,
                        r.task,
                        i64::from(r.priority),
                        r.concurrency_key()
                    ])
                    .db()?;
            }
            event
                .execute(params![seq, now_us, status.as_str(), r.reason])
                .db()?;
            if let Some(at) = r.expires_at {
                conn.prepare_cached(INSERT_EXPIRY)
                    .db()?
                    .execute(params![seq, r.tenant, r.id.to_string(), micros(at)])
                    .db()?;
            }
            if r.workflow {
                conn.prepare_cached(INSERT_WORKFLOW)
                    .db()?
                    .execute(params![seq, r.tenant, r.id.to_string()])
                    .db()?;
            }
            if !r.links.is_empty() {
                conn.prepare_cached(INSERT_LINKS)
                    .db()?
                    .execute(params![
                        seq,
                        r.tenant,
                        r.id.to_string(),
                        serde_json::to_string(&r.links.on_success).unwrap_or_default(),
                        serde_json::to_string(&r.links.on_error).unwrap_or_default(),
                    ])
                    .db()?;
            }
            out.push(Inserted::Created(r.snapshot(status, now)));
            continue;
        }
        if ignore_conflicts {
            continue;
        }
        // The id exists (an idempotency key used again, or twice in this batch).
        let existing = load(conn, &r.tenant, r.id)?.ok_or_else(|| Error::IdempotencyConflict {
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
    if runs.iter().any(|r| r.concurrency_key().is_some()) {
        turns::give_turns(conn)?;
    }
    Ok(out)
}

/// Deletes runs by seq with everything that refers to them.
pub(super) fn delete_seqs(conn: &Connection, seqs: &[i64]) -> Result<usize> {
    if seqs.is_empty() {
        return Ok(0);
    }
    turns::unqueue(conn, seqs)?;
    for table in [
        "events",
        "steps",
        "event_waits",
        "timers",
        "leases",
        "workflow_runs",
        "expiries",
        "links",
    ] {
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
        self.write(move |c| {
            let mut inserted = insert_runs_tx(c, &runs, now, false)?;
            make_room(c, &runs, &mut inserted, now)?;
            Ok(inserted)
        })
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

    async fn running_of_key(&self, tenant: &str, task: &str, key: &str) -> Result<u64> {
        let (tenant, task, key) = (tenant.to_string(), task.to_string(), key.to_string());
        self.read(move |c| {
            let n: i64 = one(
                c,
                "SELECT count(*) FROM leases WHERE tenant = ?1 AND task = ?2 AND ckey = ?3",
                params![tenant, task, key],
                |r| r.get(0),
            )?
            .unwrap_or(0);
            Ok(n as u64)
        })
        .await
    }

    async fn cancel_run(&self, tenant: &str, id: RunId, now: DateTime<Utc>) -> Result<RunSnapshot> {
        command(self, tenant, id, Command::Cancel, now).await
    }

    async fn retry_run(&self, tenant: &str, id: RunId, now: DateTime<Utc>) -> Result<RunSnapshot> {
        command(self, tenant, id, Command::Retry, now).await
    }

    async fn act_on_runs(
        &self,
        tenant: &str,
        ids: &[RunId],
        retry: bool,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let (tenant, mut ids) = (tenant.to_string(), ids.to_vec());
        // Each run once: the states are all read before the changes are written.
        ids.sort();
        ids.dedup();
        let command = if retry {
            Command::Retry
        } else {
            Command::Cancel
        };
        self.write(move |c| {
            let mut changes = Vec::with_capacity(ids.len());
            for id in ids {
                let Some(mut st) = state_by_id(c, &tenant, id)? else {
                    continue;
                };
                match st.plan(command.happening(), now) {
                    Ok(change) => changes.extend(change),
                    Err(Error::InvalidTransition { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            apply(c, &changes, now)?;
            if let Command::Retry = command {
                for p in &changes {
                    reopen(c, p.seq)?;
                }
            }
            Ok(changes.len() as u64)
        })
        .await
    }

    async fn replay_run(
        &self,
        tenant: &str,
        id: RunId,
        position: u32,
        step: &str,
        now: DateTime<Utc>,
    ) -> Result<RunSnapshot> {
        let (tenant, step) = (tenant.to_string(), step.to_string());
        self.write(move |c| {
            let mut st = state_by_id(c, &tenant, id)?.ok_or_else(|| Error::run_not_found(id))?;
            let change = st.plan(
                Happening::Replay {
                    position,
                    step: &step,
                },
                now,
            )?;
            apply(c, change.as_slice(), now)?;
            exec(
                c,
                "DELETE FROM steps WHERE run_seq = ?1 AND position >= ?2",
                params![st.seq, i64::from(position)],
            )?;
            exec(
                c,
                "UPDATE runs SET replays = replays + 1 WHERE seq = ?1",
                params![st.seq],
            )?;
            reopen(c, st.seq)?;
            load(c, &tenant, id)?.ok_or_else(|| Error::run_not_found(id))
        })
        .await
    }

    async fn ended_per_minute(
        &self,
        tenant: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<(i64, String, u64)>> {
        let tenant = tenant.to_string();
        self.read(move |c| {
            let rows: Vec<(i64, String, i64)> = all(
                c,
                ENDED_PER_MINUTE,
                params![tenant, micros(since), micros(until)],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            Ok(rows.into_iter().map(|(m, s, n)| (m, s, n as u64)).collect())
        })
        .await
    }

    async fn expire_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<(usize, Option<DateTime<Utc>>)> {
        // A read first: most passes have nothing due, and need no write transaction.
        let next: Option<i64> = self
            .read(|c| Ok(one(c, "SELECT min(at) FROM expiries", [], |r| r.get(0))?.flatten()))
            .await?;
        match next {
            Some(at) if at <= micros(now) => {}
            _ => return Ok((0, next.map(from_micros))),
        }
        self.write(move |c| {
            let due: Vec<(i64, String, String, i64)> = all(
                c,
                "SELECT run_seq, tenant, id, at FROM expiries WHERE at <= ?1 ORDER BY at LIMIT ?2",
                params![micros(now), i64::from(limit)],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?;
            let mut expired = 0;
            for (seq, tenant, id, at) in &due {
                if let Some(mut st) = state_by_id(c, tenant, id.parse()?)? {
                    let change = st.plan(
                        Happening::Expired {
                            at: from_micros(*at),
                        },
                        now,
                    )?;
                    expired += usize::from(change.is_some());
                    apply(c, change.as_slice(), now)?;
                }
                exec(c, "DELETE FROM expiries WHERE run_seq = ?1", params![seq])?;
            }
            let next: Option<i64> =
                one(c, "SELECT min(at) FROM expiries", [], |r| r.get(0))?.flatten();
            Ok((expired, next.map(from_micros)))
        })
        .await
    }

    async fn count_runs(&self, tenant: &str, filter: &ListFilter, max: Option<u64>) -> Result<u64> {
        let q = count_query(tenant, filter, max)?;
        self.read(move |c| {
            let n: i64 = one(c, &q.sql, rusqlite::params_from_iter(&q.params), |r| {
                r.get(0)
            })?
            .unwrap_or(0);
            Ok(n as u64)
        })
        .await
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
            turns::forget_idle_keys(c)?;
            delete_seqs(c, &seqs)
        })
        .await
    }
}

/// The queued and running runs of a key of a task, oldest first.
fn active_of_key(conn: &Connection, tenant: &str, task: &str, key: &str) -> Result<Vec<RunId>> {
    let ids: Vec<String> = all(
        conn,
        // The key's leases, and its queue rows among its task's queued ones (in turns, not by
        // key: a task with a cancel strategy has at most its limit of runs of each key
        // queued); never the task's finished runs.
        "SELECT id FROM runs WHERE seq IN (\
           SELECT run_seq FROM queue WHERE tenant = ?1 AND task = ?2 AND ckey = ?3 \
           UNION ALL SELECT run_seq FROM leases WHERE tenant = ?1 AND task = ?2 AND ckey = ?3) \
         AND status IN ('queued', 'running') ORDER BY seq",
        params![tenant, task, key],
        |r| r.get(0),
    )?;
    ids.iter().map(|i| i.parse()).collect()
}

/// The cancel strategies of the runs just inserted, in their transaction (see
/// [`displaced`]): a run that its strategy cancels is never seen queued by a claim.
fn make_room(
    conn: &Connection,
    runs: &[NewRun],
    inserted: &mut [Inserted],
    now: DateTime<Utc>,
) -> Result<()> {
    for (run, limit, key, snap) in displacing(runs, inserted) {
        let others = active_of_key(conn, &run.tenant, &run.task, key)?;
        for victim in displaced(limit, run.id, &others) {
            let Some(mut st) = state_by_id(conn, &run.tenant, victim)? else {
                continue;
            };
            let change = st.plan(Happening::Cancel, now)?;
            apply(conn, change.as_slice(), now)?;
            tracing::info!(run_id = %victim, task = %run.task, key = %key, strategy = limit.strategy.as_str(), "concurrency limit reached: run cancelled");
            if victim == run.id {
                *snap =
                    load(conn, &run.tenant, run.id)?.ok_or_else(|| Error::run_not_found(run.id))?;
            }
        }
    }
    Ok(())
}

/// An operator's command on one run.
#[derive(Debug, Clone, Copy)]
enum Command {
    Cancel,
    Retry,
}

impl Command {
    fn happening(self) -> Happening<'static> {
        match self {
            Command::Cancel => Happening::Cancel,
            Command::Retry => Happening::Retry,
        }
    }
}

/// A run retried is followed up again: a workflow run is advanced again, and a run's links are
/// scheduled again when it finishes (no rows for other runs).
fn reopen(conn: &Connection, seq: i64) -> Result<()> {
    exec(
        conn,
        "UPDATE workflow_runs SET done = 0 WHERE run_seq = ?1",
        params![seq],
    )?;
    exec(
        conn,
        "UPDATE links SET done = 0 WHERE run_seq = ?1",
        params![seq],
    )?;
    Ok(())
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
            let change = st.plan(command.happening(), now)?;
            apply(c, change.as_slice(), now)?;
            if let (Some(p), Command::Retry) = (&change, command) {
                reopen(c, p.seq)?;
            }
            load(c, &tenant, id)?.ok_or_else(|| Error::run_not_found(id))
        })
        .await
}
