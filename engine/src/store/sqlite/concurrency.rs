//! Claims of limited tasks: round-robin from the key after the one served last, one run of each
//! key in turn, as long as its limit leaves it room: runs leased under a concurrency limit (see
//! `migrations/sqlite/0007_concurrency.sql`), units in its bucket under a rate limit
//! (`0008_rate_limits.sql`).

use super::queue::claim_picked;
use super::ratelimits::{bucket, rate_limit};
use super::*;
use crate::store::limits::{later_turns, note_units_due, Rooms};
use crate::store::Limit;
use owlclaw_core::ratelimit::RateLimitUse;

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
    for (task, limit) in &worker.limits {
        let left = n as usize - picked.len();
        if left == 0 {
            break;
        }
        let Some(mut rooms) = rooms(conn, worker, task, limit, now, left)? else {
            continue;
        };
        let cursor: Option<String> = one(
            conn,
            "SELECT ckey FROM concurrency_cursors WHERE tenant = ?1 AND task = ?2",
            params![worker.tenant, task],
            |r| r.get(0),
        )?;
        // The first turn: one run of each key with room, the keys after the cursor in order,
        // then (wrapped) from the first one up to the cursor; each probe finds the next key
        // and its first run.
        let (mut served, mut last) = (Vec::new(), None);
        let mut at = next_key(conn, &worker.tenant, task, cursor.as_deref())?;
        let mut wrapped = cursor.is_none();
        if at.is_none() && !wrapped {
            wrapped = true;
            at = next_key(conn, &worker.tenant, task, None)?;
        }
        while let Some((k, run)) = at {
            if wrapped && cursor.as_deref().is_some_and(|c| k.as_str() > c) {
                break;
            }
            if let (Some(rate), Some(b)) = (&limit.rate, rooms.bucket(&k)) {
                if let Some((tokens, at_us)) = bucket(conn, &worker.tenant, &rate.name, b)? {
                    rooms.load(b.to_string(), tokens, at_us);
                }
            }
            if rooms.room(&k).is_some() {
                rooms.took(&k, 1);
                picked.push(run);
                last = Some(k.clone());
                served.push(k.clone());
                if rooms.full() {
                    break;
                }
            }
            at = next_key(conn, &worker.tenant, task, Some(&k))?;
            if at.is_none() && !wrapped {
                wrapped = true;
                at = next_key(conn, &worker.tenant, task, None)?;
            }
        }
        if !rooms.full() {
            // Fewer keys with room than the claim wants: the later turns, from each key's next
            // runs up to its room.
            let mut more = Vec::new();
            for k in served {
                if let Some(room) = rooms.room(&k) {
                    let runs = all(
                        conn,
                        "SELECT qid, run_seq FROM queue WHERE tenant = ?1 AND task = ?2 \
                         AND ckey = ?3 ORDER BY priority DESC, qid LIMIT ?4 OFFSET 1",
                        params![worker.tenant, task, k, room as i64],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )?;
                    more.push((k, runs));
                }
            }
            let (runs, later) = later_turns(&mut rooms, more);
            picked.extend(runs);
            last = later.or(last);
        }
        if let Some(k) = last {
            exec(
                conn,
                "INSERT INTO concurrency_cursors (tenant, task, ckey) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (tenant, task) DO UPDATE SET ckey = excluded.ckey",
                params![worker.tenant, task, k],
            )?;
        }
        if let Some(RateLimitUse { name, .. }) = &limit.rate {
            for (k, tokens) in rooms.spent() {
                exec(
                    conn,
                    "INSERT INTO rate_buckets (tenant, name, rkey, tokens, at_us) \
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (tenant, name, rkey) \
                     DO UPDATE SET tokens = excluded.tokens, at_us = excluded.at_us",
                    params![worker.tenant, name, k, tokens, micros(now)],
                )?;
            }
            note_units_due(worker, rooms.due_us());
        }
    }
    claim_picked(conn, worker, picked, now, lease, request)
}

/// The room of a claim of up to `left` runs of `task` under `limit`; `None` for a rate limit not
/// defined (yet): its runs wait.
fn rooms(
    conn: &Connection,
    worker: &WorkerRecord,
    task: &str,
    limit: &Limit,
    now: DateTime<Utc>,
    left: usize,
) -> Result<Option<Rooms>> {
    let mut rooms = Rooms::new(left);
    if let Some(max) = limit.concurrency {
        let running = all(
            conn,
            "SELECT ckey, count(*) FROM leases WHERE tenant = ?1 AND task = ?2 \
             AND ckey IS NOT NULL GROUP BY 1",
            params![worker.tenant, task],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
        )?;
        rooms = rooms.running(max, running);
    }
    if let Some(r) = &limit.rate {
        let Some(l) = rate_limit(conn, &worker.tenant, &r.name)? else {
            return Ok(None);
        };
        rooms = rooms.rate(l, r, micros(now));
    }
    Ok(Some(rooms))
}

/// The first key of `task` with queued runs after `after` (the first of all without it), with
/// its first queued run (`qid`, `run_seq`): one seek in `queue_by_key`.
fn next_key(
    conn: &Connection,
    tenant: &str,
    task: &str,
    after: Option<&str>,
) -> Result<Option<(String, (i64, i64))>> {
    let row = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, (r.get(1)?, r.get(2)?)));
    match after {
        Some(a) => one(
            conn,
            "SELECT ckey, qid, run_seq FROM queue WHERE tenant = ?1 AND task = ?2 AND ckey > ?3 \
             ORDER BY ckey, priority DESC, qid LIMIT 1",
            params![tenant, task, a],
            row,
        ),
        None => one(
            conn,
            "SELECT ckey, qid, run_seq FROM queue WHERE tenant = ?1 AND task = ?2 \
             AND ckey IS NOT NULL ORDER BY ckey, priority DESC, qid LIMIT 1",
            params![tenant, task],
            row,
        ),
    }
}
