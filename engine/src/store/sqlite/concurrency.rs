//! Claims of limited tasks: the queued runs of each limited task in turns (see
//! `migrations/sqlite/0017_turns.sql`), taken in order when their key has room under its limit:
//! runs leased under a concurrency limit (`0007_concurrency.sql`, `0016_keys_in_leases.sql`),
//! units in its bucket under a rate limit (`0008_rate_limits.sql`).

use super::queue::claim_picked;
use super::ratelimits::{bucket, rate_limit};
use super::turns::{give_turns, left_queue};
use super::*;
use crate::store::limits::{note_units_due, Rooms};
use crate::store::Limit;
use owlclaw_core::ratelimit::RateLimitUse;
use std::collections::HashMap;

/// The queued runs of a limited task in the order claims take them: priority first, then turn
/// (one run of each key per turn), then age; one walk of `queue_by_turn`. The runs of the keys
/// at their limit (`?3`, a JSON array) are passed over in the statement.
const IN_TURNS: &str = "SELECT qid, run_seq, ckey FROM queue WHERE tenant = ?1 AND task = ?2 \
     AND ckey IS NOT NULL AND ckey NOT IN (SELECT value FROM json_each(?3)) \
     ORDER BY priority DESC, turn, qid";

/// Claims up to `n` runs of the worker's limited tasks inside the caller's transaction.
pub(super) fn claim_limited(
    conn: &Connection,
    worker: &WorkerRecord,
    n: u32,
    now: DateTime<Utc>,
    lease: Duration,
    request: Option<&str>,
) -> Result<Vec<Assignment>> {
    // Runs queued without a turn by an application's transaction, or put under a key by a
    // worker's registration (see `0017_turns.sql`).
    give_turns(conn)?;
    let mut picked = Vec::new();
    for (task, limit) in &worker.limits {
        let left = n as usize - picked.len();
        if left == 0 {
            break;
        }
        let Some(mut rooms) = rooms(conn, worker, task, limit, now, left)? else {
            continue;
        };
        // Runs taken per key, and how many the claim can take at most: counted from the keys'
        // queued runs once the walk has passed many runs without room (keys at their limit
        // ahead of the others), so that it stops when no key has any left.
        let (mut taken, mut most) = (HashMap::<String, usize>::new(), None);
        let (mut took, mut passed) = (0, 0);
        let mut walk = conn.prepare_cached(IN_TURNS).db()?;
        let full = serde_json::to_string(&rooms.full_keys()).unwrap_or_default();
        let mut rows = walk.query(params![worker.tenant, task, full]).db()?;
        while let Some(r) = rows.next().db()? {
            let (qid, seq, k): (i64, i64, String) =
                (r.get(0).db()?, r.get(1).db()?, r.get(2).db()?);
            load_bucket(conn, worker, limit, &mut rooms, &k)?;
            if rooms.room(&k).is_some() {
                rooms.took(&k, 1);
                *taken.entry(k).or_default() += 1;
                picked.push((qid, seq));
                took += 1;
                if rooms.full() || most == Some(took) {
                    break;
                }
                continue;
            }
            passed += 1;
            if most.is_none() && passed > left.max(64) {
                let can = takeable(conn, worker, task, limit, &mut rooms, &taken)?;
                if can == 0 {
                    break;
                }
                most = Some(took + can);
            }
        }
        drop(rows);
        let gone = taken.into_iter();
        left_queue(
            conn,
            gone.map(|(k, n)| (worker.tenant.clone(), task.clone(), k, n as i64))
                .collect(),
        )?;
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

/// Loads the bucket a run of `key` spends from, under a rate limit, unless the claim has it.
fn load_bucket(
    conn: &Connection,
    worker: &WorkerRecord,
    limit: &Limit,
    rooms: &mut Rooms,
    key: &str,
) -> Result<()> {
    if let (Some(rate), Some(b)) = (&limit.rate, rooms.bucket(key)) {
        if !rooms.loaded(b) {
            if let Some((tokens, at_us)) = bucket(conn, &worker.tenant, &rate.name, b)? {
                rooms.load(b.to_string(), tokens, at_us);
            }
        }
    }
    Ok(())
}

/// How many more runs of `task` the claim can take: each key's queued runs not taken yet, up to
/// its room.
fn takeable(
    conn: &Connection,
    worker: &WorkerRecord,
    task: &str,
    limit: &Limit,
    rooms: &mut Rooms,
    taken: &HashMap<String, usize>,
) -> Result<usize> {
    let keys = all(
        conn,
        "SELECT ckey, queued FROM concurrency_keys WHERE tenant = ?1 AND task = ?2",
        params![worker.tenant, task],
        |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
    )?;
    let mut can = 0;
    for (k, queued) in keys {
        let left = (queued as usize).saturating_sub(taken.get(&k).copied().unwrap_or(0));
        if left > 0 {
            load_bucket(conn, worker, limit, rooms, &k)?;
            can += rooms.room(&k).map_or(0, |room| room.min(left));
        }
    }
    Ok(can)
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
