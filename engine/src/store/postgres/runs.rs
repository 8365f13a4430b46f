//! Runs: insert, read, list, cancel, retry, delete.

use super::*;
use crate::store::limits::{displaced, displacing};
use crate::store::Limit;

pub(super) async fn load(
    conn: &mut PgConnection,
    tenant: &str,
    id: RunId,
) -> R<Option<RunSnapshot>> {
    let row: Option<RunRow> = sqlx::query_as("SELECT * FROM runs WHERE id = $1 AND tenant = $2")
        .bind(id.to_string())
        .bind(tenant)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(RunRow::snapshot).transpose()?)
}

/// The runs finished per minute and status (see [`Runs::ended_per_minute`]), from `finished`:
/// `$1` the tenant, `$2` and `$3` the bounds in µs.
const ENDED_PER_MINUTE: &str =
    "SELECT finished_at / 60000000 AS m, status, count(*) FROM finished \
     WHERE tenant = $1 AND finished_at >= $2 AND finished_at < $3 GROUP BY m, status";

/// The narrow table that holds exactly the runs of `status`, with their tenant and task:
/// `runs.status` has no index here, so that the life cycle's updates of `runs` stay in place
/// (`0019_finished.sql`). Scheduled runs have none: few and recent, they are found by walking
/// the tenant's runs from the newest. So are queued runs in a list (`listing`): `queue` has no
/// index in `run_seq` order by tenant, and a list must come newest first (a count need not).
fn status_table(status: RunStatus, listing: bool) -> Option<&'static str> {
    match status {
        RunStatus::Queued if !listing => Some("queue"),
        RunStatus::Running => Some("leases"),
        s if s.is_terminal() => Some("finished"),
        _ => None,
    }
}

/// `SELECT run_seq FROM <table> WHERE ...`: the runs of `filter`'s status in its narrow table,
/// of the tenant; a count also filters by task there, a list (`listing`) starts at the cursor.
/// A list leaves the task to its reads of `runs`: without statistics, PostgreSQL takes a filter
/// on the task for a few rows, and would read and sort all of the status's runs rather than walk
/// them in order (4.2 s with a million).
fn status_rows(
    q: &mut sql::Stmt,
    table: &str,
    tenant: &str,
    filter: &ListFilter,
    listing: bool,
) -> Result<()> {
    q.push("SELECT run_seq FROM ")
        .push(table)
        .push(" WHERE tenant = ")
        .bind(tenant);
    if let (Some(status), "finished") = (filter.status, table) {
        q.push(" AND status = ").bind(status.as_str());
    }
    if listing {
        if let Some(seq) = cursor_seq(filter)? {
            q.push(" AND run_seq < ").bind(seq);
        }
    } else if let Some(t) = &filter.task {
        q.push(" AND task = ").bind(t.as_str());
    }
    Ok(())
}

/// [`list_query`] for PostgreSQL: a status's runs are walked newest first in their narrow
/// table, each read from `runs` by its key (and checked against the whole filter there).
fn pg_list_query(tenant: &str, filter: &ListFilter) -> Result<(sql::Stmt, usize)> {
    let Some(table) = filter.status.and_then(|s| status_table(s, true)) else {
        return list_query(tenant, filter);
    };
    let limit = page_limit(filter);
    let mut q = sql::Stmt::new("SELECT r.* FROM (");
    status_rows(&mut q, table, tenant, filter, true)?;
    // The narrow table's subquery has no `ORDER BY`, so PostgreSQL plans it with the join for
    // the page's `LIMIT`: a walk of its index from the newest, stopping at the page's end (an
    // ordered subquery is planned alone, for all its rows: a sort of every finished run of the
    // status, 250 ms with a million). The subquery on `runs` is kept apart (`OFFSET 0`) and
    // read by key for each row of the walk: without statistics (autovacuum off, or a young
    // table), PostgreSQL takes `tenant = ... AND task = ...` for a few rows and would start
    // from `runs_by_task` and sort all of a task's runs instead (4.6 s with a million).
    q.push(") s CROSS JOIN LATERAL (SELECT * FROM runs WHERE seq = s.run_seq AND tenant = ")
        .bind(tenant);
    filter_where(&mut q, filter)?;
    q.push(" OFFSET 0) r ORDER BY s.run_seq DESC LIMIT ")
        .bind(i64::from(limit) + 1);
    Ok((q, limit as usize))
}

