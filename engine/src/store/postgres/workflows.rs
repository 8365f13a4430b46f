//! Workflow runs: the active ones, their task runs, and their own transitions.

use super::*;
use crate::store::{WorkflowStep, Workflows};

#[async_trait]
impl Workflows for PostgresStore {
    async fn active_workflows(&self, limit: u32) -> Result<Vec<(String, RunId)>> {
        let rows: Vec<(String, String)> = self
            .retry(|| async move {
                Ok(sqlx::query_as(
                    "SELECT tenant, id FROM workflow_runs WHERE NOT done ORDER BY run_seq LIMIT $1",
                )
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?)
            })
            .await?;
        rows.into_iter()
            .map(|(t, id)| Ok((t, id.parse()?)))
            .collect()
    }

    async fn children(&self, tenant: &str, id: RunId) -> Result<Vec<RunSnapshot>> {
        let rows: Vec<RunRow> = self
            .retry(|| async move {
                Ok(sqlx::query_as(
                    "SELECT * FROM runs WHERE parent_id = $1 AND tenant = $2 ORDER BY seq",
                )
                .bind(id.to_string())
                .bind(tenant)
                .fetch_all(&self.pool)
                .await?)
            })
            .await?;
        rows.into_iter().map(RunRow::snapshot).collect()
    }

    async fn workflow_step(
        &self,
        tenant: &str,
        id: RunId,
        step: &WorkflowStep,
        now: DateTime<Utc>,
    ) -> Result<RunSnapshot> {
        let output = match step {
            WorkflowStep::Finish { output, .. } => output.as_ref(),
            WorkflowStep::Start => None,
        };
        self.retry(|| self.command_tx(tenant, id, step.happening(), output, now))
            .await
    }

    async fn workflow_done(&self, tenant: &str, id: RunId) -> Result<()> {
        self.retry(|| async move {
            sqlx::query("UPDATE workflow_runs SET done = TRUE WHERE tenant = $1 AND id = $2")
                .bind(tenant)
                .bind(id.to_string())
                .execute(&self.pool)
                .await?;
            Ok(())
        })
        .await
    }
}
