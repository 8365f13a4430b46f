//! Life-cycle changes: a run's state read under the lock, and the batched writes of the changes `owlclaw_core::lifecycle` decides.

use super::*;

/// Locks one run (by public id, in a tenant) and reads its state.
pub(super) async fn lock_run(
    conn: &mut PgConnection,
    tenant: &str,
    id: RunId,
) -> R<Option<Locked>> {
    let sql = format!("SELECT {STATE_COLS} FROM runs WHERE id = $1 AND tenant = $2 FOR UPDATE");
    let row: Option<StateRow> = sqlx::query_as(&sql)
        .bind(id.to_string())
        .bind(tenant)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(Locked::try_from).transpose()?)
}

/// Applies the changes of locked runs: their rows, the narrow tables they leave and enter
/// (`leases` when leaving `running`, `queue` and `timers` when leaving or entering `queued` and
/// `scheduled`), and their events, in three statements whatever their number.
pub(super) async fn apply(
    conn: &mut PgConnection,
    changes: &[Planned],
    now: DateTime<Utc>,
    wakes: &mut Wakes,
) -> R<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let n = changes.len();
    let mut seq = Vec::with_capacity(n);
    let mut status = Vec::with_capacity(n);
    let mut attempt = Vec::with_capacity(n);
    let mut max_attempts = Vec::with_capacity(n);
    let mut error = Vec::with_capacity(n);
    let mut errors = Vec::with_capacity(n);
    let mut worker_id = Vec::with_capacity(n);
    let mut worker = Vec::with_capacity(n);
    let mut run_at = Vec::with_capacity(n);
    let mut finished_at = Vec::with_capacity(n);
    let mut start = Vec::with_capacity(n);
    let mut clear_output = Vec::with_capacity(n);
    let (mut from_running, mut from_queued, mut from_scheduled) = (vec![], vec![], vec![]);
    let (mut q_seq, mut q_tenant, mut q_task, mut q_prio) = (vec![], vec![], vec![], vec![]);
    let (mut t_seq, mut t_due) = (vec![], vec![]);
    let (mut e_seq, mut e_from, mut e_to, mut e_attempt, mut e_worker, mut e_reason) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for p in changes {
        let c = &p.change;
        e_seq.push(p.seq);
        e_from.push(c.event.from.map(|s| s.as_str()));
        e_to.push(c.event.to.as_str());
        e_attempt.push(i64::from(c.event.attempt));
        e_worker.push(c.event.worker.as_deref().map(clean));
        e_reason.push(clean(&c.event.reason));
        if !p.moves() {
            continue;
        }
        seq.push(p.seq);
        status.push(c.status.as_str());
        attempt.push(i64::from(c.attempt));
        max_attempts.push(i64::from(c.max_attempts));
        error.push(c.error.clone());
        errors.push(c.errors.clone());
        worker_id.push(c.worker_id.clone());
        worker.push(c.worker.as_deref().map(clean));
        run_at.push(p.run_at());
        finished_at.push(p.finished_at());
        start.push(match c.start {
            Start::Keep => "keep",
            Start::Now => "now",
            Start::Clear => "clear",
        });
        clear_output.push(c.clear_output);
        match c.from {
            RunStatus::Running => from_running.push(p.seq),
            RunStatus::Queued => from_queued.push(p.seq),
            RunStatus::Scheduled => from_scheduled.push(p.seq),
            _ => {}
        }
        match c.status {
            RunStatus::Queued => {
                q_seq.push(p.seq);
                q_tenant.push(p.tenant.clone());
                q_task.push(p.task.clone());
                q_prio.push(p.priority);
            }
            RunStatus::Scheduled => {
                t_seq.push(p.seq);
                t_due.push(p.run_at());
            }
            _ => {}
        }
        wakes.reached(c.status);
    }
    if !seq.is_empty() {
        sqlx::query(
            "UPDATE runs SET status = c.status, attempt = c.attempt, max_attempts = c.max_attempts, \
             error = c.error, errors = c.errors, worker_id = c.worker_id, run_at = c.run_at, \
             finished_at = c.finished_at, \
             worker = CASE c.start WHEN 'clear' THEN NULL WHEN 'now' THEN c.worker ELSE runs.worker END, \
             started_at = CASE c.start WHEN 'clear' THEN NULL WHEN 'now' THEN $13 ELSE runs.started_at END, \
             output = CASE WHEN c.clear_output THEN NULL ELSE runs.output END \
             FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], \
             $7::text[], $8::text[], $9::bigint[], $10::bigint[], $11::text[], $12::bool[]) \
             AS c(seq, status, attempt, max_attempts, error, errors, worker_id, worker, run_at, \
             finished_at, start, clear_output) \
             WHERE runs.seq = c.seq",
        )
        .bind(&seq)
        .bind(&status)
        .bind(&attempt)
        .bind(&max_attempts)
        .bind(&error)
        .bind(&errors)
        .bind(&worker_id)
        .bind(&worker)
        .bind(&run_at)
        .bind(&finished_at)
        .bind(&start)
        .bind(&clear_output)
        .bind(micros(now))
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "WITH l AS (DELETE FROM leases WHERE run_seq = ANY($1)), \
             q AS (DELETE FROM queue WHERE run_seq = ANY($2)) \
             DELETE FROM timers WHERE run_seq = ANY($3)",
        )
        .bind(&from_running)
        .bind(&from_queued)
        .bind(&from_scheduled)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query(
        "WITH q AS (INSERT INTO queue (run_seq, tenant, task, priority) \
           SELECT s, te, ta, p FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[]) \
           WITH ORDINALITY AS u(s, te, ta, p, o) ORDER BY o), \
         t AS (INSERT INTO timers (run_seq, due_at) SELECT * FROM UNNEST($5::bigint[], $6::bigint[]) \
           ON CONFLICT (run_seq) DO UPDATE SET due_at = excluded.due_at) \
         INSERT INTO events (run_seq, at, from_status, to_status, attempt, worker, reason) \
         SELECT s, $7, f, t, a, w, r FROM UNNEST($8::bigint[], $9::text[], $10::text[], $11::bigint[], \
           $12::text[], $13::text[]) WITH ORDINALITY AS u(s, f, t, a, w, r, o) ORDER BY o",
    )
    .bind(&q_seq)
    .bind(&q_tenant)
    .bind(&q_task)
    .bind(&q_prio)
    .bind(&t_seq)
    .bind(&t_due)
    .bind(micros(now))
    .bind(&e_seq)
    .bind(&e_from)
    .bind(&e_to)
    .bind(&e_attempt)
    .bind(&e_worker)
    .bind(&e_reason)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
