//! Durable steps: checkpoints and their reads.

use super::*;
use crate::store::rows::RecordedStep;

#[async_trait]
impl Steps for SqliteStore {
    async fn checkpoint_step(
        &self,
        worker: &WorkerRecord,
        cp: &StepCheckpoint,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let st = state_by_id(&mut tx, Some(&worker.tenant), cp.run_id)
            .await?
            .ok_or_else(|| Error::run_not_found(cp.run_id))?;
        let mut st = st;
        let recorded: Option<RecordedStep> =
            sqlx::query_as("SELECT status, attempt FROM steps WHERE run_seq = ? AND position = ?")
                .bind(st.seq)
                .bind(i64::from(cp.position))
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        let happened = Happening::Checkpoint {
            worker_id: &worker.id,
            worker: &worker.name,
            step: cp,
            recorded: recorded.as_ref().map(RecordedStep::pair),
        };
        let Some(planned) = st.plan(happened, now)? else {
            // A resend of what is recorded (its first answer was lost): nothing to write.
            return Ok(());
        };
        let (status, finished) = match cp.status {
            StepStatus::Running => ("running", None),
            StepStatus::Succeeded => ("succeeded", Some(micros(now))),
            StepStatus::Failed => ("failed", Some(micros(now))),
        };
        sqlx::query(
            "INSERT INTO steps (run_seq, position, name, status, output, error, attempt, started_at, finished_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT(run_seq, position) DO UPDATE SET \
             name = excluded.name, status = excluded.status, output = excluded.output, error = excluded.error, \
             attempt = excluded.attempt, finished_at = excluded.finished_at, \
             started_at = CASE WHEN excluded.status = 'running' THEN excluded.started_at ELSE steps.started_at END",
        )
        .bind(st.seq)
        .bind(i64::from(cp.position))
        .bind(&cp.name)
        .bind(status)
        .bind(cp.output.as_ref().map(|o| o.to_string()))
        .bind(&cp.error)
        .bind(i64::from(cp.attempt))
        .bind(micros(now))
        .bind(finished)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        apply(&mut tx, std::slice::from_ref(&planned), now).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn run_steps(&self, tenant: &str, id: RunId) -> Result<Vec<StepSnapshot>> {
        let rows: Vec<StepRow> = sqlx::query_as(&format!(
            "SELECT {STEP_COLS} FROM steps s JOIN runs r ON r.seq = s.run_seq \
             WHERE r.id = ? AND r.tenant = ? ORDER BY s.position"
        ))
        .bind(id.to_string())
        .bind(tenant)
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        Ok(rows.into_iter().map(StepSnapshot::from).collect())
    }
}
