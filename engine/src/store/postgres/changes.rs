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

/// Locks runs (by public id, in a tenant) in `seq` order, the order every batch takes its
/// locks in, and reads their states; ids with no run are left out.
pub(super) async fn lock_runs(
    conn: &mut PgConnection,
    tenant: &str,
    ids: &[RunId],
) -> R<Vec<Locked>> {
    let ids: Vec<String> = ids.iter().map(RunId::to_string).collect();
    let sql = format!(
        "SELECT {STATE_COLS} FROM runs WHERE id = ANY($1) AND tenant = $2 ORDER BY seq FOR UPDATE"
    );
    let rows: Vec<StateRow> = sqlx::query_as(&sql)
        .bind(&ids)
        .bind(tenant)
        .fetch_all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(Locked::try_from)
        .collect::<std::result::Result<_, _>>()?)
}

/// Applies the changes of locked runs: their rows, the narrow tables they leave and enter
/// (`leases` when leaving `running`, `queue` and `timers` when leaving or entering `queued` and
/// `scheduled`, `finished` when entering or leaving the final statuses), and their events, in
/// three statements whatever their number.
pub(super) async fn apply(
    conn: &mut PgConnection,
    changes: &[Planned],
    now: DateTime<Utc>,
    wakes: &mut Wakes,
) -> R<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let moves = Moves::of(changes);
    let e_seq: Vec<i64> = changes.iter().map(|p| p.seq).collect();
    let e_from: Vec<Option<&str>> = changes
        .iter()
        .map(|p| p.change.event.from.map(|s| s.as_str()))
        .collect();
    let e_to: Vec<&str> = changes.iter().map(|p| p.change.event.to.as_str()).collect();
    let e_attempt: Vec<i64> = changes
        .iter()
        .map(|p| i64::from(p.change.event.attempt))
        .collect();
    let e_worker: Vec<Option<String>> = changes
        .iter()
        .map(|p| p.change.event.worker.as_deref().map(clean))
        .collect();
    let e_reason: Vec<String> = changes
        .iter()
        .map(|p| clean(&p.change.event.reason))
        .collect();
    let m = &moves.moved;
    let seq: Vec<i64> = m.iter().map(|p| p.seq).collect();
    let status: Vec<&str> = m.iter().map(|p| p.change.status.as_str()).collect();
    let attempt: Vec<i64> = m.iter().map(|p| i64::from(p.change.attempt)).collect();
    let max_attempts: Vec<i64> = m.iter().map(|p| i64::from(p.change.max_attempts)).collect();
    let error: Vec<Option<String>> = m.iter().map(|p| p.change.error.clone()).collect();
    let errors: Vec<Option<String>> = m.iter().map(|p| p.change.errors.clone()).collect();
    let worker_id: Vec<Option<String>> = m.iter().map(|p| p.change.worker_id.clone()).collect();
    let worker: Vec<Option<String>> = m
        .iter()
        .map(|p| p.change.worker.as_deref().map(clean))
        .collect();
    let run_at: Vec<i64> = m.iter().map(|p| p.run_at()).collect();
    let finished_at: Vec<Option<i64>> = m.iter().map(|p| p.finished_at()).collect();
    let start: Vec<&str> = m.iter().map(|p| p.start()).collect();
    let clear_output: Vec<bool> = m.iter().map(|p| p.change.clear_output).collect();
    for p in m {
        wakes.reached(p.change.status);
    }
    let (from_running, from_queued, from_scheduled) =
        (&moves.left_leases, &moves.left_queue, &moves.left_timers);
    let q_seq: Vec<i64> = moves.queued.iter().map(|p| p.seq).collect();
    let q_tenant: Vec<&str> = moves.queued.iter().map(|p| p.tenant.as_str()).collect();
    let q_task: Vec<&str> = moves.queued.iter().map(|p| p.task.as_str()).collect();
    let q_prio: Vec<i64> = moves.queued.iter().map(|p| p.priority).collect();
    let t_seq: Vec<i64> = moves.timed.iter().map(|p| p.seq).collect();
    let t_due: Vec<i64> = moves.timed.iter().map(|p| p.run_at()).collect();
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
        let f_seq: Vec<i64> = moves.finished.iter().map(|p| p.seq).collect();
        let f_tenant: Vec<&str> = moves.finished.iter().map(|p| p.tenant.as_str()).collect();
        let f_task: Vec<&str> = moves.finished.iter().map(|p| p.task.as_str()).collect();
        let f_status: Vec<&str> = moves
            .finished
            .iter()
            .map(|p| p.change.status.as_str())
            .collect();
        let f_at: Vec<i64> = moves
            .finished
            .iter()
            .map(|p| p.finished_at().unwrap_or_else(|| micros(now)))
            .collect();
        sqlx::query(
            "WITH l AS (DELETE FROM leases WHERE run_seq = ANY($1)), \
             q AS (DELETE FROM queue WHERE run_seq = ANY($2)), \
             f AS (DELETE FROM finished WHERE run_seq = ANY($4)), \
             e AS (INSERT INTO finished (run_seq, tenant, task, status, finished_at) \
               SELECT * FROM UNNEST($5::bigint[], $6::text[], $7::text[], $8::text[], $9::bigint[]) \
               ON CONFLICT (run_seq) DO UPDATE SET status = excluded.status, \
                 finished_at = excluded.finished_at) \
             DELETE FROM timers WHERE run_seq = ANY($3)",
        )
        .bind(from_running)
        .bind(from_queued)
        .bind(from_scheduled)
        .bind(&moves.left_finished)
        .bind(&f_seq)
        .bind(&f_tenant)
        .bind(&f_task)
        .bind(&f_status)
        .bind(&f_at)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query(
        "WITH q AS (INSERT INTO queue (run_seq, tenant, task, priority, ckey) \
           SELECT s, te, ta, p, (SELECT concurrency_key FROM runs WHERE seq = s) \
           FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[]) \
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
