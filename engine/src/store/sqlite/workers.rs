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
        let mut stmts = Vec::new();
        for def in &reg.tasks {
            stmts.push(sql::upsert_task(worker, def, now));
            stmts.extend(sql::key_unkeyed_runs(worker, def).into_iter().flatten());
            if let Some(expr) = &def.cron {
                stmts.push(sql::upsert_task_cron(worker, def, expr, now));
            }
        }
        let worker = worker.clone();
        let slots = i64::from(reg.slots);
        let labels = serde_json::to_string(&reg.labels).unwrap_or_default();
        self.write(move |c| {
            exec(
                c,
                "INSERT OR REPLACE INTO workers (id, tenant, name, slots, tasks, labels, started_at, last_heartbeat) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                params![
                    worker.id,
                    worker.tenant,
                    worker.name,
                    slots,
                    ids_json(&worker.tasks),
                    labels,
                    micros(now)
                ],
            )?;
            for q in &stmts {
                exec_stmt(c, q)?;
            }
            Ok(())
        })
        .await
    }

    async fn get_worker(&self, id: &str) -> Result<Option<WorkerRecord>> {
        let id = id.to_string();
        self.read(move |c| {
            let row = one(
                c,
                &format!("SELECT {WORKER_COLS} FROM workers w WHERE w.id = ?1"),
                params![id],
                WorkerRow::from_sqlite,
            )?;
            Ok(row.map(WorkerRow::record))
        })
        .await
    }

    async fn deregister_worker(&self, id: &str, now: DateTime<Utc>) -> Result<usize> {
        let id = id.to_string();
        self.write(move |c| {
            let sql = format!(
                "SELECT {} FROM leases l JOIN runs r ON r.seq = l.run_seq WHERE l.worker_id = ?1",
                state_cols_of_r()
            );
            let rows = all(c, &sql, params![id], StateRow::from_sqlite)?;
            let mut changes = Vec::new();
            for row in rows {
                let mut st = Locked::try_from(row)?;
                if st.run.worker_id.as_deref() == Some(id.as_str()) {
                    changes.extend(st.plan(Happening::WorkerStopped, now)?);
                }
            }
            apply(c, &changes, now)?;
            exec(c, "DELETE FROM leases WHERE worker_id = ?1", params![id])?;
            exec(c, "DELETE FROM workers WHERE id = ?1", params![id])?;
            Ok(changes.len())
        })
        .await
    }

    async fn list_workers(&self, tenant: &str, since: DateTime<Utc>) -> Result<Vec<WorkerInfo>> {
        let tenant = tenant.to_string();
        self.read(move |c| {
            let rows = all(
                c,
                &format!(
                    "SELECT {WORKER_COLS} FROM workers w WHERE w.tenant = ?1 AND w.last_heartbeat >= ?2 \
                     ORDER BY w.started_at"
                ),
                params![tenant, micros(since)],
                WorkerRow::from_sqlite,
            )?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let held: Vec<String> = all(
                    c,
                    "SELECT r.id FROM leases l JOIN runs r ON r.seq = l.run_seq WHERE l.worker_id = ?1 ORDER BY r.seq",
                    params![row.id],
                    |r| r.get(0),
                )?;
                out.push(row.info(&held));
            }
            Ok(out)
        })
        .await
    }

    async fn get_task(&self, tenant: &str, name: &str) -> Result<Option<TaskDef>> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        self.read(move |c| {
            let def: Option<String> = one(
                c,
                "SELECT def FROM tasks WHERE tenant = ?1 AND name = ?2",
                params![tenant, name],
                |r| r.get(0),
            )?;
            Ok(def.and_then(|d| serde_json::from_str(&d).ok()))
        })
        .await
    }
}
