//! Workflow runs: the active ones, their task runs, and their own transitions.

use super::*;
use crate::store::{ActiveWorkflow, FinishedLinks, WorkflowStep, Workflows};

#[async_trait]
impl Workflows for SqliteStore {
    async fn active_workflows(&self, after: i64, limit: u32) -> Result<Vec<ActiveWorkflow>> {
        self.read(move |c| {
            let rows: Vec<(i64, String, String, String)> = all(
                c,
                "SELECT w.run_seq, w.tenant, w.id, r.status || ':' || r.attempt || '|' || \
                   COALESCE((SELECT group_concat(c.seq || ':' || c.status || ':' || c.attempt, \
                     ',' ORDER BY c.seq) FROM runs c \
                     WHERE c.parent_id = w.id AND c.tenant = w.tenant), '') \
                 FROM workflow_runs w JOIN runs r ON r.seq = w.run_seq \
                 WHERE w.done = 0 AND w.run_seq > ?1 ORDER BY w.run_seq LIMIT ?2",
                params![after, i64::from(limit)],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?;
            rows.into_iter().map(ActiveWorkflow::from_row).collect()
        })
        .await
    }

    async fn children(&self, tenant: &str, id: RunId) -> Result<Vec<RunSnapshot>> {
        let tenant = tenant.to_string();
        self.read(move |c| {
            let rows = all(
                c,
                "SELECT * FROM runs WHERE parent_id = ?1 AND tenant = ?2 ORDER BY seq",
                params![id.to_string(), tenant],
                RunRow::from_sqlite,
            )?;
            rows.into_iter().map(RunRow::snapshot).collect()
        })
        .await
    }

    async fn workflow_step(
        &self,
        tenant: &str,
        id: RunId,
        step: &WorkflowStep,
        now: DateTime<Utc>,
    ) -> Result<RunSnapshot> {
        let (tenant, step) = (tenant.to_string(), step.clone());
        self.write(move |c| {
            let mut st = state_by_id(c, &tenant, id)?.ok_or_else(|| Error::run_not_found(id))?;
            let change = st.plan(step.happening(), now)?;
            apply(c, change.as_slice(), now)?;
            if let (
                Some(p),
                WorkflowStep::Finish {
                    output: Some(out), ..
                },
            ) = (&change, &step)
            {
                exec(
                    c,
                    "UPDATE runs SET output = ?1 WHERE seq = ?2",
                    params![out.to_string(), p.seq],
                )?;
            }
            load(c, &tenant, id)?.ok_or_else(|| Error::run_not_found(id))
        })
        .await
    }

    async fn workflow_done(&self, tenant: &str, id: RunId) -> Result<()> {
        let tenant = tenant.to_string();
        self.write(move |c| {
            exec(
                c,
                "UPDATE workflow_runs SET done = 1 WHERE tenant = ?1 AND id = ?2",
                params![tenant, id.to_string()],
            )?;
            Ok(())
        })
        .await
    }

    async fn finished_links(&self, limit: u32) -> Result<(Vec<FinishedLinks>, bool)> {
        self.read(move |c| {
            let rows: Vec<(String, String, String, String)> = all(
                c,
                "SELECT l.tenant, l.id, l.on_success, l.on_error FROM links l \
                 JOIN runs r ON r.seq = l.run_seq \
                 WHERE l.done = 0 AND r.status IN ('succeeded', 'failed', 'cancelled') \
                 ORDER BY l.run_seq LIMIT ?1",
                params![i64::from(limit)],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?;
            let open = !rows.is_empty()
                || one(c, "SELECT 1 FROM links WHERE done = 0 LIMIT 1", [], |r| {
                    r.get::<_, i64>(0)
                })?
                .is_some();
            let finished = crate::store::finished_links_of(rows)?;
            Ok((finished, open))
        })
        .await
    }

    async fn links_done(&self, tenant: &str, id: RunId) -> Result<()> {
        let tenant = tenant.to_string();
        self.write(move |c| {
            exec(
                c,
                "UPDATE links SET done = 1 WHERE tenant = ?1 AND id = ?2",
                params![tenant, id.to_string()],
            )?;
            Ok(())
        })
        .await
    }
}
