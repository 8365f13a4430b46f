//! The queue and its claims: claim, complete, heartbeats, maintenance (timers coming due, expired leases).

use super::concurrency::claim_limited;
use super::waits::open_waits;
use super::*;
use crate::store::rows::{QueueDepthRow, QUEUE_DEPTH_SQL};
use crate::store::waits::OpenWait;
use crate::store::{ClaimRequest, Exchanged, QueueDepth};
use owlclaw_core::lifecycle;

/// The statement of [`REPORT_AND_CLAIM`], [`REPORT_AND_RECLAIM`] and [`CLAIM_PICKED`]: `$again`
/// adds CTEs before the claim, `$picked` selects the queue rows to claim, `$rows` the runs it
/// returns; `$noted` adds to the count of notifications sent (each CTE that notifies must be
/// read, or it does not run).
macro_rules! report_and_claim {
    ($again:literal, $picked:literal, $rows:literal) => {
        report_and_claim!($again, $picked, $rows, "")
    };
    ($again:literal, $picked:literal, $rows:literal, $noted:literal) => {
        concat!(
            "WITH c AS (
    SELECT * FROM UNNEST($8::text[], $9::bigint[], $10::text[]) AS c(id, attempt, output)
), done AS (
    UPDATE runs r SET status = 'succeeded', output = c.output, error = NULL, finished_at = $4
    FROM c WHERE r.id = c.id AND r.status = 'running' AND r.attempt = c.attempt AND r.worker_id = $6
    RETURNING r.seq, r.attempt, r.tenant, r.task
), released AS (
    DELETE FROM leases WHERE run_seq = ANY(ARRAY(SELECT seq FROM done))
), ended AS (
    INSERT INTO finished (run_seq, tenant, task, status, finished_at)
    SELECT seq, tenant, task, 'succeeded', $4 FROM done
), succeeded AS (
    INSERT INTO events (run_seq, at, from_status, to_status, attempt, worker, reason)
    SELECT seq, $4, 'running', 'succeeded', attempt, $5, $13 FROM done ORDER BY seq
), note AS (
    SELECT pg_notify('owlclaw', 'finished') FROM (SELECT 1 FROM done LIMIT 1) AS any_done
)",
            $again,
            ", picked AS (",
            $picked,
            "
), locked AS (
    SELECT seq FROM runs WHERE seq = ANY(ARRAY(SELECT run_seq FROM picked)) FOR UPDATE SKIP LOCKED
), taken AS (
    DELETE FROM queue WHERE qid = ANY(ARRAY(
        SELECT p.qid FROM picked p JOIN locked l ON l.seq = p.run_seq))
    RETURNING qid, run_seq, tenant, task, ckey
), started AS (
    UPDATE runs SET status = 'running', attempt = attempt + 1, started_at = GREATEST($4, run_at), worker = $5, worker_id = $6
    WHERE seq = ANY(ARRAY(SELECT run_seq FROM taken)) AND status = 'queued'
    RETURNING seq, id, task, input, attempt, max_attempts, timeout_ms, parent_id, priority, run_at
), claimed AS (
    SELECT s.*, t.qid, t.tenant AS q_tenant, t.ckey FROM started s JOIN taken t ON t.run_seq = s.seq
), leased AS (
    INSERT INTO leases (run_seq, worker_id, expires_at, deadline, claim_id, tenant, task, ckey)
    SELECT seq, $6, LEAST($4 + $7, $4 + timeout_ms * 1000 + $7), $4 + timeout_ms * 1000 + $7, $11,
        q_tenant, task, ckey
    FROM claimed
    ON CONFLICT (run_seq) DO UPDATE SET worker_id = excluded.worker_id,
        expires_at = excluded.expires_at, deadline = excluded.deadline, claim_id = excluded.claim_id,
        tenant = excluded.tenant, task = excluded.task, ckey = excluded.ckey
), logged AS (
    INSERT INTO events (run_seq, at, from_status, to_status, attempt, worker, reason)
    SELECT seq, $4, 'queued', 'running', attempt, $5, $12 FROM claimed ORDER BY priority DESC, qid
)
SELECT (SELECT count(*) FROM done) AS changed, (SELECT count(*) FROM note)",
            $noted,
            " AS noted,
       k.seq, k.id, k.task, k.input, k.attempt, k.max_attempts, k.timeout_ms, k.parent_id,
       k.run_at
FROM (SELECT 1) AS one LEFT JOIN (",
            $rows,
            ") k ON true
ORDER BY k.part, k.priority DESC, k.ord"
        )
    };
}

