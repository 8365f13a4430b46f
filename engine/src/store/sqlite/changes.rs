//! Life-cycle changes: a run's state read under the lock, and the batched writes of the changes `owlclaw_core::lifecycle` decides.

use super::*;

/// Reads the state of a run of `tenant` inside a write transaction.
pub(super) fn state_by_id(conn: &Connection, tenant: &str, id: RunId) -> Result<Option<Locked>> {
    let sql = format!("SELECT {STATE_COLS} FROM runs WHERE id = ?1 AND tenant = ?2");
    let row = one(
        conn,
        &sql,
        params![id.to_string(), tenant],
        StateRow::from_sqlite,
    )?;
    row.map(Locked::try_from).transpose()
}

/// Reads one run's state by its row inside a write transaction.
pub(super) fn state_by_seq(conn: &Connection, seq: i64) -> Result<Option<Locked>> {
    let sql = format!("SELECT {STATE_COLS} FROM runs WHERE seq = ?1");
    let row = one(conn, &sql, params![seq], StateRow::from_sqlite)?;
    row.map(Locked::try_from).transpose()
}

/// Deletes the rows of `table` of the runs `seqs`.
pub(super) fn delete_from(conn: &Connection, table: &str, seqs: &[i64]) -> Result<usize> {
    if seqs.is_empty() {
        return Ok(0);
    }
    exec(
        conn,
        &format!("DELETE FROM {table} WHERE run_seq IN (SELECT value FROM json_each(?1))"),
        params![seqs_json(seqs)],
    )
}

/// Inserts queue rows, `[seq, tenant, task, priority]` each, in this order.
pub(super) fn enqueue(conn: &Connection, rows: Vec<Value>) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    exec(
        conn,
        "INSERT INTO queue (run_seq, tenant, task, priority, ckey) \
         SELECT value->>0, value->>1, value->>2, value->>3, \
           (SELECT concurrency_key FROM runs WHERE seq = value->>0) FROM json_each(?1)",
        params![Value::Array(rows).to_string()],
    )?;
    turns::give_turns(conn)
}

/// Applies life-cycle changes: the runs' rows, the narrow tables they leave and enter (`leases`
/// when leaving `running`, `queue` and `timers` when leaving or entering `queued` and
/// `scheduled`), and their events, a few statements per batch whatever its size.
pub(super) fn apply(conn: &Connection, changes: &[Planned], now: DateTime<Utc>) -> Result<()> {
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
        exec(
            conn,
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
            params![Value::Array(rows).to_string(), micros(now)],
        )?;
        delete_from(conn, "leases", &moves.left_leases)?;
        turns::unqueue(conn, &moves.left_queue)?;
        delete_from(conn, "timers", &moves.left_timers)?;
        enqueue(conn, queue)?;
        if !timers.is_empty() {
            exec(
                conn,
                "INSERT OR REPLACE INTO timers (run_seq, due_at) \
                 SELECT value->>0, value->>1 FROM json_each(?1)",
                params![Value::Array(timers).to_string()],
            )?;
        }
    }
    exec(
        conn,
        "INSERT INTO events (run_seq, at, from_status, to_status, attempt, worker, reason) \
         SELECT value->>0, ?2, value->>1, value->>2, value->>3, value->>4, value->>5 FROM json_each(?1)",
        params![Value::Array(events).to_string(), micros(now)],
    )?;
    Ok(())
}
