//! Life-cycle changes: a run's state read under the lock, and the batched writes of the changes `owlclaw_core::lifecycle` decides.

use super::*;

/// Reads the state of a run of `tenant` inside a write transaction.
pub(super) async fn state_by_id(
    conn: &mut SqliteConnection,
    tenant: &str,
    id: RunId,
) -> Result<Option<Locked>> {
    let sql = format!("SELECT {STATE_COLS} FROM runs WHERE id = ? AND tenant = ?");
    let row: Option<StateRow> = sqlx::query_as(&sql)
        .bind(id.to_string())
        .bind(tenant)
        .fetch_optional(conn)
        .await
        .map_err(db)?;
    row.map(Locked::try_from).transpose()
}

/// Reads one run's state by its row inside a write transaction.
pub(super) async fn state_by_seq(conn: &mut SqliteConnection, seq: i64) -> Result<Option<Locked>> {
    let row: Option<StateRow> =
        sqlx::query_as(&format!("SELECT {STATE_COLS} FROM runs WHERE seq = ?"))
            .bind(seq)
            .fetch_optional(conn)
            .await
            .map_err(db)?;
    row.map(Locked::try_from).transpose()
}

/// Applies life-cycle changes: the runs' rows, the narrow tables they leave and enter (`leases`
/// when leaving `running`, `queue` and `timers` when leaving or entering `queued` and
/// `scheduled`), and their events, a few statements per batch whatever its size.
pub(super) async fn apply(
    conn: &mut SqliteConnection,
    changes: &[Planned],
    now: DateTime<Utc>,
) -> Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let moves = Moves::of(changes);
    let events: Vec<Value> = changes
        .iter()
        .map(|p| {
            let e = &p.change.event;
            json!([
                p.seq,
                e.from.map(|s| s.as_str()),
                e.to.as_str(),
                e.attempt,
                e.worker,
                e.reason
            ])
        })
        .collect();
    let rows: Vec<Value> = moves
        .moved
        .iter()
        .map(|p| {
            let c = &p.change;
            json!([
                p.seq,
                c.status.as_str(),
                c.attempt,
                c.max_attempts,
                c.error,
                c.errors,
                c.worker_id,
                c.worker,
                p.run_at(),
                p.finished_at(),
                p.start(),
                c.clear_output,
            ])
        })
        .collect();
    let queue: Vec<Value> = moves
        .queued
        .iter()
        .map(|p| json!([p.seq, p.tenant, p.task, p.priority]))
        .collect();
    let timers: Vec<Value> = moves
        .timed
        .iter()
        .map(|p| json!([p.seq, p.run_at()]))
        .collect();
    if !rows.is_empty() {
        sqlx::query(
            "UPDATE runs SET status = c.status, attempt = c.attempt, max_attempts = c.max_attempts, \
             error = c.error, errors = c.errors, worker_id = c.worker_id, run_at = c.run_at, \
             finished_at = c.finished_at, \
             worker = CASE c.start WHEN 'clear' THEN NULL WHEN 'now' THEN c.worker ELSE runs.worker END, \
             started_at = CASE c.start WHEN 'clear' THEN NULL WHEN 'now' THEN ?2 ELSE runs.started_at END, \
             output = CASE WHEN c.clear_output THEN NULL ELSE runs.output END \
             FROM (SELECT value->>0 AS seq, value->>1 AS status, value->>2 AS attempt, \
               value->>3 AS max_attempts, value->>4 AS error, value->>5 AS errors, \
               value->>6 AS worker_id, value->>7 AS worker, value->>8 AS run_at, \
               value->>9 AS finished_at, value->>10 AS start, value->>11 AS clear_output \
               FROM json_each(?1)) AS c \
             WHERE runs.seq = c.seq",
        )
        .bind(Value::Array(rows).to_string())
        .bind(micros(now))
        .execute(&mut *conn)
        .await
        .map_err(db)?;
        for (table, seqs) in [
            ("leases", &moves.left_leases),
            ("queue", &moves.left_queue),
            ("timers", &moves.left_timers),
        ] {
            if !seqs.is_empty() {
                sqlx::query(&format!(
                    "DELETE FROM {table} WHERE run_seq IN (SELECT value FROM json_each(?))"
                ))
                .bind(seqs_json(seqs))
                .execute(&mut *conn)
                .await
                .map_err(db)?;
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
            sqlx::query(
                "INSERT OR REPLACE INTO timers (run_seq, due_at) \
                 SELECT value->>0, value->>1 FROM json_each(?)",
            )
            .bind(Value::Array(timers).to_string())
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        }
    }
    sqlx::query(
        "INSERT INTO events (run_seq, at, from_status, to_status, attempt, worker, reason) \
         SELECT value->>0, ?2, value->>1, value->>2, value->>3, value->>4, value->>5 FROM json_each(?1)",
    )
    .bind(Value::Array(events).to_string())
    .bind(micros(now))
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(())
}