/// Applies the successful completions (`$8` ids, `$9` attempts, `$10` outputs) of worker `$6`
/// (named `$5`), then claims up to `$3` queued runs of tenant `$1` and tasks `$2` for it with a
/// lease of `$7` µs, at `$4`, tagged with the exchange request `$11` (may be NULL). The events'
/// reasons are `$12` (claimed) and `$13` (succeeded), from `lifecycle::reason`. Either half may
/// be empty. One row per claimed run (in claim order), or a single row with NULL run columns when
/// none was; `changed` counts the successes applied.
///
/// Claims skip queue rows, and runs, locked by others (another replica's claim, a cancel in
/// progress): they never wait, and never hand out a run twice.
///
/// Each task's first runs are sought in `queue_by_task` (up to `$3` of each, locked) and merged,
/// so that other tasks' backlogs are not walked. The rows locked beyond the `$3` taken stay
/// queued, and were hidden from concurrent claims while this one ran: when there are any, the
/// statement wakes the long polls (`work`), which look again once it has committed.
pub(super) const REPORT_AND_CLAIM: &str = report_and_claim!(
    ", sought AS (
    SELECT s.qid, s.run_seq, s.priority FROM UNNEST($2::text[]) AS t(task) CROSS JOIN LATERAL (
        SELECT qid, run_seq, priority FROM queue WHERE tenant = $1 AND task COLLATE \"C\" = t.task
        ORDER BY priority DESC, qid LIMIT $3 FOR UPDATE SKIP LOCKED) s
), spare AS (
    SELECT pg_notify('owlclaw', 'work') WHERE (SELECT count(*) FROM sought) > $3
)",
    "SELECT qid, run_seq FROM sought ORDER BY priority DESC, qid LIMIT $3",
    "SELECT 1 AS part, priority, qid AS ord, seq, id, task, input, attempt, max_attempts,
        timeout_ms, parent_id, run_at FROM claimed",
    " + (SELECT count(*) FROM spare)"
);

/// [`REPORT_AND_CLAIM`] for a worker of one task (`$2[1]`): one seek in `queue_by_task` (its
/// collation is how these statements reach it; see `0015_queue_by_task.sql`), however many runs
/// of other tasks are queued, and no rows locked beyond those taken.
pub(super) const REPORT_AND_CLAIM_ONE: &str = report_and_claim!(
    "",
    "SELECT qid, run_seq FROM queue WHERE tenant = $1 AND task COLLATE \"C\" = $2[1]
    ORDER BY priority DESC, qid LIMIT $3 FOR UPDATE SKIP LOCKED",
    "SELECT 1 AS part, priority, qid AS ord, seq, id, task, input, attempt, max_attempts,
        timeout_ms, parent_id, run_at FROM claimed"
);

/// [`REPORT_AND_CLAIM`] for a resent request `$11`: the runs still leased to the worker for it
/// come first (their leases renewed), then new claims for the other slots.
pub(super) const REPORT_AND_RECLAIM: &str = report_and_claim!(
    ", again AS (
    SELECT r.seq, r.id, r.task, r.input, r.attempt, r.max_attempts, r.timeout_ms, r.parent_id,
        r.priority, r.run_at
    FROM runs r
    WHERE r.seq = ANY(ARRAY(SELECT run_seq FROM leases WHERE worker_id = $6 AND claim_id = $11))
        AND r.status = 'running' AND r.worker_id = $6
), renewed AS (
    UPDATE leases SET expires_at = LEAST($4 + $7, deadline)
    WHERE run_seq = ANY(ARRAY(SELECT seq FROM again))
)",
    "SELECT qid, run_seq FROM queue WHERE tenant = $1 AND task = ANY($2)
    ORDER BY priority DESC, qid LIMIT GREATEST($3 - (SELECT count(*) FROM again), 0)
    FOR UPDATE SKIP LOCKED",
    "SELECT 0 AS part, priority, seq AS ord, seq, id, task, input, attempt, max_attempts,
        timeout_ms, parent_id, run_at FROM again
    UNION ALL
    SELECT 1, priority, qid, seq, id, task, input, attempt, max_attempts, timeout_ms, parent_id,
        run_at
    FROM claimed"
);

