//! Statements both backends run as they are, written once: SQL with `$n` placeholders (native in
//! PostgreSQL; in SQLite, `$n` names a parameter and they are bound in order of appearance) and
//! their parameters. Backend-specific SQL stays in the backend's folder.

use super::{micros, CronRecord, WorkerRecord};
use chrono::{DateTime, Utc};
use owlclaw_core::task::TaskDef;

/// A parameter of a shared statement.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Param {
    Text(String),
    Int(i64),
}

/// A statement and its parameters, `$1`, `$2`, ... in order.
#[derive(Debug, Clone, Default)]
pub(super) struct Stmt {
    pub(super) sql: String,
    pub(super) params: Vec<Param>,
}

impl Stmt {
    pub(super) fn new(sql: &str) -> Stmt {
        Stmt {
            sql: sql.to_string(),
            params: Vec::new(),
        }
    }

    /// Appends SQL.
    pub(super) fn push(&mut self, sql: &str) -> &mut Stmt {
        self.sql.push_str(sql);
        self
    }

    /// Appends the placeholder of a new parameter.
    pub(super) fn bind(&mut self, p: impl Into<Param>) -> &mut Stmt {
        self.params.push(p.into());
        self.sql.push_str(&format!("${}", self.params.len()));
        self
    }

    /// Appends `(v1, v2, ...)`: each value a parameter, or SQL as it is.
    fn values(&mut self, values: Vec<Value>) -> &mut Stmt {
        self.push("(");
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            match v {
                Value::Bind(p) => self.bind(p),
                Value::Sql(s) => self.push(s),
            };
        }
        self.push(")")
    }
}

impl From<&str> for Param {
    fn from(s: &str) -> Param {
        Param::Text(s.to_string())
    }
}

impl From<String> for Param {
    fn from(s: String) -> Param {
        Param::Text(s)
    }
}

impl From<i64> for Param {
    fn from(i: i64) -> Param {
        Param::Int(i)
    }
}

/// A value of a `VALUES` list.
enum Value {
    Bind(Param),
    Sql(&'static str),
}

fn b(p: impl Into<Param>) -> Value {
    Value::Bind(p.into())
}

/// `INSERT INTO tasks ... ON CONFLICT DO UPDATE`: a task definition a worker registers.
pub(super) fn upsert_task(worker: &WorkerRecord, def: &TaskDef, now: DateTime<Utc>) -> Stmt {
    let mut q = Stmt::new("INSERT INTO tasks (tenant, name, def, updated_at) VALUES ");
    q.values(vec![
        b(worker.tenant.as_str()),
        b(def.name.as_str()),
        b(serde_json::to_string(def).unwrap_or_default()),
        b(micros(now)),
    ]);
    q.push(
        " ON CONFLICT (tenant, name) DO UPDATE SET def = excluded.def, \
         updated_at = excluded.updated_at",
    );
    q
}

/// For a task registered with a limit: its queued runs that were scheduled without one (by a
/// producer that did not know the limit, or with the limit removed through the API) are put
/// under its empty key, where its limited claims find them; a run without a key would wait
/// forever. Two statements: the runs' key, then the queue's.
pub(super) fn key_unkeyed_runs(worker: &WorkerRecord, def: &TaskDef) -> Option<[Stmt; 2]> {
    if def.concurrency.is_none() && def.rate_limit.is_none() {
        return None;
    }
    let of_task = |q: &mut Stmt| {
        q.push(" WHERE tenant = ")
            .bind(worker.tenant.as_str())
            .push(" AND task = ")
            .bind(def.name.as_str())
            .push(" AND ckey IS NULL");
    };
    let mut runs =
        Stmt::new("UPDATE runs SET concurrency_key = '' WHERE seq IN (SELECT run_seq FROM queue");
    of_task(&mut runs);
    runs.push(")");
    let mut queue = Stmt::new("UPDATE queue SET ckey = ''");
    of_task(&mut queue);
    Some([runs, queue])
}

/// The upsert of the cron schedule of a task registered with `cron = "..."` (id `task:<name>`):
/// a new one gets no input; an existing one keeps its input and last tick.
pub(super) fn upsert_task_cron(
    worker: &WorkerRecord,
    def: &TaskDef,
    expr: &str,
    now: DateTime<Utc>,
) -> Stmt {
    let mut q = Stmt::new(
        "INSERT INTO crons (tenant, id, task, expr, timezone, input, last_tick, created_at, \
         overlap, catch_up) VALUES ",
    );
    q.values(vec![
        b(worker.tenant.as_str()),
        b(format!("task:{}", def.name)),
        b(def.name.as_str()),
        b(expr),
        b(def.timezone.as_deref().unwrap_or("UTC")),
        Value::Sql("'null'"),
        Value::Sql("NULL"),
        b(micros(now)),
        b(def.overlap.unwrap_or_default().as_str()),
        b(def.catch_up.unwrap_or_default().as_str()),
    ]);
    q.push(
        " ON CONFLICT (tenant, id) DO UPDATE SET expr = excluded.expr, \
         timezone = excluded.timezone, overlap = excluded.overlap, catch_up = excluded.catch_up",
    );
    q
}

/// The upsert of a cron schedule created through the API (its last tick kept), after `prefix`
/// (PostgreSQL wraps it to notify the other engines).
pub(super) fn upsert_cron(prefix: &str, cron: &CronRecord) -> Stmt {
    let s = &cron.schedule;
    let mut q = Stmt::new(prefix);
    q.push(
        "INSERT INTO crons (tenant, id, task, expr, timezone, input, last_tick, created_at, \
         overlap, catch_up) VALUES ",
    );
    q.values(vec![
        b(cron.tenant.as_str()),
        b(s.id.as_str()),
        b(s.task.as_str()),
        b(s.expr.as_str()),
        b(s.timezone.as_str()),
        b(s.input.to_string()),
        Value::Sql("NULL"),
        b(micros(s.created_at)),
        b(s.overlap.as_str()),
        b(s.catch_up.as_str()),
    ]);
    q.push(
        " ON CONFLICT (tenant, id) DO UPDATE SET task = excluded.task, expr = excluded.expr, \
         timezone = excluded.timezone, input = excluded.input, overlap = excluded.overlap, \
         catch_up = excluded.catch_up",
    );
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_parameters() {
        let mut q = Stmt::new("SELECT * FROM runs WHERE tenant = ");
        q.bind("t").push(" AND seq < ").bind(7);
        assert_eq!(q.sql, "SELECT * FROM runs WHERE tenant = $1 AND seq < $2");
        assert_eq!(q.params, vec![Param::Text("t".into()), Param::Int(7)]);
    }
}
