//! Claims of tasks with a concurrency limit: key by key, round-robin from the key after the one
//! served last, at most the limit running per key (see `migrations/postgres/0007_concurrency.sql`).
//! Claims of one limited task are serialized across replicas by a transaction-scoped advisory
//! lock: each counts the runs leased per key and takes the room left, so two never both take the
//! last place of a key.

use super::queue::{report_and_claim, Pick};
use super::*;
use crate::store::concurrency::Rooms;
use crate::store::ClaimRequest;

impl PostgresStore {
    /// Claims up to `n` runs of the worker's limited tasks, in one transaction.
    pub(super) async fn claim_limited_tx(
        &self,
        worker: &WorkerRecord,
        n: u32,
        now: DateTime<Utc>,
        lease: Duration,
        request: Option<&str>,
    ) -> R<Vec<Assignment>> {
        let mut tx = self.pool.begin().await?;
        let mut picked: Vec<i64> = Vec::new();
        let mut tasks: Vec<String> = Vec::new();
        for (task, max) in &worker.limits {
            let left = n as usize - picked.len();
            if left == 0 {
                break;
            }
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(format!(
                    "concurrency/{}/{}",
                    clean(&worker.tenant),
                    clean(task)
                ))
                .execute(&mut *tx)
                .await?;
            let running: Vec<(String, i64)> = sqlx::query_as(
                // The few leases first, then their runs by key: never a scan of the task's runs.
                "SELECT r.concurrency_key, count(*) FROM runs r \
                 WHERE r.seq = ANY(ARRAY(SELECT run_seq FROM leases)) AND r.tenant = $1 \
                 AND r.task = $2 AND r.concurrency_key IS NOT NULL GROUP BY 1",
            )
            .bind(&worker.tenant)
            .bind(task)
            .fetch_all(&mut *tx)
            .await?;
            let cursor: Option<String> = sqlx::query_scalar(
                "SELECT ckey FROM concurrency_cursors WHERE tenant = $1 AND task = $2",
            )
            .bind(&worker.tenant)
            .bind(task)
            .fetch_optional(&mut *tx)
            .await?;
            let mut rooms = Rooms::new(*max, running, left);
            let mut last = None;
            // Keys after the cursor, then (wrapped) from the first one up to the cursor.
            let mut after = cursor.clone();
            let mut wrapped = cursor.is_none();
            while !rooms.full() {
                let keys = next_keys(&mut tx, &worker.tenant, task, after.as_deref(), left).await?;
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
                let mut names = Vec::new();
                let mut room = Vec::new();
                for k in &keys {
                    if let Some(r) = rooms.room(k) {
                        names.push(k.clone());
                        room.push(r as i64);
                        rooms.took(r);
                    }
                }
                // Each key's first queued runs, in key order (as the rooms were counted).
                let rows: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT x.k, q.qid FROM UNNEST($3::text[], $4::bigint[]) WITH ORDINALITY \
                       AS x(k, room, o), \
                     LATERAL (SELECT qid, priority FROM queue WHERE tenant = $1 AND task = $2 \
                       AND ckey = x.k ORDER BY priority DESC, qid LIMIT x.room) q \
                     ORDER BY x.o, q.priority DESC, q.qid",
                )
                .bind(&worker.tenant)
                .bind(task)
                .bind(&names)
                .bind(&room)
                .fetch_all(&mut *tx)
                .await?;
                // A key may hold fewer runs than its room: give the rest back to the claim.
                let taken: usize = room.iter().map(|r| *r as usize).sum();
                rooms.took_back(taken - rows.len());
                if let Some((k, _)) = rows.last() {
                    last = Some(k.clone());
                }
                picked.extend(rows.into_iter().map(|(_, qid)| qid));
                if done {
                    break;
                }
                after = Some(end);
            }
            if let Some(k) = last {
                sqlx::query(
                    "INSERT INTO concurrency_cursors (tenant, task, ckey) VALUES ($1, $2, $3) \
                     ON CONFLICT (tenant, task) DO UPDATE SET ckey = excluded.ckey",
                )
                .bind(&worker.tenant)
                .bind(task)
                .bind(k)
                .execute(&mut *tx)
                .await?;
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
                report_and_claim(&mut tx, worker, pick, &[], n, now, lease, request).await?;
            claimed
        };
        tx.commit().await?;
        Ok(claimed)
    }
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
    let keys: Vec<Option<String>> = sqlx::query_scalar(
        "WITH RECURSIVE keys(k, i) AS ( \
           (SELECT ckey, 1 FROM queue WHERE tenant = $1 AND task = $2 AND ckey IS NOT NULL \
              AND ($3::text IS NULL OR ckey > $3) ORDER BY ckey LIMIT 1) \
           UNION ALL \
           SELECT (SELECT ckey FROM queue WHERE tenant = $1 AND task = $2 AND ckey > keys.k \
              ORDER BY ckey LIMIT 1), i + 1 FROM keys WHERE keys.k IS NOT NULL AND i < $4) \
         SELECT k FROM keys",
    )
    .bind(tenant)
    .bind(task)
    .bind(after)
    .bind(n as i64)
    .fetch_all(conn)
    .await?;
    Ok(keys.into_iter().flatten().collect())
}
