//! The queue and its claims: claim, complete, heartbeats, maintenance (timers coming due, expired leases).

use super::concurrency::claim_limited;
use super::turns::left_queue;
use super::waits::open_waits;
use super::*;
use crate::store::rows::{AssignmentRow, ASSIGNMENT_COLS};
use crate::store::rows::{QueueDepthRow, QUEUE_DEPTH_SQL};
use crate::store::waits::OpenWait;
use crate::store::{ClaimRequest, Exchanged, QueueDepth};
use owlclaw_core::lifecycle;

/// A claim request, owned (it crosses to the writer's thread).
#[derive(Debug, Clone)]
struct Request {
    id: String,
    resent: bool,
}

fn owned(r: Option<ClaimRequest<'_>>) -> Option<Request> {
    r.map(|r| Request {
        id: r.id.to_string(),
        resent: r.resent,
    })
}

/// Claims up to `n` queued runs of the worker's tasks inside the caller's transaction.
fn claim_tx(
    conn: &Connection,
    worker: &WorkerRecord,
    n: u32,
    now: DateTime<Utc>,
    lease: Duration,
    request: Option<&Request>,
) -> Result<Vec<Assignment>> {
    let mut out = match request {
        Some(r) if r.resent => reclaim_tx(conn, worker, &r.id, n, now, lease)?,
        _ => Vec::new(),
    };
    let n = n.saturating_sub(out.len() as u32);
    if n == 0 {
        return Ok(out);
    }
    let request = request.map(|r| r.id.as_str());
    out.extend(claim_new(conn, worker, n, now, lease, request)?);
    let n = n.saturating_sub(out.len() as u32);
    if n > 0 && !worker.limits.is_empty() {
        out.extend(claim_limited(conn, worker, n, now, lease, request)?);
    }
    Ok(out)
}

/// The runs still leased to `worker` for its exchange request `request` (a retry of a request
/// whose answer was lost), their leases renewed: at most `n`; the others are handed back.
fn reclaim_tx(
    conn: &Connection,
    worker: &WorkerRecord,
    request: &str,
    n: u32,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<Vec<Assignment>> {
    let mut rows = all(
        conn,
        &format!(
            "SELECT {ASSIGNMENT_COLS} FROM runs r \
             WHERE r.seq IN (SELECT run_seq FROM leases WHERE worker_id = ?1 AND claim_id = ?2) \
             AND r.status = 'running' AND r.worker_id = ?1 ORDER BY r.priority DESC, r.seq"
        ),
        params![worker.id, request],
        AssignmentRow::from_sqlite_at,
    )?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let extra = rows.split_off(rows.len().min(n as usize));
    let kept: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    exec(
        conn,
        "UPDATE leases SET expires_at = MIN(?1, deadline) \
         WHERE run_seq IN (SELECT value FROM json_each(?2))",
        params![micros(now) + lease.as_micros() as i64, seqs_json(&kept)],
    )?;
    let mut changes = Vec::with_capacity(extra.len());
    for seq in extra.iter().map(|r| r.seq) {
        if let Some(mut st) = state_by_seq(conn, seq)? {
            changes.extend(st.plan(Happening::AnswerLost, now)?);
        }
    }
    apply(conn, &changes, now)?;
    rows.into_iter().map(AssignmentRow::assignment).collect()
}

/// Claims up to `n` queued runs of the worker's unlimited tasks (none without one). The queue
/// rows are picked task by task (an index seek each); each run is then moved with cached
/// single-row statements, which in SQLite (no round trip) cost less than encoding the batch as
/// JSON and decoding it again. No statement here has a `RETURNING` clause:
/// SQLite runs one as a trigger, in a statement journal that copies every page the statement
/// writes (a third of the hot path's instructions, measured with callgrind).
fn claim_new(
    conn: &Connection,
    worker: &WorkerRecord,
    n: u32,
    now: DateTime<Utc>,
    lease: Duration,
    request: Option<&str>,
) -> Result<Vec<Assignment>> {
    // Each task's first `n` in claim order (a seek in `queue_by_task`), merged: however many
    // runs of other tasks are queued. With the key of each run that has a turn: a run of a
    // limited task, claimed by a worker that serves the task without the limit (one registered
    // before the limit was added).
    type Picked = (i64, i64, i64, Option<(String, String)>);
    let mut picked: Vec<Picked> = Vec::new();
    for task in worker.unlimited_tasks().iter() {
        picked.extend(all(
            conn,
            "SELECT priority, qid, run_seq, CASE WHEN turn IS NOT NULL THEN ckey END FROM queue \
             WHERE tenant = ?1 AND task = ?2 ORDER BY priority DESC, qid LIMIT ?3",
            params![worker.tenant, task, i64::from(n)],
            |r| {
                let key: Option<String> = r.get(3)?;
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    key.map(|k| (task.clone(), k)),
                ))
            },
        )?);
    }
    picked.sort_unstable_by_key(|&(priority, qid, _, _)| (std::cmp::Reverse(priority), qid));
    picked.truncate(n as usize);
    // Those runs take their turns back, as a limited claim's do.
    let mut turned: HashMap<(String, String), i64> = HashMap::new();
    let picked = picked
        .into_iter()
        .map(|(_, qid, seq, key)| {
            if let Some(k) = key {
                *turned.entry(k).or_default() += 1;
            }
            (qid, seq)
        })
        .collect();
    let turned = turned.into_iter();
    left_queue(
        conn,
        turned
            .map(|((task, key), n)| (worker.tenant.clone(), task, key, n))
            .collect(),
    )?;
    claim_picked(conn, worker, picked, now, lease, request)
}