/// [`count_query`] for PostgreSQL: a status's runs are counted in their narrow table, and read
/// from `runs` only for the filters that table cannot answer.
fn pg_count_query(tenant: &str, filter: &ListFilter, max: Option<u64>) -> Result<sql::Stmt> {
    let Some(table) = filter.status.and_then(|s| status_table(s, false)) else {
        return count_query(tenant, filter, max);
    };
    let filter = ListFilter {
        cursor: None,
        ..filter.clone()
    };
    // What the narrow table answers alone (a filter of any other field reads `runs`).
    let narrow = ListFilter {
        status: filter.status,
        task: filter.task.clone(),
        limit: filter.limit,
        ..ListFilter::default()
    };
    let mut q = sql::Stmt::new("SELECT count(*) FROM (");
    if filter == narrow {
        status_rows(&mut q, table, tenant, &filter, false)?;
    } else {
        q.push("SELECT 1 FROM (");
        status_rows(&mut q, table, tenant, &filter, false)?;
        q.push(") s CROSS JOIN LATERAL (SELECT 1 FROM runs WHERE seq = s.run_seq AND tenant = ")
            .bind(tenant);
        filter_where(&mut q, &filter)?;
        q.push(") r");
    }
    if let Some(m) = max {
        q.push(" LIMIT ").bind(i64::try_from(m).unwrap_or(i64::MAX));
    }
    q.push(") AS bounded");
    Ok(q)
}

/// Deletes locked runs with everything that refers to them, in one statement.
pub(super) async fn delete_seqs(conn: &mut PgConnection, seqs: &[i64]) -> R<usize> {
    if seqs.is_empty() {
        return Ok(0);
    }
    let n: i64 = sqlx::query_scalar(
        "WITH e AS (DELETE FROM events WHERE run_seq = ANY($1)), \
         s AS (DELETE FROM steps WHERE run_seq = ANY($1)), \
         w AS (DELETE FROM event_waits WHERE run_seq = ANY($1)), \
         q AS (DELETE FROM queue WHERE run_seq = ANY($1)), \
         t AS (DELETE FROM timers WHERE run_seq = ANY($1)), \
         l AS (DELETE FROM leases WHERE run_seq = ANY($1)), \
         wf AS (DELETE FROM workflow_runs WHERE run_seq = ANY($1)), \
         x AS (DELETE FROM expiries WHERE run_seq = ANY($1)), \
         li AS (DELETE FROM links WHERE run_seq = ANY($1)), \
         f AS (DELETE FROM finished WHERE run_seq = ANY($1)), \
         r AS (DELETE FROM runs WHERE seq = ANY($1) RETURNING 1) \
         SELECT count(*) FROM r",
    )
    .bind(seqs)
    .fetch_one(conn)
    .await?;
    Ok(n as usize)
}

