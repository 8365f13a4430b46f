//! Claims of limited tasks: priority first, then round-robin among the runs of one priority from
//! the key after the one served last, one run of each key in turn, as long as its limit leaves
//! it room: runs leased under a concurrency limit (see
//! `migrations/postgres/0007_concurrency.sql`), units in its bucket under a rate limit
//! (`0008_rate_limits.sql`). Claims under one limit are serialized across replicas by a
//! transaction-scoped advisory lock (on the task for a concurrency limit, on the rate limit for a
//! rate limit, which tasks may share), taken in one order by every claim: each reads the room
//! left and takes it, so two never both take the last place of a key or the last units.

use super::queue::{report_and_claim, Cursors, Pick};
use super::*;
use crate::store::limits::{later_turns, note_units_due, Rooms};
use crate::store::{micros, ClaimRequest, Limit};
use owlclaw_core::ratelimit::{RateLimit, RateLimitUse};

/// Claims up to `n` runs of the worker's limited tasks inside the caller's transaction.
pub(super) async fn claim_limited(
    tx: &mut PgConnection,
    worker: &WorkerRecord,
    n: u32,
    now: DateTime<Utc>,
    lease: Duration,
    request: Option<&str>,
) -> R<Vec<Assignment>> {
    let mut picked: Vec<i64> = Vec::new();
    let mut tasks: Vec<String> = Vec::new();
    let mut cursors: Cursors = (Vec::new(), Vec::new());
    // Every lock this claim may need, first and in one order (sorted), as every claim and
    // insert takes them: a task under two limits takes two, and claims never wait in a cycle.
    let mut locks: Vec<String> = worker
        .limits
        .iter()
        .flat_map(|(task, limit)| limit.lock_keys(&clean(&worker.tenant), &clean(task)))
        .collect();
    locks.sort();
    locks.dedup();
    sqlx::query(
        // Taken row by row as the sorted subquery streams them.
        "SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0))) \
         FROM (SELECT k FROM UNNEST($1::text[]) WITH ORDINALITY AS l(k, o) ORDER BY o) s",
    )
    .bind(&locks)
    .execute(&mut *tx)
    .await?;
    for (task, limit) in &worker.limits {
        let left = n as usize - picked.len();
        if left == 0 {
            break;
        }
        let Some((mut rooms, cursor)) = rooms(&mut *tx, worker, task, limit, now, left).await?
        else {
            continue;
        };
        // Priority first: the keys take turns among the runs of the highest priority queued,
        // then of the next, while the claim has room.
        let (mut level, mut last) = (None, None);
        while !rooms.full() {
            let Some(p) = next_priority(&mut *tx, &worker.tenant, task, level).await? else {
                break;
            };
            level = Some(p);
            // The first turn: one run of each key with room, the keys after the cursor in order,
            // then (wrapped) from the first one up to the cursor. The keys are those with runs
            // queued at any priority (a filter on the priority here made the planner walk
            // `queue_order` instead); a key without a run of this one gives its turn back.
            let mut served = Vec::new();
            let mut after = cursor.clone();
            let mut wrapped = cursor.is_none();
            while !rooms.full() {
                let keys =
                    next_keys(&mut *tx, &worker.tenant, task, after.as_deref(), left).await?;
                let Some(end) = keys.last().cloned() else {
                    if wrapped {
                        break;
                    }
                    (wrapped, after) = (true, None);
                    continue;
                };
                let keys: Vec<String> = keys
                    .into_iter()
                    .take_while(|k| !wrapped || cursor.as_deref().is_none_or(|c| k.as_str() <= c))
                    .collect();
                let done = keys.last() != Some(&end);
                if let Some(rate) = &limit.rate {
                    let mut wanted: Vec<&str> = keys.iter().map(|k| rate.bucket(k)).collect();
                    wanted.dedup();
                    let buckets: Vec<(String, f64, i64)> = sqlx::query_as(
                        "SELECT rkey, tokens, at_us FROM rate_buckets \
                             WHERE tenant = $1 AND name = $2 AND rkey = ANY($3)",
                    )
                    .bind(&worker.tenant)
                    .bind(&rate.name)
                    .bind(&wanted)
                    .fetch_all(&mut *tx)
                    .await?;
                    for (k, tokens, at_us) in buckets {
                        rooms.load(k, tokens, at_us);
                    }
                }
                // Each key with room and a run of this priority takes its turn, in order, its
                // room counted again as it takes it: keys sharing a bucket see the units the keys
                // before them spent.
                let names: Vec<String> = keys
                    .into_iter()
                    .filter(|k| rooms.room(k).is_some())
                    .collect();
                let turn = vec![1; names.len()];
                let rows = first_runs(&mut *tx, &worker.tenant, task, p, &names, &turn, 0).await?;
                for (k, qid) in rows {
                    if rooms.room(&k).is_some() {
                        rooms.took(&k, 1);
                        picked.push(qid);
                        last = Some(k.clone());
                        served.push(k);
                    }
                }
                if done || rooms.full() {
                    break;
                }
                after = Some(end);
            }
            if !rooms.full() && !served.is_empty() {
                // Fewer keys with room than the claim wants: the later turns, from each key's next
                // runs up to its room.
                let (mut names, mut room) = (Vec::new(), Vec::new());
                for k in served {
                    if let Some(r) = rooms.room(&k) {
                        names.push(k);
                        room.push(r as i64);
                    }
                }
                let rows = first_runs(&mut *tx, &worker.tenant, task, p, &names, &room, 1).await?;
                let more = names
                    .into_iter()
                    .map(|k| {
                        let runs = rows.iter().filter(|(n, _)| *n == k).map(|(_, q)| *q);
                        let runs = runs.collect();
                        (k, runs)
                    })
                    .collect();
                let (runs, later) = later_turns(&mut rooms, more);
                picked.extend(runs);
                last = later.or(last);
            }
        }
        if let Some(k) = last {
            // Kept by the claim's statement.
            cursors.0.push(task.clone());
            cursors.1.push(k);
        }
        if let Some(RateLimitUse { name, .. }) = &limit.rate {
            let (keys, tokens): (Vec<String>, Vec<f64>) = rooms.spent().into_iter().unzip();
            if !keys.is_empty() {
                sqlx::query(
                    "INSERT INTO rate_buckets (tenant, name, rkey, tokens, at_us) \
                         SELECT $1, $2, k, t, $5 FROM UNNEST($3::text[], $4::float8[]) AS x(k, t) \
                         ON CONFLICT (tenant, name, rkey) \
                         DO UPDATE SET tokens = excluded.tokens, at_us = excluded.at_us",
                )
                .bind(&worker.tenant)
                .bind(name)
                .bind(&keys)
                .bind(&tokens)
                .bind(micros(now))
                .execute(&mut *tx)
                .await?;
            }
            note_units_due(worker, rooms.due_us());
        }
        tasks.push(task.clone());
    }
    let claimed = if picked.is_empty() {
        Vec::new()
    } else {
        let pick = Pick::Rows(&tasks, &picked, &cursors);
        let request = request.map(|id| ClaimRequest { id, resent: false });
        let n = picked.len() as u32;
        let (_, claimed, _) =
            report_and_claim(&mut *tx, worker, pick, &[], n, now, lease, request).await?;
        claimed
    };
    Ok(claimed)
}

