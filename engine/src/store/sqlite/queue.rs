//! The queue and its claims: claim, complete, heartbeats, maintenance (timers coming due, expired leases).

use super::*;
use crate::store::rows::{AssignmentRow, ASSIGNMENT_COLS};
use crate::store::rows::{QueueDepthRow, QUEUE_DEPTH_SQL};
use crate::store::{ClaimRequest, Exchanged, QueueDepth};
use owlclaw_core::lifecycle;

/// Claims up to `n` queued runs of the worker's tasks inside the caller's transaction.
pub(super) async fn claim_tx(
    conn: &mut SqliteConnection,
    worker: &WorkerRecord,
    tasks: &str,
    n: u32,
    now: DateTime<Utc>,
    lease: Duration,
    request: Option<ClaimRequest<'_>>,
) -> Result<Vec<Assignment>> {
    let mut out = match request {
        Some(r) if r.resent => reclaim_tx(conn, worker, r.id, n, now, lease).await?,
        _ => Vec::new(),
    };
    let n = n.saturating_sub(out.len() as u32);
    if n == 0 {
        return Ok(out);
    }
    out.extend(claim_new(conn, worker, tasks, n, now, lease, request.map(|r| r.id)).await?);
    Ok(out)
}

/// The runs still leased to `worker` for its exchange request `request` (a retry of a request
/// whose answer was lost), their leases renewed: at most `n`; the others are handed back.
async fn reclaim_tx(
    conn: &mut SqliteConnection,
    worker: &WorkerRecord,
    request: &str,
    n: u32,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<Vec<Assignment>> {
    let mut rows: Vec<AssignmentRow> = sqlx::query_as(&format!(
        "SELECT {ASSIGNMENT_COLS} FROM runs r \
         WHERE r.seq IN (SELECT run_seq FROM leases WHERE worker_id = ?1 AND claim_id = ?2) \
         AND r.status = 'running' AND r.worker_id = ?1 ORDER BY r.priority DESC, r.seq"
    ))
    .bind(&worker.id)
    .bind(request)
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let extra = rows.split_off(rows.len().min(n as usize));
    let kept: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    sqlx::query(
        "UPDATE leases SET expires_at = MIN(?1, deadline) \
         WHERE run_seq IN (SELECT value FROM json_each(?2))",
    )
    .bind(micros(now) + lease.as_micros() as i64)
    .bind(seqs_json(&kept))
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    let mut changes = Vec::with_capacity(extra.len());
    for seq in extra.iter().map(|r| r.seq) {
        if let Some(mut st) = state_by_seq(&mut *conn, seq).await? {
            changes.extend(st.plan(Happening::AnswerLost, now)?);
        }
    }
    apply(&mut *conn, &changes, now).await?;
    rows.into_iter().map(AssignmentRow::assignment).collect()
}

/// Claims up to `n` queued runs.
async fn claim_new(
    conn: &mut SqliteConnection,
    worker: &WorkerRecord,
    tasks: &str,
    n: u32,
    now: DateTime<Utc>,
    lease: Duration,
    request: Option<&str>,
) -> Result<Vec<Assignment>> {
    let seqs: Vec<i64> = sqlx::query_scalar(
        "DELETE FROM queue WHERE qid IN (SELECT qid FROM queue WHERE tenant = ?1 AND task IN \
         (SELECT value FROM json_each(?2)) ORDER BY priority DESC, qid LIMIT ?3) RETURNING run_seq",
    )
    .bind(&worker.tenant)
    .bind(tasks)
    .bind(i64::from(n))
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    if seqs.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "UPDATE runs SET status = 'running', attempt = attempt + 1, started_at = MAX(?1, run_at), worker = ?2, worker_id = ?3 \
         WHERE seq IN (SELECT value FROM json_each(?4)) AND status = 'queued' \
         RETURNING seq, id, task, input, attempt, max_attempts, timeout_ms, parent_id, priority, run_at",
    )
    .bind(micros(now))
    .bind(&worker.name)
    .bind(&worker.id)
    .bind(seqs_json(&seqs))
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    let lease_us = lease.as_micros() as i64;
    let now_us = micros(now);
    let mut leases = Vec::with_capacity(rows.len());
    let mut events = Vec::with_capacity(rows.len());
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let seq: i64 = row.try_get("seq").map_err(db)?;
        let attempt = row.try_get::<i64, _>("attempt").map_err(db)?;
        let timeout_ms = row.try_get::<i64, _>("timeout_ms").map_err(db)?;
        // The engine's own deadline: the task's timeout plus one lease for the worker to report.
        let deadline = now_us + timeout_ms * 1000 + lease_us;
        leases.push(json!([seq, (now_us + lease_us).min(deadline), deadline]));
        events.push(json!([seq, attempt]));
        let input: String = row.try_get("input").map_err(db)?;
        let id: String = row.try_get("id").map_err(db)?;
        out.push((
            row.try_get::<i64, _>("priority").map_err(db)?,
            seq,
            Assignment {
                run_id: id.parse()?,
                task: row.try_get("task").map_err(db)?,
                input: serde_json::from_str(&input).unwrap_or(Value::Null),
                attempt: attempt as u32,
                max_attempts: row.try_get::<i64, _>("max_attempts").map_err(db)? as u32,
                timeout_ms: timeout_ms as u64,
                parent_id: row
                    .try_get::<Option<String>, _>("parent_id")
                    .map_err(db)?
                    .and_then(|p| p.parse().ok()),
                due_at: Some(from_micros(row.try_get("run_at").map_err(db)?)),
            },
        ));
    }
    sqlx::query(
        "INSERT OR REPLACE INTO leases (run_seq, worker_id, expires_at, deadline, claim_id) \
         SELECT value->>0, ?2, value->>1, value->>2, ?3 FROM json_each(?1)",
    )
    .bind(Value::Array(leases).to_string())
    .bind(&worker.id)
    .bind(request)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    sqlx::query(
        "INSERT INTO events (run_seq, at, from_status, to_status, attempt, worker, reason) \
         SELECT value->>0, ?2, 'queued', 'running', value->>1, ?3, ?4 FROM json_each(?1)",
    )
    .bind(Value::Array(events).to_string())
    .bind(now_us)
    .bind(&worker.name)
    .bind(lifecycle::reason::CLAIMED)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    out.sort_by_key(|(p, seq, _)| (-p, *seq));
    Ok(out.into_iter().map(|(_, _, a)| a).collect())
}

