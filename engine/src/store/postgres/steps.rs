//! Durable steps: checkpoints and their reads.

use super::*;
use crate::store::rows::RecordedStep;

impl PostgresStore {
    pub(super) async fn checkpoint_tx(
        &self,
        worker: &WorkerRecord,
        checkpoints: &[StepCheckpoint],
        now: DateTime<Utc>,
    ) -> R<Vec<Result<()>>> {
        let mut tx = self.pool.begin().await?;
        let mut runs: HashMap<RunId, Option<Locked>> = HashMap::new();
        let mut out = Vec::with_capacity(checkpoints.len());
        for cp in checkpoints {
            let st = match runs.entry(cp.run_id) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(lock_run(&mut tx, &worker.tenant, cp.run_id).await?)
                }
            };
            out.push(match st {
                None => Err(Error::run_not_found(cp.run_id)),
                Some(st) => checkpoint(&mut tx, worker, st, cp, now).await?,
            });
        }
        tx.commit().await?;
        Ok(out)
    }

    pub(super) async fn steps_tx(&self, tenant: &str, id: RunId) -> R<Vec<StepSnapshot>> {
        let rows: Vec<StepRow> = sqlx::query_as(&format!(
            "SELECT {STEP_COLS} FROM steps s JOIN runs r ON r.seq = s.run_seq \
             WHERE r.id = $1 AND r.tenant = $2 ORDER BY s.position"
        ))
        .bind(id.to_string())
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(StepSnapshot::from).collect())
    }
}

#[async_trait]
impl Steps for PostgresStore {
    async fn checkpoint_steps(
        &self,
        worker: &WorkerRecord,
        checkpoints: &[StepCheckpoint],
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<()>>> {
        self.retry(|| self.checkpoint_tx(worker, checkpoints, now))
            .await
    }

    async fn run_steps(&self, tenant: &str, id: RunId) -> Result<Vec<StepSnapshot>> {
        self.retry(|| self.steps_tx(tenant, id)).await
    }
}

/// One checkpoint of a locked run: the step's row and its event, in one statement (nothing when
/// the checkpoint repeats what is recorded); the inner error is a refusal.
async fn checkpoint(
    conn: &mut PgConnection,
    worker: &WorkerRecord,
    st: &mut Locked,
    cp: &StepCheckpoint,
    now: DateTime<Utc>,
) -> R<Result<()>> {
    let recorded: Option<RecordedStep> =
        sqlx::query_as("SELECT status, attempt FROM steps WHERE run_seq = $1 AND position = $2")
            .bind(st.seq)
            .bind(i64::from(cp.position))
            .fetch_optional(&mut *conn)
            .await?;
    let happened = Happening::Checkpoint {
        worker_id: &worker.id,
        worker: &worker.name,
        step: cp,
        recorded: recorded.as_ref().map(RecordedStep::pair),
    };
    let planned = match st.plan(happened, now) {
        Ok(Some(planned)) => planned,
        // A resend of what is recorded (its first answer was lost): nothing to write.
        Ok(None) => return Ok(Ok(())),
        Err(refused) => return Ok(Err(refused)),
    };
    let event = &planned.change.event;
    let (status, finished) = match cp.status {
        StepStatus::Running => ("running", None),
        StepStatus::Succeeded => ("succeeded", Some(micros(now))),
        StepStatus::Failed => ("failed", Some(micros(now))),
    };
    sqlx::query(
        "WITH s AS (INSERT INTO steps (run_seq, position, name, status, output, error, attempt, \
           started_at, finished_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
           ON CONFLICT (run_seq, position) DO UPDATE SET name = excluded.name, \
           status = excluded.status, output = excluded.output, error = excluded.error, \
           attempt = excluded.attempt, finished_at = excluded.finished_at, \
           started_at = CASE WHEN excluded.status = 'running' THEN excluded.started_at \
             ELSE steps.started_at END) \
         INSERT INTO events (run_seq, at, from_status, to_status, attempt, worker, reason) \
         VALUES ($1, $8, 'running', 'running', $7, $10, $11)",
    )
    .bind(st.seq)
    .bind(i64::from(cp.position))
    .bind(clean(&cp.name))
    .bind(status)
    .bind(cp.output.as_ref().map(|o| o.to_string()))
    .bind(cp.error.as_deref().map(clean))
    .bind(i64::from(event.attempt))
    .bind(micros(now))
    .bind(finished)
    .bind(event.worker.as_deref().map(clean))
    .bind(clean(&event.reason))
    .execute(&mut *conn)
    .await?;
    Ok(Ok(()))
}
