//! Workers and the task definitions they register.

use super::*;

#[async_trait]
impl Workers for SqliteStore {
    async fn register_worker(
        &self,
        worker: &WorkerRecord,
        reg: &WorkerRegistration,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT OR REPLACE INTO workers (id, tenant, name, slots, tasks, labels, started_at, last_heartbeat) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&worker.id)
        .bind(&worker.tenant)
        .bind(&worker.name)
        .bind(i64::from(reg.slots))
        .bind(ids_json(&worker.tasks))
        .bind(serde_json::to_string(&reg.labels).unwrap_or_default())
        .bind(micros(now))
        .bind(micros(now))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        for def in &reg.tasks {
            sql::upsert_task::<Sqlite>(worker, def, now)
                .build()
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            if let Some(expr) = &def.cron {
                sql::upsert_task_cron::<Sqlite>(worker, def, expr, now)
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn get_worker(&self, id: &str) -> Result<Option<WorkerRecord>> {
        let row: Option<WorkerRow> = sqlx::query_as(&format!(
            "SELECT {WORKER_COLS} FROM workers w WHERE w.id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.read)
        .await
        .map_err(db)?;
        Ok(row.map(WorkerRow::record))
    }

    async fn deregister_worker(&self, id: &str, now: DateTime<Utc>) -> Result<usize> {
        let mut tx = self.begin().await?;
        let sql = format!(
            "SELECT {} FROM leases l JOIN runs r ON r.seq = l.run_seq WHERE l.worker_id = ?",
            state_cols_of_r()
        );
        let rows: Vec<StateRow> = sqlx::query_as(&sql)
            .bind(id)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        let mut changes = Vec::new();
        for row in rows {
            let mut st = Locked::try_from(row)?;
            if st.run.worker_id.as_deref() == Some(id) {
                changes.extend(st.plan(Happening::WorkerStopped, now)?);
            }
        }
        apply(&mut tx, &changes, now).await?;
        let handed = changes.len();
        sqlx::query("DELETE FROM leases WHERE worker_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query("DELETE FROM workers WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(handed)
    }

    async fn list_workers(&self, tenant: &str, since: DateTime<Utc>) -> Result<Vec<WorkerInfo>> {
        let rows: Vec<WorkerRow> = sqlx::query_as(&format!(
            "SELECT {WORKER_COLS} FROM workers w WHERE w.tenant = ? AND w.last_heartbeat >= ? \
             ORDER BY w.started_at"
        ))
        .bind(tenant)
        .bind(micros(since))
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let held: Vec<String> = sqlx::query_scalar(
                "SELECT r.id FROM leases l JOIN runs r ON r.seq = l.run_seq WHERE l.worker_id = ? ORDER BY r.seq",
            )
            .bind(&row.id)
            .fetch_all(&self.read)
            .await
            .map_err(db)?;
            out.push(row.info(&held));
        }
        Ok(out)
    }

    async fn get_task(&self, tenant: &str, name: &str) -> Result<Option<TaskDef>> {
        let def: Option<String> =
            sqlx::query_scalar("SELECT def FROM tasks WHERE tenant = ? AND name = ?")
                .bind(tenant)
                .bind(name)
                .fetch_optional(&self.read)
                .await
                .map_err(db)?;
        Ok(def.and_then(|d| serde_json::from_str(&d).ok()))
    }
}