/// Claims the queue rows `picked`, `(qid, run_seq)` each, for `worker`: each run is moved with
/// cached single-row statements (see [`claim_new`]).
pub(super) fn claim_picked(
    conn: &Connection,
    worker: &WorkerRecord,
    picked: Vec<(i64, i64)>,
    now: DateTime<Utc>,
    lease: Duration,
    request: Option<&str>,
) -> Result<Vec<Assignment>> {
    if picked.is_empty() {
        return Ok(Vec::new());
    }
    let lease_us = lease.as_micros() as i64;
    let now_us = micros(now);
    let mut dequeue = conn
        .prepare_cached("DELETE FROM queue WHERE qid = ?1")
        .db()?;
    // The attempt as it will be once started (`attempt + 1`), in the order of `ASSIGNMENT_COLS`.
    let mut queued = conn
        .prepare_cached(
            "SELECT seq, id, task, input, attempt + 1, max_attempts, timeout_ms, parent_id, run_at, \
             priority, tenant, concurrency_key FROM runs WHERE seq = ?1 AND status = 'queued'",
        )
        .db()?;
    let mut start = conn
        .prepare_cached(
            "UPDATE runs SET status = 'running', attempt = attempt + 1, started_at = MAX(?1, run_at), \
             worker = ?2, worker_id = ?3 WHERE seq = ?4",
        )
        .db()?;
    let mut leased = conn
        .prepare_cached(
            "INSERT OR REPLACE INTO leases (run_seq, worker_id, expires_at, deadline, claim_id, \
             tenant, task, ckey) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .db()?;
    let mut event = conn
        .prepare_cached(
            "INSERT INTO events (run_seq, at, from_status, to_status, attempt, worker, reason) \
             VALUES (?1, ?2, 'queued', 'running', ?3, ?4, ?5)",
        )
        .db()?;
    let mut out = Vec::with_capacity(picked.len());
    for (qid, seq) in picked {
        dequeue.execute(params![qid]).db()?;
        // A queue row of a run no longer queued is stale: it goes, and nothing starts.
        let found = queued
            .query_row(params![seq], |r| {
                let key: (String, Option<String>) = (r.get(10)?, r.get(11)?);
                Ok((AssignmentRow::from_sqlite_at(r)?, r.get::<_, i64>(9)?, key))
            })
            .optional()
            .db()?;
        let Some((row, priority, (tenant, ckey))) = found else {
            continue;
        };
        start
            .execute(params![now_us, worker.name, worker.id, seq])
            .db()?;
        let a = row.assignment()?;
        // The engine's own deadline: the task's timeout plus one lease for the worker to report.
        let deadline = now_us + a.timeout_ms as i64 * 1000 + lease_us;
        leased
            .execute(params![
                seq,
                worker.id,
                (now_us + lease_us).min(deadline),
                deadline,
                request,
                tenant,
                a.task,
                ckey
            ])
            .db()?;
        event
            .execute(params![
                seq,
                now_us,
                i64::from(a.attempt),
                worker.name,
                lifecycle::reason::CLAIMED
            ])
            .db()?;
        out.push((priority, seq, a));
    }
    out.sort_by_key(|(p, seq, _)| (-p, *seq));
    Ok(out.into_iter().map(|(_, _, a)| a).collect())
}

/// Applies finished attempts inside the caller's transaction; see [`Store::complete`].
fn complete_tx(
    conn: &Connection,
    worker: &WorkerRecord,
    completions: &[Completion],
    now: DateTime<Utc>,
) -> Result<usize> {
    let mut changed = 0;
    if completions
        .iter()
        .any(|c| matches!(c.outcome, Outcome::Succeeded { .. }))
    {
        // Cached single-row statements, without `RETURNING` (see `claim_new`).
        let mut running = conn
            .prepare_cached(
                "SELECT seq FROM runs WHERE id = ?1 AND status = 'running' AND attempt = ?2 \
                 AND worker_id = ?3",
            )
            .db()?;
        let mut succeed = conn
            .prepare_cached(
                "UPDATE runs SET status = 'succeeded', output = ?1, error = NULL, finished_at = ?2 \
                 WHERE seq = ?3",
            )
            .db()?;
        let mut unlease = conn
            .prepare_cached("DELETE FROM leases WHERE run_seq = ?1")
            .db()?;
        let mut event = conn
            .prepare_cached(
                "INSERT INTO events (run_seq, at, from_status, to_status, attempt, worker, reason) \
                 VALUES (?1, ?2, 'running', 'succeeded', ?3, ?4, ?5)",
            )
            .db()?;
        let now_us = micros(now);
        for c in completions {
            let Outcome::Succeeded { output } = &c.outcome else {
                continue;
            };
            // `None`: stale (cancelled, re-queued after a lost lease, or another attempt).
            let seq: Option<i64> = running
                .query_row(
                    params![c.run_id.to_string(), i64::from(c.attempt), worker.id],
                    |r| r.get(0),
                )
                .optional()
                .db()?;
            let Some(seq) = seq else {
                continue;
            };
            succeed
                .execute(params![output.to_string(), now_us, seq])
                .db()?;
            changed += 1;
            unlease.execute(params![seq]).db()?;
            event
                .execute(params![
                    seq,
                    now_us,
                    i64::from(c.attempt),
                    worker.name,
                    lifecycle::reason::SUCCEEDED
                ])
                .db()?;
        }
    }
    let mut states: HashMap<RunId, Locked> = HashMap::new();
    let mut changes = Vec::new();
    let mut waits = Vec::new();
    for c in completions {
        if matches!(c.outcome, Outcome::Succeeded { .. }) {
            continue;
        }
        let st = match states.entry(c.run_id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                match state_by_id(conn, &worker.tenant, c.run_id)? {
                    Some(st) => e.insert(st),
                    None => continue,
                }
            }
        };
        let happened = Happening::Reported {
            worker_id: &worker.id,
            attempt: c.attempt,
            outcome: &c.outcome,
        };
        // `None`: stale (cancelled, re-queued after a lost lease, or another attempt).
        let planned = st.plan(happened, now)?;
        waits.extend(planned.as_ref().and_then(|p| OpenWait::of(c, p)));
        changes.extend(planned);
    }
    apply(conn, &changes, now)?;
    changed += changes.len();
    if !waits.is_empty() {
        // A second batch: a run parked above may be queued again by an event already stored.
        let arrived = open_waits(conn, &worker.tenant, &waits, &mut states, now)?;
        apply(conn, &arrived, now)?;
    }
    Ok(changed)
}