/// Applies finished attempts inside the caller's transaction; see [`Store::complete`].
pub(super) async fn complete_tx(
    conn: &mut SqliteConnection,
    worker: &WorkerRecord,
    completions: &[Completion],
    now: DateTime<Utc>,
) -> Result<usize> {
    let mut changed = 0;
    let ok: Vec<Value> = completions
        .iter()
        .filter_map(|c| match &c.outcome {
            Outcome::Succeeded { output } => {
                Some(json!({"id": c.run_id.to_string(), "a": c.attempt, "o": output}))
            }
            _ => None,
        })
        .collect();
    if !ok.is_empty() {
        let done: Vec<(i64, i64)> = sqlx::query_as(
            "UPDATE runs SET status = 'succeeded', output = c.o, error = NULL, finished_at = ?1 \
             FROM (SELECT value->>'id' AS id, value->>'a' AS a, value->'o' AS o FROM json_each(?2)) AS c \
             WHERE runs.id = c.id AND runs.status = 'running' AND runs.attempt = c.a AND runs.worker_id = ?3 \
             RETURNING runs.seq, runs.attempt",
        )
        .bind(micros(now))
        .bind(Value::Array(ok).to_string())
        .bind(&worker.id)
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
        if !done.is_empty() {
            changed += done.len();
            let seqs: Vec<i64> = done.iter().map(|d| d.0).collect();
            sqlx::query("DELETE FROM leases WHERE run_seq IN (SELECT value FROM json_each(?))")
                .bind(seqs_json(&seqs))
                .execute(&mut *conn)
                .await
                .map_err(db)?;
            let events: Vec<Value> = done.iter().map(|(s, a)| json!([s, a])).collect();
            sqlx::query(
                "INSERT INTO events (run_seq, at, from_status, to_status, attempt, worker, reason) \
                 SELECT value->>0, ?2, 'running', 'succeeded', value->>1, ?3, ?4 FROM json_each(?1)",
            )
            .bind(Value::Array(events).to_string())
            .bind(micros(now))
            .bind(&worker.name)
            .bind(lifecycle::reason::SUCCEEDED)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        }
    }
    let mut states: HashMap<RunId, Locked> = HashMap::new();
    let mut changes = Vec::new();
    for c in completions {
        if matches!(c.outcome, Outcome::Succeeded { .. }) {
            continue;
        }
        let st = match states.entry(c.run_id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                match state_by_id(&mut *conn, &worker.tenant, c.run_id).await? {
                    Some(st) => e.insert(st),
                    None => continue,
                }
            }
        };
        let happened = Happening::Reported {
            worker_id: &worker.id,
            attempt: c.attempt,
            outcome: &c.outcome,
        };
        // `None`: stale (cancelled, re-queued after a lost lease, or another attempt).
        changes.extend(st.plan(happened, now)?);
    }
    apply(&mut *conn, &changes, now).await?;
    changed += changes.len();
    Ok(changed)
}

