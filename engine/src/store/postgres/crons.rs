//! Cron schedules and their ticks.

use super::*;

impl PostgresStore {
    pub(super) async fn fire_cron_tx(
        &self,
        cron: &CronRecord,
        tick: DateTime<Utc>,
        run: &NewRun,
        now: DateTime<Utc>,
    ) -> R<bool> {
        let mut tx = self.pool.begin().await?;
        // The row lock serialises engines firing the same tick; the loser sees `last_tick`
        // already there once the winner commits, and changes nothing.
        let advanced = sqlx::query(
            "UPDATE crons SET last_tick = $1, last_fired = $1 WHERE tenant = $2 AND id = $3 \
             AND (last_tick IS NULL OR last_tick < $1)",
        )
        .bind(micros(tick))
        .bind(&cron.tenant)
        .bind(&cron.schedule.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let mut wakes = Wakes::default();
        let created = if advanced > 0 {
            !insert_runs_tx(&mut tx, std::slice::from_ref(run), now, true, &mut wakes)
                .await?
                .is_empty()
        } else {
            false
        };
        notify(&mut tx, wakes).await?;
        tx.commit().await?;
        Ok(created)
    }

    pub(super) async fn all_crons_tx(&self, tenant: Option<&str>) -> R<Vec<CronRecord>> {
        let rows: Vec<CronRow> = sqlx::query_as(&format!(
            "SELECT {CRON_COLS} FROM crons WHERE $1::text IS NULL OR tenant = $1 ORDER BY tenant, id"
        ))
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(CronRecord::from).collect())
    }
}

#[async_trait]
impl Crons for PostgresStore {
    async fn list_crons(&self, tenant: &str) -> Result<Vec<CronSchedule>> {
        let all = self.retry(|| self.all_crons_tx(Some(tenant))).await?;
        Ok(all.into_iter().map(|c| c.schedule).collect())
    }

    async fn all_crons(&self) -> Result<Vec<CronRecord>> {
        self.retry(|| self.all_crons_tx(None)).await
    }

    async fn upsert_cron(&self, cron: &CronRecord) -> Result<()> {
        let mut q = sql::upsert_cron("WITH up AS (", cron);
        q.push(" RETURNING 1) SELECT pg_notify('owlclaw', 'crons') FROM up");
        stmt(&q)
            .map_err(|e| self.place.db(e))?
            .execute(&self.pool)
            .await
            .map_err(|e| self.place.db(e))?;
        Ok(())
    }

    async fn delete_cron(&self, tenant: &str, id: &str) -> Result<bool> {
        let deleted: i64 = sqlx::query_scalar(
            "WITH gone AS (DELETE FROM crons WHERE tenant = $1 AND id = $2 RETURNING 1), \
             note AS (SELECT pg_notify('owlclaw', 'crons') FROM (SELECT 1 FROM gone LIMIT 1) AS g) \
             SELECT (SELECT count(*) FROM gone) + 0 * (SELECT count(*) FROM note)",
        )
        .bind(tenant)
        .bind(id)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.place.db(e))?;
        Ok(deleted > 0)
    }

    async fn set_cron_paused(
        &self,
        tenant: &str,
        id: &str,
        paused: bool,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        // Other engines reload their schedules when notified.
        let sql = if paused {
            "WITH up AS (UPDATE crons SET paused_at = COALESCE(paused_at, $3) \
               WHERE tenant = $1 AND id = $2 RETURNING 1), \
             note AS (SELECT pg_notify('owlclaw', 'crons') FROM (SELECT 1 FROM up LIMIT 1) AS u) \
             SELECT (SELECT count(*) FROM up) + 0 * (SELECT count(*) FROM note)"
        } else {
            "WITH up AS (UPDATE crons SET last_tick = CASE WHEN paused_at IS NULL THEN last_tick \
                 ELSE GREATEST(COALESCE(last_tick, 0), $3) END, paused_at = NULL \
               WHERE tenant = $1 AND id = $2 RETURNING 1), \
             note AS (SELECT pg_notify('owlclaw', 'crons') FROM (SELECT 1 FROM up LIMIT 1) AS u) \
             SELECT (SELECT count(*) FROM up) + 0 * (SELECT count(*) FROM note)"
        };
        let changed: i64 = sqlx::query_scalar(sql)
            .bind(tenant)
            .bind(id)
            .bind(micros(now))
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.place.db(e))?;
        Ok(changed > 0)
    }

    async fn fire_cron(
        &self,
        cron: &CronRecord,
        tick: DateTime<Utc>,
        run: NewRun,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let run = &run;
        self.retry(|| self.fire_cron_tx(cron, tick, run, now)).await
    }

    async fn skip_cron_tick(&self, cron: &CronRecord, tick: DateTime<Utc>) -> Result<bool> {
        let passed = self
            .retry(|| async move {
                Ok(sqlx::query(
                    "UPDATE crons SET last_tick = $1 WHERE tenant = $2 AND id = $3 \
                     AND (last_tick IS NULL OR last_tick < $1)",
                )
                .bind(micros(tick))
                .bind(&cron.tenant)
                .bind(&cron.schedule.id)
                .execute(&self.pool)
                .await?
                .rows_affected())
            })
            .await?;
        Ok(passed > 0)
    }
}