/// Whether a claim could find anything: a queued run of the worker's tasks, or runs leased for
/// the resent request.
fn anything_to_claim(
    conn: &Connection,
    worker: &WorkerRecord,
    tasks: &str,
    resent: Option<&str>,
) -> Result<bool> {
    Ok(one(
        conn,
        "SELECT 1 WHERE EXISTS (SELECT 1 FROM queue WHERE tenant = ?1 \
           AND task IN (SELECT value FROM json_each(?2))) \
         OR EXISTS (SELECT 1 FROM leases WHERE ?3 IS NOT NULL AND worker_id = ?4 AND claim_id = ?3)",
        params![worker.tenant, tasks, resent, worker.id],
        |_| Ok(()),
    )?
    .is_some())
}

#[async_trait]
impl Queue for SqliteStore {
    async fn claim(
        &self,
        worker: &WorkerRecord,
        n: u32,
        now: DateTime<Utc>,
        lease: Duration,
        request: Option<ClaimRequest<'_>>,
    ) -> Result<Vec<Assignment>> {
        if worker.tasks.is_empty() || (n == 0 && !request.is_some_and(|r| r.resent)) {
            return Ok(Vec::new());
        }
        let worker = worker.clone();
        let request = owned(request);
        self.write(move |c| {
            // A cheap read first: an idle poll changes nothing (it holds the write lock only for
            // that read, inside the writer's transaction).
            let resent = request.as_ref().filter(|r| r.resent).map(|r| r.id.as_str());
            let all = ids_json(&worker.tasks);
            if !anything_to_claim(c, &worker, &all, resent)? {
                return Ok(Vec::new());
            }
            claim_tx(c, &worker, n, now, lease, request.as_ref())
        })
        .await
    }