/// [`REPORT_AND_CLAIM`] for the queue rows `$14` (qids) of tasks `$2` picked beforehand (the
/// claims of limited tasks), up to `$3`. The rows are found by their qids alone (never reused):
/// a filter on the tenant and tasks as well was planned as a bitmap of every queued run of the
/// task in `queue_by_task`, ANDed with the qids' (0.4 ms of a 2.7 ms claim of 84 runs of a
/// task with 20,000 queued).
pub(super) const CLAIM_PICKED: &str = report_and_claim!(
    "",
    "SELECT qid, run_seq FROM queue WHERE qid = ANY($14) LIMIT $3 FOR UPDATE SKIP LOCKED",
    "SELECT 1 AS part, priority, qid AS ord, seq, id, task, input, attempt, max_attempts,
        timeout_ms, parent_id, run_at FROM claimed"
);

/// Moves up to `$2` timers due at `$1` to the queue (in due order; the `queued` events say `$3`)
/// and wakes the other engines' workers when it did; then reads the earliest timer left, lease
/// expiry and run expiry. Timers whose run another transaction holds (a cancel) are skipped and
/// stay due, for the next pass; two replicas never promote one timer.
pub(super) const PROMOTE_DUE: &str = "WITH picked AS (
    SELECT run_seq, due_at FROM timers WHERE due_at <= $1 ORDER BY due_at LIMIT $2
    FOR UPDATE SKIP LOCKED
), locked AS (
    SELECT seq FROM runs WHERE seq = ANY(ARRAY(SELECT run_seq FROM picked)) FOR UPDATE SKIP LOCKED
), fired AS (
    DELETE FROM timers WHERE run_seq = ANY(ARRAY(SELECT seq FROM locked)) RETURNING run_seq, due_at
), ready AS (
    UPDATE runs SET status = 'queued'
    WHERE seq = ANY(ARRAY(SELECT run_seq FROM fired)) AND status = 'scheduled'
    RETURNING seq, tenant, task, priority, attempt, concurrency_key
), ordered AS (
    SELECT r.*, f.due_at FROM ready r JOIN fired f ON f.run_seq = r.seq
), q AS (
    INSERT INTO queue (run_seq, tenant, task, priority, ckey)
    SELECT seq, tenant, task, priority, concurrency_key FROM ordered ORDER BY due_at, seq
), e AS (
    INSERT INTO events (run_seq, at, from_status, to_status, attempt, worker, reason)
    SELECT seq, $1, 'scheduled', 'queued', attempt, NULL, $3 FROM ordered ORDER BY due_at, seq
), note AS (
    SELECT pg_notify('owlclaw', 'work') FROM (SELECT 1 FROM ordered LIMIT 1) AS any_ready
)
SELECT (SELECT count(*) FROM ordered) AS promoted, (SELECT count(*) FROM note) AS noted,
    (SELECT MIN(t.due_at) FROM timers t
        WHERE NOT EXISTS (SELECT 1 FROM fired f WHERE f.run_seq = t.run_seq)) AS next_due,
    (SELECT MIN(expires_at) FROM leases) AS next_expiry,
    (SELECT MIN(at) FROM expiries) AS next_run_expiry";

/// What a claim takes from the queue.
#[derive(Debug, Clone, Copy)]
pub(super) enum Pick<'a> {
    /// The first queued runs of these tasks, in priority order.
    Tasks(&'a [String]),
    /// These queue rows (qids) of these tasks.
    Rows(&'a [String], &'a [i64]),
}

