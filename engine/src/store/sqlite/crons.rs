//! Cron schedules and their ticks.

use super::*;

#[async_trait]
impl Crons for SqliteStore {
    async fn list_crons(&self, tenant: &str) -> Result<Vec<CronSchedule>> {
        Ok(self
            .all_crons()
            .await?
            .into_iter()
            .filter(|c| c.tenant == tenant)
            .map(|c| c.schedule)
            .collect())
    }

    async fn all_crons(&self) -> Result<Vec<CronRecord>> {
        self.read(|c| {
            let rows = all(
                c,
                &format!("SELECT {CRON_COLS} FROM crons ORDER BY tenant, id"),
                [],
                CronRow::from_sqlite,
            )?;
            Ok(rows.into_iter().map(CronRecord::from).collect())
        })
        .await
    }

    async fn upsert_cron(&self, cron: &CronRecord) -> Result<()> {
        let q = sql::upsert_cron("", cron);
        self.write(move |c| exec_stmt(c, &q).map(|_| ())).await
    }

    async fn delete_cron(&self, tenant: &str, id: &str) -> Result<bool> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.write(move |c| {
            let n = exec(
                c,
                "DELETE FROM crons WHERE tenant = ?1 AND id = ?2",
                params![tenant, id],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn set_cron_paused(
        &self,
        tenant: &str,
        id: &str,
        paused: bool,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.write(move |c| {
            let sql = if paused {
                "UPDATE crons SET paused_at = COALESCE(paused_at, ?3) WHERE tenant = ?1 AND id = ?2"
            } else {
                "UPDATE crons SET last_tick = CASE WHEN paused_at IS NULL THEN last_tick \
                   ELSE max(COALESCE(last_tick, 0), ?3) END, paused_at = NULL \
                 WHERE tenant = ?1 AND id = ?2"
            };
            Ok(exec(c, sql, params![tenant, id, micros(now)])? > 0)
        })
        .await
    }

    async fn fire_cron(
        &self,
        cron: &CronRecord,
        tick: DateTime<Utc>,
        run: NewRun,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let tenant = cron.tenant.clone();
        let id = cron.schedule.id.clone();
        self.write(move |c| {
            let advanced = exec(
                c,
                "UPDATE crons SET last_tick = ?1, last_fired = ?1 WHERE tenant = ?2 AND id = ?3 \
                 AND (last_tick IS NULL OR last_tick < ?1)",
                params![micros(tick), tenant, id],
            )?;
            if advanced == 0 {
                return Ok(false);
            }
            Ok(!insert_runs_tx(c, std::slice::from_ref(&run), now, true)?.is_empty())
        })
        .await
    }

    async fn skip_cron_tick(&self, cron: &CronRecord, tick: DateTime<Utc>) -> Result<bool> {
        let tenant = cron.tenant.clone();
        let id = cron.schedule.id.clone();
        self.write(move |c| {
            Ok(exec(
                c,
                "UPDATE crons SET last_tick = ?1 WHERE tenant = ?2 AND id = ?3 \
                 AND (last_tick IS NULL OR last_tick < ?1)",
                params![micros(tick), tenant, id],
            )? > 0)
        })
        .await
    }
}