    async fn complete(
        &self,
        worker: &WorkerRecord,
        completions: &[Completion],
        now: DateTime<Utc>,
    ) -> Result<usize> {
        if completions.is_empty() {
            return Ok(0);
        }
        let worker = worker.clone();
        let completions = completions.to_vec();
        self.write(move |c| complete_tx(c, &worker, &completions, now))
            .await
    }

    async fn complete_and_claim(
        &self,
        worker: &WorkerRecord,
        completions: &[Completion],
        n: u32,
        now: DateTime<Utc>,
        lease: Duration,
        request: Option<ClaimRequest<'_>>,
    ) -> Result<Exchanged> {
        let worker = worker.clone();
        let completions = completions.to_vec();
        let request = owned(request);
        self.write(move |c| {
            let changed = complete_tx(c, &worker, &completions, now)?;
            let resent = request.as_ref().is_some_and(|r| r.resent);
            let claimed = if (n > 0 || resent) && !worker.tasks.is_empty() {
                claim_tx(c, &worker, n, now, lease, request.as_ref())?
            } else {
                Vec::new()
            };
            Ok(Exchanged { changed, claimed })
        })
        .await
    }

    async fn heartbeat(
        &self,
        worker: &WorkerRecord,
        held: &[RunId],
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Vec<RunId>> {
        let worker_id = worker.id.clone();
        let held = ids_json(held);
        self.write(move |c| {
            let expires = micros(now) + lease.as_micros() as i64;
            // Only the runs the worker says it holds: a claim whose answer never reached it (a
            // lost response) must expire, not be renewed forever.
            exec(
                c,
                "UPDATE leases SET expires_at = MIN(?1, deadline) WHERE worker_id = ?2 \
                 AND run_seq IN (SELECT r.seq FROM runs r JOIN json_each(?3) h ON r.id = h.value)",
                params![expires, worker_id, held],
            )?;
            exec(
                c,
                "UPDATE workers SET last_heartbeat = ?1 WHERE id = ?2",
                params![micros(now), worker_id],
            )?;
            let lost: Vec<String> = all(
                c,
                "SELECT h.value FROM json_each(?1) AS h WHERE NOT EXISTS (SELECT 1 FROM runs r JOIN leases l \
                 ON l.run_seq = r.seq WHERE r.id = h.value AND l.worker_id = ?2)",
                params![held, worker_id],
                |r| r.get(0),
            )?;
            lost.iter().map(|s| s.parse()).collect()
        })
        .await
    }

    async fn maintain(&self, now: DateTime<Utc>, limit: u32) -> Result<Maintenance> {
        let now_us = micros(now);
        let (next_due, next_expiry, next_run_expiry): (Option<i64>, Option<i64>, Option<i64>) = self
            .read(|c| {
                c.query_row(
                    "SELECT (SELECT MIN(due_at) FROM timers), (SELECT MIN(expires_at) FROM leases), \
                     (SELECT MIN(at) FROM expiries)",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .db()
            })
            .await?;
        let m = Maintenance {
            next_due: next_due.map(from_micros),
            next_run_expiry: next_run_expiry.map(from_micros),
            ..Maintenance::default()
        };
        let due = next_due.is_some_and(|t| t <= now_us);
        let expired = next_expiry.is_some_and(|t| t <= now_us);
        if !due && !expired {
            return Ok(m);
        }
        self.write(move |c| maintain_tx(c, m, now, limit, due, expired))
            .await
    }

    async fn queue_depth(&self) -> Result<Vec<QueueDepth>> {
        self.read(|c| {
            let rows = all(c, QUEUE_DEPTH_SQL, [], QueueDepthRow::from_sqlite)?;
            Ok(rows.into_iter().map(QueueDepth::from).collect())
        })
        .await
    }
}

/// Moves due timers to the queue and handles expired leases, in the writer's transaction.
fn maintain_tx(
    c: &Connection,
    mut m: Maintenance,
    now: DateTime<Utc>,
    limit: u32,
    due: bool,
    expired: bool,
) -> Result<Maintenance> {
    let now_us = micros(now);
    if due {
        let mut due_rows: Vec<(i64, i64)> = all(
            c,
            "DELETE FROM timers WHERE run_seq IN (SELECT run_seq FROM timers WHERE due_at <= ?1 \
             ORDER BY due_at LIMIT ?2) RETURNING run_seq, due_at",
            params![now_us, i64::from(limit)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        // RETURNING gives no order: sort by due time (then seq) for FIFO by due time.
        due_rows.sort_by_key(|&(seq, due)| (due, seq));
        let seqs: Vec<i64> = due_rows.iter().map(|&(seq, _)| seq).collect();
        let mut rows: Vec<(i64, String, String, i64, i64)> = all(
            c,
            "UPDATE runs SET status = 'queued' WHERE seq IN (SELECT value FROM json_each(?1)) \
             AND status = 'scheduled' RETURNING seq, tenant, task, priority, attempt",
            params![seqs_json(&seqs)],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )?;
        if !rows.is_empty() {
            // Ready in due order, so FIFO within a priority follows the due times.
            let order: HashMap<i64, usize> =
                seqs.iter().enumerate().map(|(i, s)| (*s, i)).collect();
            rows.sort_by_key(|r| order.get(&r.0).copied().unwrap_or(usize::MAX));
            let queue: Vec<Value> = rows.iter().map(|r| json!([r.0, r.1, r.2, r.3])).collect();
            let events: Vec<Value> = rows.iter().map(|r| json!([r.0, r.4])).collect();
            enqueue(c, queue)?;
            exec(
                c,
                "INSERT INTO events (run_seq, at, from_status, to_status, attempt, worker, reason) \
                 SELECT value->>0, ?2, 'scheduled', 'queued', value->>1, NULL, ?3 FROM json_each(?1)",
                params![
                    Value::Array(events).to_string(),
                    now_us,
                    lifecycle::reason::DUE
                ],
            )?;
        }
        m.promoted = rows.len();
    }
    if expired {
        let sql = format!(
            "SELECT {}, l.deadline FROM leases l JOIN runs r ON r.seq = l.run_seq \
             WHERE l.expires_at <= ?1 LIMIT ?2",
            state_cols_of_r()
        );
        let rows = all(
            c,
            &sql,
            params![now_us, i64::from(limit)],
            ExpiredRow::from_sqlite,
        )?;
        let mut seqs = Vec::with_capacity(rows.len());
        let mut changes = Vec::with_capacity(rows.len());
        for row in rows {
            let deadline_passed = row.deadline <= now_us;
            let mut st = Locked::try_from(row.state)?;
            seqs.push(st.seq);
            changes.extend(st.plan(Happening::LeaseExpired { deadline_passed }, now)?);
        }
        // Leases of runs no longer running go too.
        delete_from(c, "leases", &seqs)?;
        apply(c, &changes, now)?;
        m.expired = changes.len();
    }
    let next: Option<i64> = c
        .query_row("SELECT MIN(due_at) FROM timers", [], |r| r.get(0))
        .db()?;
    m.next_due = next.map(from_micros);
    Ok(m)
}