#[async_trait]
impl Queue for SqliteStore {
    async fn claim(
        &self,
        worker: &WorkerRecord,
        n: u32,
        now: DateTime<Utc>,
        lease: Duration,
        request: Option<ClaimRequest<'_>>,
    ) -> Result<Vec<Assignment>> {
        let resent = request.filter(|r| r.resent).map(|r| r.id);
        if worker.tasks.is_empty() || (n == 0 && resent.is_none()) {
            return Ok(Vec::new());
        }
        let tasks = ids_json(&worker.tasks);
        // Cheap read first, so an idle poll does not take the write lock.
        let any: Option<i64> = sqlx::query_scalar(
            "SELECT 1 WHERE EXISTS (SELECT 1 FROM queue WHERE tenant = ?1 \
               AND task IN (SELECT value FROM json_each(?2))) \
             OR EXISTS (SELECT 1 FROM leases WHERE ?3 IS NOT NULL AND worker_id = ?4 AND claim_id = ?3)",
        )
        .bind(&worker.tenant)
        .bind(&tasks)
        .bind(resent)
        .bind(&worker.id)
        .fetch_optional(&self.read)
        .await
        .map_err(db)?;
        if any.is_none() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let out = claim_tx(&mut tx, worker, &tasks, n, now, lease, request).await?;
        tx.commit().await.map_err(db)?;
        Ok(out)
    }

    async fn complete(
        &self,
        worker: &WorkerRecord,
        completions: &[Completion],
        now: DateTime<Utc>,
    ) -> Result<usize> {
        if completions.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin().await?;
        let changed = complete_tx(&mut tx, worker, completions, now).await?;
        tx.commit().await.map_err(db)?;
        Ok(changed)
    }

    async fn complete_and_claim(
        &self,
        worker: &WorkerRecord,
        completions: &[Completion],
        n: u32,
        now: DateTime<Utc>,
        lease: Duration,
        request: Option<ClaimRequest<'_>>,
    ) -> Result<Exchanged> {
        let mut tx = self.begin().await?;
        let changed = complete_tx(&mut tx, worker, completions, now).await?;
        let claimed = if (n > 0 || request.is_some_and(|r| r.resent)) && !worker.tasks.is_empty() {
            claim_tx(
                &mut tx,
                worker,
                &ids_json(&worker.tasks),
                n,
                now,
                lease,
                request,
            )
            .await?
        } else {
            Vec::new()
        };
        tx.commit().await.map_err(db)?;
        Ok(Exchanged { changed, claimed })
    }

