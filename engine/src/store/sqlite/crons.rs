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
        let rows: Vec<CronRow> = sqlx::query_as(&format!(
            "SELECT {CRON_COLS} FROM crons ORDER BY tenant, id"
        ))
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        Ok(rows.into_iter().map(CronRecord::from).collect())
    }

    async fn upsert_cron(&self, cron: &CronRecord) -> Result<()> {
        sql::upsert_cron::<Sqlite>("", cron)
            .build()
            .execute(&self.write)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn delete_cron(&self, tenant: &str, id: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM crons WHERE tenant = ? AND id = ?")
            .bind(tenant)
            .bind(id)
            .execute(&self.write)
            .await
            .map_err(db)?;
        Ok(r.rows_affected() > 0)
    }

    async fn fire_cron(&self, cron: &CronRecord, tick: DateTime<Utc>, run: NewRun) -> Result<bool> {
        let mut tx = self.begin().await?;
        let advanced = sqlx::query(
            "UPDATE crons SET last_tick = ?1 WHERE tenant = ?2 AND id = ?3 AND (last_tick IS NULL OR last_tick < ?1)",
        )
        .bind(micros(tick))
        .bind(&cron.tenant)
        .bind(&cron.schedule.id)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        let created = if advanced > 0 {
            !insert_runs_tx(&mut tx, std::slice::from_ref(&run), Utc::now(), true)
                .await?
                .is_empty()
        } else {
            false
        };
        tx.commit().await.map_err(db)?;
        Ok(created)
    }
}