/// Inserts runs; see [`Store::insert_runs`]. With `ignore_conflicts`, an existing id is skipped
/// silently (cron ticks).
pub(super) async fn insert_runs_tx(
    conn: &mut PgConnection,
    runs: &[NewRun],
    now: DateTime<Utc>,
    ignore_conflicts: bool,
    wakes: &mut Wakes,
) -> R<Vec<Inserted>> {
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    for r in runs {
        no_nul("idempotency_key", r.idempotency_key.as_deref())?;
        no_nul("owner", r.owner.as_deref())?;
    }
    let n = runs.len();
    let mut id = Vec::with_capacity(n);
    let mut tenant = Vec::with_capacity(n);
    let mut task = Vec::with_capacity(n);
    let mut status = Vec::with_capacity(n);
    let mut max_attempts = Vec::with_capacity(n);
    let mut retries = Vec::with_capacity(n);
    let mut priority = Vec::with_capacity(n);
    let mut input = Vec::with_capacity(n);
    let mut owner = Vec::with_capacity(n);
    let mut key = Vec::with_capacity(n);
    let mut parent = Vec::with_capacity(n);
    let mut metadata = Vec::with_capacity(n);
    let mut timeout_ms = Vec::with_capacity(n);
    let mut backoff = Vec::with_capacity(n);
    let mut run_at = Vec::with_capacity(n);
    let mut ckey = Vec::with_capacity(n);
    let mut expires = Vec::with_capacity(n);
    for r in runs {
        id.push(r.id.to_string());
        tenant.push(r.tenant.as_str());
        task.push(r.task.as_str());
        status.push(if r.run_at > now {
            "scheduled"
        } else {
            "queued"
        });
        max_attempts.push(i64::from(r.retries) + 1);
        retries.push(i64::from(r.retries));
        priority.push(i64::from(r.priority));
        input.push(r.input.to_string());
        owner.push(r.owner.as_deref());
        key.push(r.idempotency_key.as_deref());
        parent.push(r.parent_id.map(|p| p.to_string()));
        metadata.push(r.metadata.as_ref().map(|m| m.to_string()));
        timeout_ms.push(r.timeout.as_millis() as i64);
        backoff.push(serde_json::to_string(&r.backoff).unwrap_or_default());
        run_at.push(micros(r.run_at.max(now)));
        ckey.push(r.concurrency_key().map(clean));
        expires.push(r.expires_at.map(micros));
    }
    let inserted: Vec<(i64, String)> = sqlx::query_as(
        "INSERT INTO runs (id, tenant, task, status, attempt, max_attempts, retries, priority, input, \
         owner, idempotency_key, parent_id, metadata, timeout_ms, backoff, run_at, created_at, \
         concurrency_key, expires_at) \
         SELECT id, te, ta, st, 0, ma, re, pr, inp, ow, ik, pa, me, tm, bo, ra, $16, ck, ex \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], \
           $7::bigint[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::bigint[], \
           $14::text[], $15::bigint[], $17::text[], $18::bigint[]) \
           WITH ORDINALITY AS u(id, te, ta, st, ma, re, pr, inp, ow, ik, pa, me, tm, bo, ra, ck, ex, o) \
         ORDER BY o \
         ON CONFLICT (id) DO NOTHING RETURNING seq, id",
    )
    .bind(&id)
    .bind(&tenant)
    .bind(&task)
    .bind(&status)
    .bind(&max_attempts)
    .bind(&retries)
    .bind(&priority)
    .bind(&input)
    .bind(&owner)
    .bind(&key)
    .bind(&parent)
    .bind(&metadata)
    .bind(&timeout_ms)
    .bind(&backoff)
    .bind(&run_at)
    .bind(micros(now))
    .bind(&ckey)
    .bind(&expires)
    .fetch_all(&mut *conn)
    .await?;
    let mut seqs: HashMap<String, i64> = inserted.into_iter().map(|(s, id)| (id, s)).collect();
    let mut out = Vec::with_capacity(n);
    let (mut q_seq, mut q_tenant, mut q_task, mut q_prio) = (vec![], vec![], vec![], vec![]);
    let mut q_key = vec![];
    let (mut t_seq, mut t_due) = (vec![], vec![]);
    let (mut e_seq, mut e_status, mut e_reason) = (vec![], vec![], vec![]);
    let (mut w_seq, mut w_tenant, mut w_id) = (vec![], vec![], vec![]);
    let mut links: Vec<(i64, &str, String, String, String)> = vec![];
    let (mut x_seq, mut x_tenant, mut x_id, mut x_at) = (vec![], vec![], vec![], vec![]);
    for r in runs {
        // `remove`: the same id twice in one batch is created once, then found existing.
        match seqs.remove(&r.id.to_string()) {
            Some(seq) => {
                let status = if r.run_at > now {
                    t_seq.push(seq);
                    t_due.push(micros(r.run_at));
                    RunStatus::Scheduled
                } else {
                    q_seq.push(seq);
                    q_tenant.push(r.tenant.as_str());
                    q_task.push(r.task.as_str());
                    q_prio.push(i64::from(r.priority));
                    q_key.push(r.concurrency_key().map(clean));
                    RunStatus::Queued
                };
                wakes.reached(status);
                if let Some(at) = r.expires_at {
                    x_seq.push(seq);
                    x_tenant.push(r.tenant.as_str());
                    x_id.push(r.id.to_string());
                    x_at.push(micros(at));
                }
                if r.workflow {
                    w_seq.push(seq);
                    w_tenant.push(r.tenant.as_str());
                    w_id.push(r.id.to_string());
                }
                if !r.links.is_empty() {
                    links.push((
                        seq,
                        r.tenant.as_str(),
                        r.id.to_string(),
                        serde_json::to_string(&r.links.on_success).unwrap_or_default(),
                        serde_json::to_string(&r.links.on_error).unwrap_or_default(),
                    ));
                }
                e_seq.push(seq);
                e_status.push(status.as_str());
                e_reason.push(clean(&r.reason));
                out.push(Inserted::Created(r.snapshot(status, now)));
            }
            None if ignore_conflicts => {}
            None => {
                let conflict = || Error::IdempotencyConflict {
                    key: r.idempotency_key.clone().unwrap_or_default(),
                    existing: r.id,
                };
                let existing = load(&mut *conn, &r.tenant, r.id)
                    .await?
                    .ok_or_else(conflict)?;
                if existing.input != r.input || existing.task != r.task {
                    return Err(conflict().into());
                }
                out.push(Inserted::Existing(existing));
            }
        }
    }
    if !e_seq.is_empty() {
        sqlx::query(
            // The turns of runs queued under a key (see `0017_turns.sql`) given here, two seeks
            // per key, rather than by the trigger, two per run (a third of a bulk insert).
            "WITH u AS MATERIALIZED (SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], \
                 $4::bigint[], $11::text[]) WITH ORDINALITY AS u(s, te, ta, p, k, o)), \
             b AS MATERIALIZED (SELECT x.te, x.ta, x.k, greatest(coalesce( \
                 (SELECT turn FROM queue WHERE tenant = x.te AND task = x.ta AND ckey IS NOT NULL \
                   ORDER BY priority DESC, turn, qid LIMIT 1), 0), \
                 (SELECT turn + 1 FROM queue WHERE ckey = x.k AND tenant = x.te AND task = x.ta \
                   ORDER BY turn DESC NULLS LAST LIMIT 1)) AS b \
               FROM (SELECT DISTINCT te, ta, k FROM u WHERE k IS NOT NULL) x), \
             q AS (INSERT INTO queue (run_seq, tenant, task, priority, ckey, turn) \
               SELECT u.s, u.te, u.ta, u.p, u.k, \
                 b.b + row_number() OVER (PARTITION BY u.te, u.ta, u.k ORDER BY u.o) - 1 \
               FROM u LEFT JOIN b ON b.te = u.te AND b.ta = u.ta AND b.k = u.k ORDER BY u.o), \
             t AS (INSERT INTO timers (run_seq, due_at) SELECT * FROM UNNEST($5::bigint[], $6::bigint[]) \
               ON CONFLICT (run_seq) DO UPDATE SET due_at = excluded.due_at) \
             INSERT INTO events (run_seq, at, from_status, to_status, attempt, worker, reason) \
             SELECT s, $7, NULL, st, 0, NULL, r FROM UNNEST($8::bigint[], $9::text[], $10::text[]) \
               WITH ORDINALITY AS u(s, st, r, o) ORDER BY o",
        )
        .bind(&q_seq)
        .bind(&q_tenant)
        .bind(&q_task)
        .bind(&q_prio)
        .bind(&t_seq)
        .bind(&t_due)
        .bind(micros(now))
        .bind(&e_seq)
        .bind(&e_status)
        .bind(&e_reason)
        .bind(&q_key)
        .execute(&mut *conn)
        .await?;
    }
    if !x_seq.is_empty() {
        sqlx::query(
            "INSERT INTO expiries (run_seq, tenant, id, at) \
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[])",
        )
        .bind(&x_seq)
        .bind(&x_tenant)
        .bind(&x_id)
        .bind(&x_at)
        .execute(&mut *conn)
        .await?;
    }
    if !w_seq.is_empty() {
        sqlx::query(
            "INSERT INTO workflow_runs (run_seq, tenant, id) \
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[])",
        )
        .bind(&w_seq)
        .bind(&w_tenant)
        .bind(&w_id)
        .execute(&mut *conn)
        .await?;
    }
    // Runs with links are few (Celery's link / link_error): one insert each.
    for (seq, tenant, id, on_success, on_error) in links {
        sqlx::query(
            "INSERT INTO links (run_seq, tenant, id, on_success, on_error) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(seq)
        .bind(tenant)
        .bind(id)
        .bind(on_success)
        .bind(on_error)
        .execute(&mut *conn)
        .await?;
    }
    Ok(out)
}

/// A run retried is followed up again: a workflow run is advanced again, and a run's links are
/// scheduled again when it finishes (no rows for other runs).
async fn reopen(conn: &mut PgConnection, seqs: &[i64]) -> R<()> {
    if seqs.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "WITH w AS (UPDATE workflow_runs SET done = FALSE WHERE run_seq = ANY($1)) \
         UPDATE links SET done = FALSE WHERE run_seq = ANY($1)",
    )
    .bind(seqs)
    .execute(conn)
    .await?;
    Ok(())
}