/// The room of a claim of up to `left` runs of `task` under `limit`, and the key it served last
/// (read in one statement); `None` for a rate limit not defined (yet): its runs wait.
async fn rooms(
    conn: &mut PgConnection,
    worker: &WorkerRecord,
    task: &str,
    limit: &Limit,
    now: DateTime<Utc>,
    left: usize,
) -> R<Option<(Rooms, Option<String>)>> {
    let mut rooms = Rooms::new(left);
    let rows: Vec<(Option<String>, Option<String>, Option<i64>)> = sqlx::query_as(
        // The runs leased under the limit (none counted without a concurrency limit), by key.
        "SELECT c.ckey, r.k, r.n FROM (SELECT (SELECT ckey FROM concurrency_cursors \
           WHERE tenant = $1 AND task = $2) AS ckey) c \
         LEFT JOIN (SELECT ckey AS k, count(*) AS n FROM leases WHERE tenant = $1 \
           AND task = $2 AND ckey IS NOT NULL AND $3 GROUP BY 1) r \
         ON true",
    )
    .bind(&worker.tenant)
    .bind(task)
    .bind(limit.concurrency.is_some())
    .fetch_all(&mut *conn)
    .await?;
    let cursor = rows.first().and_then(|(c, _, _)| c.clone());
    if let Some(max) = limit.concurrency {
        let running = rows.into_iter().filter_map(|(_, k, n)| Some((k?, n?)));
        rooms = rooms.running(max, running.collect());
    }
    if let Some(r) = &limit.rate {
        let Some(l) = rate_limit(conn, &worker.tenant, &r.name).await? else {
            return Ok(None);
        };
        rooms = rooms.rate(l, r, micros(now));
    }
    Ok(Some((rooms, cursor)))
}