/// Runs [`REPORT_AND_CLAIM`] for the successes among `completions` and up to `n` claims (the runs
/// still leased for `request` first). Returns the changed count, the assignments and the rows
/// of reclaimed runs beyond `n`, for the caller to hand back.
#[allow(clippy::too_many_arguments)]
pub(super) async fn report_and_claim(
    conn: &mut PgConnection,
    worker: &WorkerRecord,
    pick: Pick<'_>,
    completions: &[Completion],
    n: u32,
    now: DateTime<Utc>,
    lease: Duration,
    request: Option<ClaimRequest<'_>>,
) -> R<(usize, Vec<Assignment>, Vec<i64>)> {
    let (mut ids, mut attempts, mut outputs) = (vec![], vec![], vec![]);
    for c in completions {
        if let Outcome::Succeeded { output } = &c.outcome {
            ids.push(c.run_id.to_string());
            attempts.push(i64::from(c.attempt));
            outputs.push(output.to_string());
        }
    }
    let (tasks, qids) = match pick {
        Pick::Tasks(tasks) => (tasks, None),
        Pick::Rows(tasks, qids) => (tasks, Some(qids)),
    };
    // No task to pick from: no claim (a scan for nothing), but a resent request still gets its
    // runs back.
    let resent = request.is_some_and(|r| r.resent);
    let n = if tasks.is_empty() && !resent { 0 } else { n };
    if ids.is_empty() && n == 0 {
        return Ok((0, Vec::new(), Vec::new()));
    }
    let sql = match qids {
        Some(_) => CLAIM_PICKED,
        None if request.is_some_and(|r| r.resent) => REPORT_AND_RECLAIM,
        None if tasks.len() == 1 => REPORT_AND_CLAIM_ONE,
        None => REPORT_AND_CLAIM,
    };
    let query = sqlx::query(sql)
        .bind(&worker.tenant)
        .bind(tasks)
        .bind(i64::from(n))
        .bind(micros(now))
        .bind(clean(&worker.name))
        .bind(&worker.id)
        .bind(lease.as_micros() as i64)
        .bind(&ids)
        .bind(&attempts)
        .bind(&outputs)
        .bind(request.map(|r| r.id))
        .bind(lifecycle::reason::CLAIMED)
        .bind(lifecycle::reason::SUCCEEDED);
    let rows = match qids {
        Some(qids) => query.bind(qids).fetch_all(conn).await?,
        None => query.fetch_all(conn).await?,
    };
    let mut changed = 0;
    let mut out = Vec::with_capacity(rows.len());
    let mut extra = Vec::new();
    for row in &rows {
        changed = row.try_get::<i64, _>("changed")? as usize;
        let Some(id) = row.try_get::<Option<String>, _>("id")? else {
            continue;
        };
        if out.len() == n as usize {
            extra.push(row.try_get::<i64, _>("seq")?);
            continue;
        }
        out.push(Assignment {
            run_id: id.parse()?,
            task: row
                .try_get::<Option<String>, _>("task")?
                .unwrap_or_default(),
            input: row
                .try_get::<Option<String>, _>("input")?
                .map(json_text)
                .unwrap_or(Value::Null),
            attempt: row.try_get::<Option<i64>, _>("attempt")?.unwrap_or(0) as u32,
            max_attempts: row.try_get::<Option<i64>, _>("max_attempts")?.unwrap_or(0) as u32,
            timeout_ms: row.try_get::<Option<i64>, _>("timeout_ms")?.unwrap_or(0) as u64,
            parent_id: row
                .try_get::<Option<String>, _>("parent_id")?
                .and_then(|p| p.parse().ok()),
            due_at: row.try_get::<Option<i64>, _>("run_at")?.map(from_micros),
        });
    }
    Ok((changed, out, extra))
}

