//! Workers and the task definitions they register.

use super::*;

impl PostgresStore {
    pub(super) async fn register_tx(
        &self,
        worker: &WorkerRecord,
        reg: &WorkerRegistration,
        now: DateTime<Utc>,
    ) -> R<()> {
        no_nul("worker", Some(&worker.id))?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO workers (id, tenant, name, slots, tasks, labels, started_at, last_heartbeat) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (id) DO UPDATE SET \
             tenant = excluded.tenant, name = excluded.name, slots = excluded.slots, tasks = excluded.tasks, \
             labels = excluded.labels, started_at = excluded.started_at, last_heartbeat = excluded.last_heartbeat",
        )
        .bind(&worker.id)
        .bind(&worker.tenant)
        .bind(clean(&worker.name))
        .bind(i64::from(reg.slots))
        .bind(serde_json::to_string(&worker.tasks).unwrap_or_default())
        .bind(serde_json::to_string(&reg.labels).unwrap_or_default())
        .bind(micros(now))
        .execute(&mut *tx)
        .await?;
        // In name order, so that two workers registering the same tasks lock them alike.
        let mut defs: Vec<&TaskDef> = reg.tasks.iter().collect();
        defs.sort_by(|a, b| a.name.cmp(&b.name));
        let mut crons = false;
        for def in defs {
            stmt(&sql::upsert_task(worker, def, now))?
                .execute(&mut *tx)
                .await?;
            for q in sql::key_unkeyed_runs(worker, def).into_iter().flatten() {
                stmt(&q)?.execute(&mut *tx).await?;
            }
            if let Some(expr) = &def.cron {
                crons = true;
                stmt(&sql::upsert_task_cron(worker, def, expr, now))?
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let wakes = Wakes {
            crons,
            ..Wakes::default()
        };
        notify(&mut tx, wakes).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn deregister_tx(&self, id: &str, now: DateTime<Utc>) -> R<usize> {
        let mut tx = self.pool.begin().await?;
        let sql = format!(
            "SELECT {STATE_COLS} FROM runs WHERE seq = ANY(ARRAY( \
               SELECT run_seq FROM leases WHERE worker_id = $1)) ORDER BY seq FOR UPDATE"
        );
        let rows: Vec<StateRow> = sqlx::query_as(&sql).bind(id).fetch_all(&mut *tx).await?;
        let mut changes = Vec::new();
        for row in rows {
            let mut st = Locked::try_from(row)?;
            if st.run.worker_id.as_deref() == Some(id) {
                changes.extend(st.plan(Happening::WorkerStopped, now)?);
            }
        }
        let mut wakes = Wakes::default();
        apply(&mut tx, &changes, now, &mut wakes).await?;
        sqlx::query(
            "WITH l AS (DELETE FROM leases WHERE worker_id = $1) DELETE FROM workers WHERE id = $1",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        notify(&mut tx, wakes).await?;
        tx.commit().await?;
        Ok(changes.len())
    }

    pub(super) async fn list_workers_tx(
        &self,
        tenant: &str,
        since: DateTime<Utc>,
    ) -> R<Vec<WorkerInfo>> {
        #[derive(sqlx::FromRow)]
        struct Held {
            #[sqlx(flatten)]
            worker: WorkerRow,
            held: Vec<String>,
        }
        let rows: Vec<Held> = sqlx::query_as(&format!(
            "SELECT {WORKER_COLS}, \
               COALESCE((SELECT array_agg(r.id ORDER BY r.seq) FROM leases l \
                 JOIN runs r ON r.seq = l.run_seq WHERE l.worker_id = w.id), '{{}}') AS held \
             FROM workers w WHERE w.tenant = $1 AND w.last_heartbeat >= $2 ORDER BY w.started_at"
        ))
        .bind(tenant)
        .bind(micros(since))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| r.worker.info(&r.held)).collect())
    }
}

#[async_trait]
impl Workers for PostgresStore {
    async fn register_worker(
        &self,
        worker: &WorkerRecord,
        reg: &WorkerRegistration,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.retry(|| self.register_tx(worker, reg, now)).await
    }

    async fn get_worker(&self, id: &str) -> Result<Option<WorkerRecord>> {
        let row: Option<WorkerRow> = sqlx::query_as(&format!(
            "SELECT {WORKER_COLS} FROM workers w WHERE w.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.place.db(e))?;
        Ok(row.map(WorkerRow::record))
    }

    async fn deregister_worker(&self, id: &str, now: DateTime<Utc>) -> Result<usize> {
        self.retry(|| self.deregister_tx(id, now)).await
    }

    async fn list_workers(&self, tenant: &str, since: DateTime<Utc>) -> Result<Vec<WorkerInfo>> {
        self.retry(|| self.list_workers_tx(tenant, since)).await
    }

    async fn get_task(&self, tenant: &str, name: &str) -> Result<Option<TaskDef>> {
        let def: Option<String> =
            sqlx::query_scalar("SELECT def FROM tasks WHERE tenant = $1 AND name = $2")
                .bind(tenant)
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.place.db(e))?;
        Ok(def.and_then(|d| serde_json::from_str(&d).ok()))
    }
}