/// The queued and running runs of a key of a task, oldest first.
async fn active_of_key(
    conn: &mut PgConnection,
    tenant: &str,
    task: &str,
    key: &str,
) -> R<Vec<RunId>> {
    let ids: Vec<String> = sqlx::query_scalar(
        // The key's queue rows and leases, few: never the task's finished runs.
        "SELECT id FROM runs WHERE seq = ANY(ARRAY(\
           SELECT run_seq FROM queue WHERE tenant = $1 AND task = $2 AND ckey = $3 \
           UNION ALL SELECT run_seq FROM leases WHERE tenant = $1 AND task = $2 AND ckey = $3)) \
         AND status IN ('queued', 'running') ORDER BY seq",
    )
    .bind(tenant)
    .bind(task)
    .bind(clean(key))
    .fetch_all(conn)
    .await?;
    Ok(ids.iter().map(|i| i.parse()).collect::<Result<_>>()?)
}

/// The cancel strategies of the runs just inserted, in their transaction (see [`displaced`]),
/// under the lock that claims of the task take: a run that its strategy cancels is never seen
/// queued by a claim, and two inserts of one key through two replicas see each other.
pub(super) async fn make_room(
    conn: &mut PgConnection,
    runs: &[NewRun],
    inserted: &mut [Inserted],
    now: DateTime<Utc>,
    wakes: &mut Wakes,
) -> R<()> {
    // Every lock first, in the order claims take theirs (sorted), so that an insert and a claim
    // under several limits never wait for each other in a cycle.
    let mut locks: Vec<String> = displacing(runs, inserted)
        .map(|(run, _, _, _)| Limit::concurrency_lock(&clean(&run.tenant), &clean(&run.task)))
        .collect();
    locks.sort();
    locks.dedup();
    for lock in locks {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(lock)
            .execute(&mut *conn)
            .await?;
    }
    for (run, limit, key, snap) in displacing(runs, inserted) {
        let others = active_of_key(&mut *conn, &run.tenant, &run.task, key).await?;
        for victim in displaced(limit, run.id, &others) {
            let Some(mut st) = lock_run(&mut *conn, &run.tenant, victim).await? else {
                continue;
            };
            let change = st.plan(Happening::Cancel, now)?;
            apply(&mut *conn, change.as_slice(), now, wakes).await?;
            tracing::info!(run_id = %victim, task = %run.task, key = %key, strategy = limit.strategy.as_str(), "concurrency limit reached: run cancelled");
            if victim == run.id {
                *snap = load(&mut *conn, &run.tenant, run.id)
                    .await?
                    .ok_or_else(|| Error::run_not_found(run.id))?;
            }
        }
    }
    Ok(())
}