/// Applies the completions that are not successes (failures, time-outs, stops, hand-backs) of
/// locked runs.
pub(super) async fn complete_others(
    conn: &mut PgConnection,
    worker: &WorkerRecord,
    completions: &[Completion],
    now: DateTime<Utc>,
    wakes: &mut Wakes,
) -> R<usize> {
    let others: Vec<&Completion> = completions
        .iter()
        .filter(|c| !matches!(c.outcome, Outcome::Succeeded { .. }))
        .collect();
    if others.is_empty() {
        return Ok(0);
    }
    let ids: Vec<RunId> = others.iter().map(|c| c.run_id).collect();
    let mut states: HashMap<RunId, Locked> = lock_runs(&mut *conn, &worker.tenant, &ids)
        .await?
        .into_iter()
        .map(|st| (st.run.id, st))
        .collect();
    let mut changes = Vec::with_capacity(others.len());
    let mut waits = Vec::new();
    for c in others {
        let Some(st) = states.get_mut(&c.run_id) else {
            continue;
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
    apply(conn, &changes, now, wakes).await?;
    if !waits.is_empty() {
        // A second batch: a run parked above may be queued again by an event already stored.
        let arrived = open_waits(conn, &worker.tenant, &waits, &mut states, now).await?;
        apply(conn, &arrived, now, wakes).await?;
    }
    Ok(changes.len())
}

impl PostgresStore {
    pub(super) async fn complete_tx(
        &self,
        worker: &WorkerRecord,
        completions: &[Completion],
        n: u32,
        now: DateTime<Utc>,
        lease: Duration,
        request: Option<ClaimRequest<'_>>,
    ) -> R<(usize, Vec<Assignment>)> {
        let all_ok = completions
            .iter()
            .all(|c| matches!(c.outcome, Outcome::Succeeded { .. }));
        let mut wakes = Wakes::default();
        let tasks = worker.unlimited_tasks();
        let pick = Pick::Tasks(&tasks);
        let limited = !worker.limits.is_empty();
        let (changed, claimed, extra) = if all_ok && !limited {
            // The hot path: one statement, committed on its own.
            let mut conn = self.pool.acquire().await?;
            report_and_claim(&mut conn, worker, pick, completions, n, now, lease, request).await?
        } else {
            let mut tx = self.pool.begin().await?;
            let (changed, mut claimed, extra) = if all_ok {
                report_and_claim(&mut tx, worker, pick, completions, n, now, lease, request).await?
            } else {
                let (mut changed, _, _) =
                    report_and_claim(&mut tx, worker, pick, completions, 0, now, lease, None)
                        .await?;
                changed += complete_others(&mut tx, worker, completions, now, &mut wakes).await?;
                let (_, claimed, extra) =
                    report_and_claim(&mut tx, worker, pick, &[], n, now, lease, request).await?;
                (changed, claimed, extra)
            };
            let left = n.saturating_sub(claimed.len() as u32);
            if limited && left > 0 {
                // In the report's transaction: one commit per exchange, as without limits.
                let request = request.map(|r| r.id);
                claimed.extend(claim_limited(&mut tx, worker, left, now, lease, request).await?);
            }
            notify(&mut tx, wakes).await?;
            tx.commit().await?;
            (changed, claimed, extra)
        };
        if !extra.is_empty() {
            // A retried request with fewer free slots than the runs claimed for it: the rest go
            // back to the queue at once.
            let mut tx = self.pool.begin().await?;
            let rows: Vec<StateRow> = sqlx::query_as(&format!(
                "SELECT {STATE_COLS} FROM runs WHERE seq = ANY($1) ORDER BY seq FOR UPDATE"
            ))
            .bind(&extra)
            .fetch_all(&mut *tx)
            .await?;
            let mut changes = Vec::with_capacity(rows.len());
            for row in rows {
                changes.extend(Locked::try_from(row)?.plan(Happening::AnswerLost, now)?);
            }
            let mut wakes = Wakes::default();
            apply(&mut tx, &changes, now, &mut wakes).await?;
            notify(&mut tx, wakes).await?;
            tx.commit().await?;
        }
        self.vacuum.claimed(claimed.len(), &self.pool);
        self.vacuum_runs.claimed(claimed.len(), &self.pool);
        Ok((changed, claimed))
    }

    pub(super) async fn heartbeat_tx(
        &self,
        worker: &WorkerRecord,
        held: &[RunId],
        now: DateTime<Utc>,
        lease: Duration,
    ) -> R<Vec<RunId>> {
        // Leases locked by someone else (a completion, an expiry in progress) are skipped: they
        // are about to go, and a heartbeat never waits.
        let held: Vec<String> = held.iter().map(|h| h.to_string()).collect();
        let lost: Vec<String> = sqlx::query_scalar(
            "WITH mine AS (SELECT run_seq FROM leases WHERE worker_id = $2 ORDER BY run_seq \
               FOR UPDATE SKIP LOCKED), \
             renewed AS (UPDATE leases SET expires_at = LEAST($1, deadline) \
               WHERE run_seq = ANY(ARRAY(SELECT run_seq FROM mine)) \
               AND run_seq IN (SELECT seq FROM runs WHERE id = ANY($4::text[]))), \
             seen AS (UPDATE workers SET last_heartbeat = $3 WHERE id = $2) \
             SELECT h FROM UNNEST($4::text[]) AS h WHERE NOT EXISTS (SELECT 1 FROM runs r \
               JOIN leases l ON l.run_seq = r.seq WHERE r.id = h AND l.worker_id = $2)",
        )
        .bind(micros(now) + lease.as_micros() as i64)
        .bind(&worker.id)
        .bind(micros(now))
        .bind(&held)
        .fetch_all(&self.pool)
        .await?;
        Ok(lost
            .iter()
            .map(|s| s.parse())
            .collect::<Result<Vec<RunId>>>()?)
    }

    pub(super) async fn maintain_tx(&self, now: DateTime<Utc>, limit: u32) -> R<Maintenance> {
        let now_us = micros(now);
        // One statement, committed on its own: the due timers go to the queue (a timer the
        // maintenance loop slept to is not read first), and what comes next is read with them.
        let (promoted, _noted, next_due, next_expiry, next_run_expiry): (
            i64,
            i64,
            Option<i64>,
            Option<i64>,
            Option<i64>,
        ) = sqlx::query_as(PROMOTE_DUE)
            .bind(now_us)
            .bind(i64::from(limit))
            .bind(lifecycle::reason::DUE)
            .fetch_one(&self.pool)
            .await?;
        let mut m = Maintenance {
            promoted: promoted as usize,
            next_due: next_due.map(from_micros),
            next_run_expiry: next_run_expiry.map(from_micros),
            ..Maintenance::default()
        };
        let expired = next_expiry.is_some_and(|t| t <= now_us);
        if !expired {
            return Ok(m);
        }
        let mut tx = self.pool.begin().await?;
        let mut wakes = Wakes::default();
        // Two replicas never expire the same lease: each skips what the other holds.
        let sql = format!(
            "WITH picked AS (SELECT run_seq, deadline FROM leases WHERE expires_at <= $1 \
               ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
             SELECT {STATE_COLS}, p.deadline FROM runs JOIN picked p ON p.run_seq = runs.seq \
             WHERE runs.seq = ANY(ARRAY(SELECT run_seq FROM picked)) \
             ORDER BY runs.seq FOR UPDATE OF runs SKIP LOCKED"
        );
        let rows: Vec<ExpiredRow> = sqlx::query_as(&sql)
            .bind(now_us)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        let mut changes = Vec::with_capacity(rows.len());
        let mut orphans = Vec::new();
        for row in rows {
            let deadline_passed = row.deadline <= now_us;
            let mut st = Locked::try_from(row.state)?;
            match st.plan(Happening::LeaseExpired { deadline_passed }, now)? {
                Some(change) => changes.push(change),
                None => orphans.push(st.seq),
            }
        }
        if !orphans.is_empty() {
            sqlx::query("DELETE FROM leases WHERE run_seq = ANY($1)")
                .bind(&orphans)
                .execute(&mut *tx)
                .await?;
        }
        apply(&mut tx, &changes, now, &mut wakes).await?;
        m.expired = changes.len();
        // Retries of the expired runs wait for their backoff: the next timer may be earlier.
        let next: Option<i64> = sqlx::query_scalar("SELECT MIN(due_at) FROM timers")
            .fetch_one(&mut *tx)
            .await?;
        m.next_due = next.map(from_micros);
        notify(&mut tx, wakes).await?;
        tx.commit().await?;
        Ok(m)
    }
}

#[async_trait]
impl Queue for PostgresStore {
    async fn claim(
        &self,
        worker: &WorkerRecord,
        n: u32,
        now: DateTime<Utc>,
        lease: Duration,
        request: Option<ClaimRequest<'_>>,
    ) -> Result<Vec<Assignment>> {
        if n == 0 || worker.tasks.is_empty() {
            return Ok(Vec::new());
        }
        let (_, claimed) = self
            .retry(|| self.complete_tx(worker, &[], n, now, lease, request))
            .await?;
        Ok(claimed)
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
        let (changed, _) = self
            .retry(|| self.complete_tx(worker, completions, 0, now, Duration::ZERO, None))
            .await?;
        Ok(changed)
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
        let (changed, claimed) = self
            .retry(|| self.complete_tx(worker, completions, n, now, lease, request))
            .await?;
        Ok(Exchanged { changed, claimed })
    }

    async fn heartbeat(
        &self,
        worker: &WorkerRecord,
        held: &[RunId],
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Vec<RunId>> {
        self.retry(|| self.heartbeat_tx(worker, held, now, lease))
            .await
    }

    async fn maintain(&self, now: DateTime<Utc>, limit: u32) -> Result<Maintenance> {
        self.retry(|| self.maintain_tx(now, limit)).await
    }

    async fn queue_depth(&self) -> Result<Vec<QueueDepth>> {
        let rows: Vec<QueueDepthRow> = sqlx::query_as(QUEUE_DEPTH_SQL)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.place.db(e))?;
        Ok(rows.into_iter().map(QueueDepth::from).collect())
    }
}