/// The queued runs of each key `keys[i]` of `task` at `priority`, oldest first, skipping the
/// first `skip` and taking up to `room[i]`: `(key, qid)` in the keys' order.
async fn first_runs(
    conn: &mut PgConnection,
    tenant: &str,
    task: &str,
    priority: i64,
    keys: &[String],
    room: &[i64],
    skip: i64,
) -> R<Vec<(String, i64)>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_as(
        "SELECT x.k, q.qid FROM UNNEST($3::text[], $4::bigint[]) WITH ORDINALITY AS x(k, room, o), \
           LATERAL (SELECT qid FROM queue WHERE tenant = $1 AND task = $2 \
             AND ckey = x.k AND priority = $6 ORDER BY priority DESC, qid \
             LIMIT x.room OFFSET $5) q \
         ORDER BY x.o, q.qid",
    )
    .bind(tenant)
    .bind(task)
    .bind(keys)
    .bind(room)
    .bind(skip)
    .bind(priority)
    .fetch_all(conn)
    .await?)
}

/// The highest priority of the queued runs of limited task `task` below `below` (of all
/// without it): a seek in `queue_by_task` (reached through its collation, as the one-task claim
/// reaches it; see `0015_queue_by_task.sql`). Without the collation the planner walked every
/// queued run of the task in `queue_by_key`, each claim (200 runs/s instead of 5,000).
async fn next_priority(
    conn: &mut PgConnection,
    tenant: &str,
    task: &str,
    below: Option<i64>,
) -> R<Option<i64>> {
    Ok(sqlx::query_scalar(
        "SELECT priority FROM queue WHERE tenant = $1 AND task COLLATE \"C\" = $2 \
         AND ckey IS NOT NULL AND priority < coalesce($3, 9223372036854775807) \
         ORDER BY priority DESC LIMIT 1",
    )
    .bind(tenant)
    .bind(task)
    .bind(below)
    .fetch_optional(conn)
    .await?)
}

/// The tenant's rate limit `name`, if defined.
pub(super) async fn rate_limit(
    conn: &mut PgConnection,
    tenant: &str,
    name: &str,
) -> R<Option<RateLimit>> {
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT lim, per_ms FROM rate_limits WHERE tenant = $1 AND name = $2")
            .bind(tenant)
            .bind(name)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|(limit, per_ms)| RateLimit {
        name: name.to_string(),
        limit: limit as u32,
        per: Duration::from_millis(per_ms as u64),
    }))
}

/// Up to `n` keys of `task` with queued runs after `after` (from the first without it), in
/// order: a skip scan of the queue's key index, one index probe per key.
async fn next_keys(
    conn: &mut PgConnection,
    tenant: &str,
    task: &str,
    after: Option<&str>,
    n: usize,
) -> R<Vec<String>> {
    // One text per case: a generic plan of `($3 IS NULL OR ckey > $3)` cannot seek to `$3`, and
    // walked every key before it.
    macro_rules! keys_after {
        ($first:literal, $n:literal) => {
            concat!(
                "WITH RECURSIVE keys(k, i) AS ( \
                   (SELECT ckey, 1 FROM queue WHERE tenant = $1 AND task = $2 AND ",
                $first,
                " ORDER BY ckey LIMIT 1) \
                   UNION ALL \
                   SELECT (SELECT ckey FROM queue WHERE tenant = $1 AND task = $2 \
                      AND ckey > keys.k ORDER BY ckey LIMIT 1), i + 1 \
                   FROM keys WHERE keys.k IS NOT NULL AND i < ",
                $n,
                ") SELECT k FROM keys"
            )
        };
    }
    let keys: Vec<Option<String>> = match after {
        Some(a) => {
            sqlx::query_scalar(keys_after!("ckey > $3", "$4"))
                .bind(tenant)
                .bind(task)
                .bind(a)
                .bind(n as i64)
                .fetch_all(conn)
                .await?
        }
        None => {
            sqlx::query_scalar(keys_after!("ckey IS NOT NULL", "$3"))
                .bind(tenant)
                .bind(task)
                .bind(n as i64)
                .fetch_all(conn)
                .await?
        }
    };
    Ok(keys.into_iter().flatten().collect())
}