impl PostgresStore {
    pub(super) async fn insert_tx(&self, runs: &[NewRun], now: DateTime<Utc>) -> R<Vec<Inserted>> {
        let mut tx = self.pool.begin().await?;
        let mut wakes = Wakes::default();
        let mut out = insert_runs_tx(&mut tx, runs, now, false, &mut wakes).await?;
        make_room(&mut tx, runs, &mut out, now, &mut wakes).await?;
        notify(&mut tx, wakes).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// A command on one run (an operator's cancel or retry, a workflow run's own step): the run
    /// is locked, the life cycle decides, the change is applied (with `output`, when it
    /// applies); returns the run as it is after.
    pub(super) async fn command_tx(
        &self,
        tenant: &str,
        id: RunId,
        command: Happening<'_>,
        output: Option<&Value>,
        now: DateTime<Utc>,
    ) -> R<RunSnapshot> {
        let mut tx = self.pool.begin().await?;
        let mut st = lock_run(&mut tx, tenant, id)
            .await?
            .ok_or_else(|| Error::run_not_found(id))?;
        let change = match st.plan(command, now) {
            Ok(change) => change,
            Err(e) => {
                // Roll back now: a dropped transaction is rolled back only when its connection
                // is next used, and until then its lock makes claims skip this run.
                tx.rollback().await?;
                return Err(e.into());
            }
        };
        let mut wakes = Wakes::default();
        apply(&mut tx, change.as_slice(), now, &mut wakes).await?;
        if let Some(p) = &change {
            if matches!(command, Happening::Retry) {
                reopen(&mut tx, &[p.seq]).await?;
            }
            if let Some(out) = output {
                sqlx::query("UPDATE runs SET output = $1 WHERE seq = $2")
                    .bind(clean(&out.to_string()))
                    .bind(p.seq)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let snap = load(&mut tx, tenant, id)
            .await?
            .ok_or_else(|| Error::run_not_found(id))?;
        notify(&mut tx, wakes).await?;
        tx.commit().await?;
        Ok(snap)
    }

    /// Cancels or retries runs in one transaction, locked in `seq` order, their changes
    /// written in one batch; see [`Runs::act_on_runs`].
    pub(super) async fn act_tx(
        &self,
        tenant: &str,
        ids: &[RunId],
        retry: bool,
        now: DateTime<Utc>,
    ) -> R<u64> {
        let mut tx = self.pool.begin().await?;
        let happened = if retry {
            Happening::Retry
        } else {
            Happening::Cancel
        };
        let mut changes = Vec::with_capacity(ids.len());
        for mut st in lock_runs(&mut tx, tenant, ids).await? {
            match st.plan(happened, now) {
                Ok(change) => changes.extend(change),
                Err(Error::InvalidTransition { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut wakes = Wakes::default();
        apply(&mut tx, &changes, now, &mut wakes).await?;
        if retry {
            reopen(&mut tx, &changes.iter().map(|p| p.seq).collect::<Vec<_>>()).await?;
        }
        notify(&mut tx, wakes).await?;
        tx.commit().await?;
        Ok(changes.len() as u64)
    }

    /// See [`Runs::replay_run`].
    pub(super) async fn replay_tx(
        &self,
        tenant: &str,
        id: RunId,
        position: u32,
        step: &str,
        now: DateTime<Utc>,
    ) -> R<RunSnapshot> {
        let mut tx = self.pool.begin().await?;
        let mut st = lock_run(&mut tx, tenant, id)
            .await?
            .ok_or_else(|| Error::run_not_found(id))?;
        let change = match st.plan(Happening::Replay { position, step }, now) {
            Ok(change) => change,
            Err(e) => {
                tx.rollback().await?;
                return Err(e.into());
            }
        };
        let mut wakes = Wakes::default();
        apply(&mut tx, change.as_slice(), now, &mut wakes).await?;
        sqlx::query(
            "WITH s AS (DELETE FROM steps WHERE run_seq = $1 AND position >= $2) \
             UPDATE runs SET replays = replays + 1 WHERE seq = $1",
        )
        .bind(st.seq)
        .bind(i64::from(position))
        .execute(&mut *tx)
        .await?;
        reopen(&mut tx, &[st.seq]).await?;
        let snap = load(&mut tx, tenant, id)
            .await?
            .ok_or_else(|| Error::run_not_found(id))?;
        notify(&mut tx, wakes).await?;
        tx.commit().await?;
        Ok(snap)
    }

    /// See [`Runs::expire_due`]: the due expiries are taken with `SKIP LOCKED`, so replicas
    /// share them.
    pub(super) async fn expire_tx(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> R<(usize, Option<DateTime<Utc>>)> {
        // A read first: most passes have nothing due, and need no transaction.
        let next: Option<i64> = sqlx::query_scalar("SELECT min(at) FROM expiries")
            .fetch_one(&self.pool)
            .await?;
        match next {
            Some(at) if at <= micros(now) => {}
            _ => return Ok((0, next.map(from_micros))),
        }
        let mut tx = self.pool.begin().await?;
        let due: Vec<(i64, String, String, i64)> = sqlx::query_as(
            "SELECT run_seq, tenant, id, at FROM expiries WHERE at <= $1 ORDER BY at LIMIT $2 \
             FOR UPDATE SKIP LOCKED",
        )
        .bind(micros(now))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut wakes = Wakes::default();
        let mut expired = 0;
        for (seq, tenant, id, at) in &due {
            let id: RunId = id.parse()?;
            if let Some(mut st) = lock_run(&mut tx, tenant, id).await? {
                let change = st.plan(
                    Happening::Expired {
                        at: from_micros(*at),
                    },
                    now,
                )?;
                expired += usize::from(change.is_some());
                apply(&mut tx, change.as_slice(), now, &mut wakes).await?;
            }
            sqlx::query("DELETE FROM expiries WHERE run_seq = $1")
                .bind(seq)
                .execute(&mut *tx)
                .await?;
        }
        let next: Option<i64> = sqlx::query_scalar("SELECT min(at) FROM expiries")
            .fetch_one(&mut *tx)
            .await?;
        notify(&mut tx, wakes).await?;
        tx.commit().await?;
        Ok((expired, next.map(from_micros)))
    }

    pub(super) async fn count_tx(
        &self,
        tenant: &str,
        filter: &ListFilter,
        max: Option<u64>,
    ) -> R<u64> {
        let q = pg_count_query(tenant, filter, max)?;
        let n: i64 = sqlx::query_scalar_with(&q.sql, args(&q.params)?)
            .fetch_one(&self.pool)
            .await?;
        Ok(n as u64)
    }

    pub(super) async fn delete_tx(&self, tenant: &str, ids: &[RunId]) -> R<usize> {
        let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        let mut tx = self.pool.begin().await?;
        let seqs: Vec<i64> = sqlx::query_scalar(
            "SELECT seq FROM runs WHERE tenant = $1 AND id = ANY($2) ORDER BY seq FOR UPDATE",
        )
        .bind(tenant)
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        let n = delete_seqs(&mut tx, &seqs).await?;
        tx.commit().await?;
        Ok(n)
    }

    pub(super) async fn purge_tx(&self, before: DateTime<Utc>, limit: u32) -> R<usize> {
        let mut tx = self.pool.begin().await?;
        // The oldest finished runs, from `finished`; runs being retried right now (locked, or
        // no longer finished once the lock is ours) are left for the next purge.
        let seqs: Vec<i64> = sqlx::query_scalar(
            "SELECT seq FROM runs WHERE seq = ANY(ARRAY(\
               SELECT run_seq FROM finished WHERE finished_at < $1 ORDER BY finished_at LIMIT $2)) \
             AND finished_at < $1 ORDER BY seq FOR UPDATE SKIP LOCKED",
        )
        .bind(micros(before))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let n = delete_seqs(&mut tx, &seqs).await?;
        tx.commit().await?;
        Ok(n)
    }

    pub(super) async fn list_tx(&self, tenant: &str, filter: &ListFilter) -> R<RunPage> {
        let (q, limit) = pg_list_query(tenant, filter)?;
        let rows: Vec<RunRow> = sqlx::query_as_with(&q.sql, args(&q.params)?)
            .fetch_all(&self.pool)
            .await?;
        Ok(page_of(rows, limit)?)
    }

    pub(super) async fn events_tx(&self, tenant: &str, id: RunId) -> R<Vec<RunEvent>> {
        let seq: i64 = sqlx::query_scalar("SELECT seq FROM runs WHERE id = $1 AND tenant = $2")
            .bind(id.to_string())
            .bind(tenant)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::run_not_found(id))?;
        let rows: Vec<EventRow> = sqlx::query_as(&format!(
            "SELECT {EVENT_COLS} FROM events WHERE run_seq = $1 ORDER BY id"
        ))
        .bind(seq)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| r.event(id))
            .collect::<Result<Vec<_>>>()?)
    }
}

#[async_trait]
impl Runs for PostgresStore {
    async fn insert_runs(&self, runs: Vec<NewRun>, now: DateTime<Utc>) -> Result<Vec<Inserted>> {
        let runs = &runs;
        self.retry(|| self.insert_tx(runs, now)).await
    }

    async fn get_run(&self, tenant: &str, id: RunId) -> Result<Option<RunSnapshot>> {
        self.retry(|| async move {
            let mut conn = self.pool.acquire().await?;
            load(&mut conn, tenant, id).await
        })
        .await
    }

    async fn list_runs(&self, tenant: &str, filter: &ListFilter) -> Result<RunPage> {
        self.retry(|| self.list_tx(tenant, filter)).await
    }

    async fn run_events(&self, tenant: &str, id: RunId) -> Result<Vec<RunEvent>> {
        self.retry(|| self.events_tx(tenant, id)).await
    }

    async fn running_of_key(&self, tenant: &str, task: &str, key: &str) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM leases WHERE tenant = $1 AND task = $2 AND ckey = $3",
        )
        .bind(tenant)
        .bind(task)
        .bind(clean(key))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.place.db(e))?;
        Ok(n as u64)
    }

    async fn cancel_run(&self, tenant: &str, id: RunId, now: DateTime<Utc>) -> Result<RunSnapshot> {
        self.retry(|| self.command_tx(tenant, id, Happening::Cancel, None, now))
            .await
    }

    async fn retry_run(&self, tenant: &str, id: RunId, now: DateTime<Utc>) -> Result<RunSnapshot> {
        self.retry(|| self.command_tx(tenant, id, Happening::Retry, None, now))
            .await
    }

    async fn act_on_runs(
        &self,
        tenant: &str,
        ids: &[RunId],
        retry: bool,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        self.retry(|| self.act_tx(tenant, ids, retry, now)).await
    }

    async fn replay_run(
        &self,
        tenant: &str,
        id: RunId,
        position: u32,
        step: &str,
        now: DateTime<Utc>,
    ) -> Result<RunSnapshot> {
        self.retry(|| self.replay_tx(tenant, id, position, step, now))
            .await
    }

    async fn count_runs(&self, tenant: &str, filter: &ListFilter, max: Option<u64>) -> Result<u64> {
        self.retry(|| self.count_tx(tenant, filter, max)).await
    }

    async fn expire_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<(usize, Option<DateTime<Utc>>)> {
        self.retry(|| self.expire_tx(now, limit)).await
    }

    async fn ended_per_minute(
        &self,
        tenant: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<(i64, String, u64)>> {
        let rows: Vec<(i64, String, i64)> = self
            .retry(|| async move {
                Ok(sqlx::query_as(ENDED_PER_MINUTE)
                    .bind(tenant)
                    .bind(micros(since))
                    .bind(micros(until))
                    .fetch_all(&self.pool)
                    .await?)
            })
            .await?;
        Ok(rows.into_iter().map(|(m, s, n)| (m, s, n as u64)).collect())
    }

    async fn delete_runs(&self, tenant: &str, ids: &[RunId]) -> Result<usize> {
        self.retry(|| self.delete_tx(tenant, ids)).await
    }

    async fn purge(&self, before: DateTime<Utc>, limit: u32) -> Result<usize> {
        self.retry(|| self.purge_tx(before, limit)).await
    }
}
