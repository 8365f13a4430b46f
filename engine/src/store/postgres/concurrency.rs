//! Claims of limited tasks: the queued runs of each limited task in turns (see
//! `migrations/postgres/0017_turns.sql`), taken in order when their key has room under its
//! limit: runs leased under a concurrency limit (`0007_concurrency.sql`,
//! `0016_keys_in_leases.sql`), units in its bucket under a rate limit (`0008_rate_limits.sql`).
//! Claims under one limit are serialized across replicas by a transaction-scoped advisory lock
//! (on the task for a concurrency limit, on the rate limit for a rate limit, which tasks may
//! share), taken in one order by every claim: each reads the room left and takes it, so two
//! never both take the last place of a key or the last units.

use super::queue::{report_and_claim, Pick};
use super::*;
use crate::store::limits::{note_units_due, Rooms};
use crate::store::{micros, ClaimRequest};
use owlclaw_core::ratelimit::{RateLimit, RateLimitUse};
use std::collections::HashSet;

/// Takes the advisory locks `$1` (in their order), then reads the first `$4` queued runs of
/// limited task `$3` of tenant `$2` in the order claims take them (priority first, then turn,
/// then age), from the head of `queue_by_turn`, passing over the keys at their concurrency limit
/// `$5` (NULL: none); and before them (`qid` NULL) the runs leased under the limit, by key: the
/// claim's locks, its room and its first page in one round trip (`0018_limited_page.sql`).
const IN_TURNS: &str =
    "SELECT qid, ckey, priority, turn, n FROM owlclaw_limited_page($1, $2, $3, $4, $5)";

/// The next `$4` runs in the order of [`IN_TURNS`], after the run at priority `$5`, turn `$6`,
/// qid `$7`, passing over the keys `$3` (those without room): the rest of its priority, then the
/// lower ones, each part a range of `queue_by_turn`.
const IN_TURNS_AFTER: &str = "(SELECT qid, ckey, priority, turn FROM queue
    WHERE tenant = $1 AND task = $2 AND ckey IS NOT NULL AND ckey <> ALL($3)
      AND priority = $5 AND (turn, qid) > ($6, $7)
    ORDER BY turn, qid LIMIT $4)
UNION ALL
(SELECT qid, ckey, priority, turn FROM queue
    WHERE tenant = $1 AND task = $2 AND ckey IS NOT NULL AND ckey <> ALL($3)
      AND priority < $5
    ORDER BY priority DESC, turn, qid LIMIT $4)
LIMIT $4";

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
    // Every lock this claim may need, in one order (sorted), as every claim and insert takes
    // them: a task under two limits takes two, and claims never wait in a cycle. All are taken
    // by the first page's statement, before any room or bucket is read.
    let mut locks: Vec<String> = worker
        .limits
        .iter()
        .flat_map(|(task, limit)| limit.lock_keys(&clean(&worker.tenant), &clean(task)))
        .collect();
    locks.sort();
    locks.dedup();
    for (task, limit) in &worker.limits {
        let left = n as usize - picked.len();
        if left == 0 {
            break;
        }
        // A task whose rate limit is not defined (yet) waits.
        let rate = match &limit.rate {
            Some(r) => match rate_limit(&mut *tx, &worker.tenant, &r.name).await? {
                Some(l) => Some((l, r)),
                None => continue,
            },
            None => None,
        };
        // Read in pages a little longer than the claim: a key found without room is passed over
        // by the pages after it, so each costs at most one row read.
        let page = left + 16;
        type Row = (Option<i64>, String, Option<i64>, Option<i64>, Option<i64>);
        // The locks go with the first task's page, before anything is read.
        let first: Vec<Row> = sqlx::query_as(IN_TURNS)
            .bind(std::mem::take(&mut locks))
            .bind(&worker.tenant)
            .bind(task)
            .bind(page as i64)
            .bind(limit.concurrency.map(i64::from))
            .fetch_all(&mut *tx)
            .await?;
        let (mut running, mut rows) = (Vec::new(), Vec::new());
        for (qid, k, priority, turn, n) in first {
            match (qid, priority, turn, n) {
                (Some(qid), Some(priority), Some(turn), _) => rows.push((qid, k, priority, turn)),
                (None, _, _, Some(n)) => running.push((k, n)),
                _ => {}
            }
        }
        let mut rooms = Rooms::new(left);
        if let Some(max) = limit.concurrency {
            rooms = rooms.running(max, running);
        }
        if let Some((l, r)) = rate {
            rooms = rooms.rate(l, r, micros(now));
        }
        let mut without_room: Vec<String> =
            rooms.full_keys().into_iter().map(str::to_string).collect();
        loop {
            if let Some(rate) = &limit.rate {
                let mut wanted: Vec<&str> = rows
                    .iter()
                    .map(|(_, k, _, _)| rate.bucket(k))
                    .filter(|b| !rooms.loaded(b))
                    .collect();
                wanted.sort_unstable();
                wanted.dedup();
                if !wanted.is_empty() {
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
            }
            let mut passed: HashSet<&str> = HashSet::new();
            for (qid, k, _, _) in &rows {
                if passed.contains(k.as_str()) {
                    continue;
                }
                if rooms.room(k).is_some() {
                    rooms.took(k, 1);
                    picked.push(*qid);
                    if rooms.full() {
                        break;
                    }
                } else {
                    passed.insert(k);
                    without_room.push(k.clone());
                }
            }
            let Some((qid, priority, turn)) = rows.last().map(|(q, _, p, t)| (*q, *p, *t)) else {
                break;
            };
            if rooms.full() || rows.len() < page {
                break;
            }
            rows = sqlx::query_as(IN_TURNS_AFTER)
                .bind(&worker.tenant)
                .bind(task)
                .bind(&without_room)
                .bind(page as i64)
                .bind(priority)
                .bind(turn)
                .bind(qid)
                .fetch_all(&mut *tx)
                .await?;
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
        let pick = Pick::Rows(&tasks, &picked);
        let request = request.map(|id| ClaimRequest { id, resent: false });
        let n = picked.len() as u32;
        let (_, claimed, _) =
            report_and_claim(&mut *tx, worker, pick, &[], n, now, lease, request).await?;
        claimed
    };
    Ok(claimed)
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
