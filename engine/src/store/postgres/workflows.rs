//! Workflow runs: the active ones, their task runs, and their own transitions.

use super::*;
use crate::store::{ActiveWorkflow, FinishedLinks, WorkflowStep, Workflows};

#[async_trait]
impl Workflows for PostgresStore {
    async fn active_workflows(&self, after: i64, limit: u32) -> Result<Vec<ActiveWorkflow>> {
        let rows: Vec<(i64, String, String, String)> = self
            .retry(|| async move {
                Ok(sqlx::query_as(
                    "SELECT w.run_seq, w.tenant, w.id, r.status || ':' || r.attempt || '|' || \
                       COALESCE((SELECT string_agg(c.seq || ':' || c.status || ':' || c.attempt, \
                         ',' ORDER BY c.seq) FROM runs c \
                         WHERE c.parent_id = w.id AND c.tenant = w.tenant), '') \
                     FROM workflow_runs w JOIN runs r ON r.seq = w.run_seq \
                     WHERE NOT w.done AND w.run_seq > $1 ORDER BY w.run_seq LIMIT $2",
                )
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?)
            })
            .await?;
        rows.into_iter().map(ActiveWorkflow::from_row).collect()
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

    async fn finished_links(&self, limit: u32) -> Result<(Vec<FinishedLinks>, bool)> {
        let (rows, open): (Vec<(String, String, String, String)>, bool) = self
            .retry(|| async move {
                let rows: Vec<(String, String, String, String)> = sqlx::query_as(
                    "SELECT l.tenant, l.id, l.on_success, l.on_error FROM links l \
                     JOIN runs r ON r.seq = l.run_seq \
                     WHERE NOT l.done AND r.status IN ('succeeded', 'failed', 'cancelled') \
                     ORDER BY l.run_seq LIMIT $1",
                )
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                let open = !rows.is_empty()
                    || sqlx::query_scalar::<_, i32>("SELECT 1 FROM links WHERE NOT done LIMIT 1")
                        .fetch_optional(&self.pool)
                        .await?
                        .is_some();
                Ok((rows, open))
            })
            .await?;
        let finished = crate::store::finished_links_of(rows)?;
        Ok((finished, open))
    }

    async fn links_done(&self, tenant: &str, id: RunId) -> Result<()> {
        self.retry(|| async move {
            sqlx::query("UPDATE links SET done = TRUE WHERE tenant = $1 AND id = $2")
                .bind(tenant)
                .bind(id.to_string())
                .execute(&self.pool)
                .await?;
            Ok(())
        })
        .await
    }
}