    async fn heartbeat(
        &self,
        worker: &WorkerRecord,
        held: &[RunId],
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Vec<RunId>> {
        let mut tx = self.begin().await?;
        let expires = micros(now) + lease.as_micros() as i64;
        // Only the runs the worker says it holds: a claim whose answer never reached it (a lost
        // response) must expire, not be renewed forever.
        sqlx::query(
            "UPDATE leases SET expires_at = MIN(?1, deadline) WHERE worker_id = ?2 \
             AND run_seq IN (SELECT r.seq FROM runs r JOIN json_each(?3) h ON r.id = h.value)",
        )
        .bind(expires)
        .bind(&worker.id)
        .bind(ids_json(held))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query("UPDATE workers SET last_heartbeat = ? WHERE id = ?")
            .bind(micros(now))
            .bind(&worker.id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let lost: Vec<String> = sqlx::query_scalar(
            "SELECT h.value FROM json_each(?1) AS h WHERE NOT EXISTS (SELECT 1 FROM runs r JOIN leases l \
             ON l.run_seq = r.seq WHERE r.id = h.value AND l.worker_id = ?2)",
        )
        .bind(ids_json(held))
        .bind(&worker.id)
        .fetch_all(&self.write)
        .await
        .map_err(db)?;
        lost.iter().map(|s| s.parse()).collect()
    }

    async fn maintain(&self, now: DateTime<Utc>, limit: u32) -> Result<Maintenance> {
        let now_us = micros(now);
        let (next_due, next_expiry): (Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT (SELECT MIN(due_at) FROM timers), (SELECT MIN(expires_at) FROM leases)",
        )
        .fetch_one(&self.read)
        .await
        .map_err(db)?;
        let mut m = Maintenance {
            next_due: next_due.map(from_micros),
            ..Maintenance::default()
        };
        let due = next_due.is_some_and(|t| t <= now_us);
        let expired = next_expiry.is_some_and(|t| t <= now_us);
        if !due && !expired {
            return Ok(m);
        }
        let mut tx = self.begin().await?;
        if due {
            let mut due_rows: Vec<(i64, i64)> = sqlx::query_as(
                "DELETE FROM timers WHERE run_seq IN (SELECT run_seq FROM timers WHERE due_at <= ?1 \
                 ORDER BY due_at LIMIT ?2) RETURNING run_seq, due_at",
            )
            .bind(now_us)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
            // RETURNING gives no order: sort by due time (then seq) for FIFO by due time.
            due_rows.sort_by_key(|&(seq, due)| (due, seq));
            let seqs: Vec<i64> = due_rows.iter().map(|&(seq, _)| seq).collect();
            let mut rows: Vec<(i64, String, String, i64, i64)> = sqlx::query_as(
                "UPDATE runs SET status = 'queued' WHERE seq IN (SELECT value FROM json_each(?1)) \
                 AND status = 'scheduled' RETURNING seq, tenant, task, priority, attempt",
            )
            .bind(seqs_json(&seqs))
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
            if !rows.is_empty() {
                // Ready in due order, so FIFO within a priority follows the due times.
                let order: HashMap<i64, usize> =
                    seqs.iter().enumerate().map(|(i, s)| (*s, i)).collect();
                rows.sort_by_key(|r| order.get(&r.0).copied().unwrap_or(usize::MAX));
                let queue: Vec<Value> = rows.iter().map(|r| json!([r.0, r.1, r.2, r.3])).collect();
                let events: Vec<Value> = rows.iter().map(|r| json!([r.0, r.4])).collect();
                sqlx::query(
                    "INSERT INTO queue (run_seq, tenant, task, priority) \
                     SELECT value->>0, value->>1, value->>2, value->>3 FROM json_each(?)",
                )
                .bind(Value::Array(queue).to_string())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                sqlx::query(
                    "INSERT INTO events (run_seq, at, from_status, to_status, attempt, worker, reason) \
                     SELECT value->>0, ?2, 'scheduled', 'queued', value->>1, NULL, ?3 FROM json_each(?1)",
                )
                .bind(Value::Array(events).to_string())
                .bind(now_us)
                .bind(lifecycle::reason::DUE)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            }
            m.promoted = rows.len();
        }
        if expired {
            let sql = format!(
                "SELECT {}, l.deadline FROM leases l JOIN runs r ON r.seq = l.run_seq \
                 WHERE l.expires_at <= ?1 LIMIT ?2",
                state_cols_of_r()
            );
            let rows: Vec<ExpiredRow> = sqlx::query_as(&sql)
                .bind(now_us)
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
            let mut seqs = Vec::with_capacity(rows.len());
            let mut changes = Vec::with_capacity(rows.len());
            for row in rows {
                let deadline_passed = row.deadline <= now_us;
                let mut st = Locked::try_from(row.state)?;
                seqs.push(st.seq);
                changes.extend(st.plan(Happening::LeaseExpired { deadline_passed }, now)?);
            }
            // Leases of runs no longer running go too.
            sqlx::query("DELETE FROM leases WHERE run_seq IN (SELECT value FROM json_each(?))")
                .bind(seqs_json(&seqs))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            apply(&mut tx, &changes, now).await?;
            m.expired = changes.len();
        }
        let next: Option<i64> = sqlx::query_scalar("SELECT MIN(due_at) FROM timers")
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        m.next_due = next.map(from_micros);
        tx.commit().await.map_err(db)?;
        Ok(m)
    }

    async fn queue_depth(&self) -> Result<Vec<QueueDepth>> {
        let rows: Vec<QueueDepthRow> = sqlx::query_as(QUEUE_DEPTH_SQL)
            .fetch_all(&self.read)
            .await
            .map_err(db)?;
        Ok(rows.into_iter().map(QueueDepth::from).collect())
    }
}
