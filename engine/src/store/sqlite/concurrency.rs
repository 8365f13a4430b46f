//! Claims of tasks with a concurrency limit: key by key, round-robin from the key after the one
//! served last, at most the limit running per key (see `migrations/sqlite/0007_concurrency.sql`).

use super::queue::claim_picked;
use super::*;
use crate::store::concurrency::Rooms;

/// Claims up to `n` runs of the worker's limited tasks inside the caller's transaction.
pub(super) fn claim_limited(
    conn: &Connection,
    worker: &WorkerRecord,
    n: u32,
    now: DateTime<Utc>,
    lease: Duration,
    request: Option<&str>,
) -> Result<Vec<Assignment>> {
    let mut picked = Vec::new();
    for (task, max) in &worker.limits {
        let left = n as usize - picked.len();
        if left == 0 {
            break;
        }
        let running = all(
            conn,
            // `CROSS JOIN`: the few leases drive the loop, never the task's runs.
            "SELECT r.concurrency_key, count(*) FROM leases l CROSS JOIN runs r ON r.seq = l.run_seq \
             WHERE r.tenant = ?1 AND r.task = ?2 AND r.concurrency_key IS NOT NULL GROUP BY 1",
            params![worker.tenant, task],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
        )?;
        let cursor: Option<String> = one(
            conn,
            "SELECT ckey FROM concurrency_cursors WHERE tenant = ?1 AND task = ?2",
            params![worker.tenant, task],
            |r| r.get(0),
        )?;
        let mut rooms = Rooms::new(*max, running, left);
        let mut last = None;
        // Keys after the cursor, then (wrapped) from the first one up to the cursor.
        let mut key = next_key(conn, &worker.tenant, task, cursor.as_deref())?;
        let mut wrapped = cursor.is_none();
        if key.is_none() && !wrapped {
            wrapped = true;
            key = next_key(conn, &worker.tenant, task, None)?;
        }
        while let Some(k) = key {
            if wrapped && cursor.as_deref().is_some_and(|c| k.as_str() > c) {
                break;
            }
            if let Some(room) = rooms.room(&k) {
                let rows: Vec<(i64, i64)> = all(
                    conn,
                    "SELECT qid, run_seq FROM queue WHERE tenant = ?1 AND task = ?2 AND ckey = ?3 \
                     ORDER BY priority DESC, qid LIMIT ?4",
                    params![worker.tenant, task, k, room as i64],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                rooms.took(rows.len());
                picked.extend(rows);
                last = Some(k.clone());
                if rooms.full() {
                    break;
                }
            }
            key = next_key(conn, &worker.tenant, task, Some(&k))?;
            if key.is_none() && !wrapped {
                wrapped = true;
                key = next_key(conn, &worker.tenant, task, None)?;
            }
        }
        if let Some(k) = last {
            exec(
                conn,
                "INSERT INTO concurrency_cursors (tenant, task, ckey) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (tenant, task) DO UPDATE SET ckey = excluded.ckey",
                params![worker.tenant, task, k],
            )?;
        }
    }
    claim_picked(conn, worker, picked, now, lease, request)
}

/// The first key of `task` with queued runs after `after` (the first of all without it).
fn next_key(
    conn: &Connection,
    tenant: &str,
    task: &str,
    after: Option<&str>,
) -> Result<Option<String>> {
    match after {
        Some(a) => one(
            conn,
            "SELECT ckey FROM queue WHERE tenant = ?1 AND task = ?2 AND ckey > ?3 \
             ORDER BY ckey LIMIT 1",
            params![tenant, task, a],
            |r| r.get(0),
        ),
        None => one(
            conn,
            "SELECT ckey FROM queue WHERE tenant = ?1 AND task = ?2 AND ckey IS NOT NULL \
             ORDER BY ckey LIMIT 1",
            params![tenant, task],
            |r| r.get(0),
        ),
    }
}
