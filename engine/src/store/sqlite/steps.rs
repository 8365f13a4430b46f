//! Durable steps: checkpoints and their reads.

use super::*;
use crate::store::rows::RecordedStep;

#[async_trait]
impl Steps for SqliteStore {
    async fn checkpoint_steps(
        &self,
        worker: &WorkerRecord,
        checkpoints: &[StepCheckpoint],
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<()>>> {
        let worker = worker.clone();
        let checkpoints = checkpoints.to_vec();
        self.write(move |c| {
            let mut runs: HashMap<RunId, Option<Locked>> = HashMap::new();
            let mut out = Vec::with_capacity(checkpoints.len());
            let mut events = Vec::new();
            for cp in &checkpoints {
                let st = match runs.entry(cp.run_id) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(state_by_id(c, &worker.tenant, cp.run_id)?)
                    }
                };
                let Some(st) = st else {
                    out.push(Err(Error::run_not_found(cp.run_id)));
                    continue;
                };
                match checkpoint(c, &worker, st, cp, now)? {
                    Ok(planned) => {
                        events.extend(planned);
                        out.push(Ok(()));
                    }
                    Err(refused) => out.push(Err(refused)),
                }
            }
            apply(c, &events, now)?;
            Ok(out)
        })
        .await
    }

    async fn run_steps(&self, tenant: &str, id: RunId) -> Result<Vec<StepSnapshot>> {
        let tenant = tenant.to_string();
        self.read(move |c| {
            let rows = all(
                c,
                &format!(
                    "SELECT {STEP_COLS} FROM steps s JOIN runs r ON r.seq = s.run_seq \
                     WHERE r.id = ?1 AND r.tenant = ?2 ORDER BY s.position"
                ),
                params![id.to_string(), tenant],
                StepRow::from_sqlite,
            )?;
            Ok(rows.into_iter().map(StepSnapshot::from).collect())
        })
        .await
    }
}

/// One checkpoint of a run read in the transaction: the step's row written (unless the
/// checkpoint repeats it), and the change to apply (its event); the inner error is a refusal.
fn checkpoint(
    conn: &Connection,
    worker: &WorkerRecord,
    st: &mut Locked,
    cp: &StepCheckpoint,
    now: DateTime<Utc>,
) -> Result<Result<Option<Planned>>> {
    let recorded = one(
        conn,
        "SELECT status, attempt FROM steps WHERE run_seq = ?1 AND position = ?2",
        params![st.seq, i64::from(cp.position)],
        RecordedStep::from_sqlite,
    )?;
    let happened = Happening::Checkpoint {
        worker_id: &worker.id,
        worker: &worker.name,
        step: cp,
        recorded: recorded.as_ref().map(RecordedStep::pair),
    };
    let planned = match st.plan(happened, now) {
        Ok(Some(planned)) => planned,
        // A resend of what is recorded (its first answer was lost): nothing to write.
        Ok(None) => return Ok(Ok(None)),
        Err(refused) => return Ok(Err(refused)),
    };
    let (status, finished) = match cp.status {
        StepStatus::Running => ("running", None),
        StepStatus::Succeeded => ("succeeded", Some(micros(now))),
        StepStatus::Failed => ("failed", Some(micros(now))),
    };
    exec(
        conn,
        "INSERT INTO steps (run_seq, position, name, status, output, error, attempt, started_at, finished_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT(run_seq, position) DO UPDATE SET \
         name = excluded.name, status = excluded.status, output = excluded.output, error = excluded.error, \
         attempt = excluded.attempt, finished_at = excluded.finished_at, \
         started_at = CASE WHEN excluded.status = 'running' THEN excluded.started_at ELSE steps.started_at END",
        params![
            st.seq,
            i64::from(cp.position),
            cp.name,
            status,
            cp.output.as_ref().map(|o| o.to_string()),
            cp.error,
            i64::from(cp.attempt),
            micros(now),
            finished
        ],
    )?;
    Ok(Ok(Some(planned)))
}
