//! Statements both backends run as they are, built once with `sqlx::QueryBuilder` (which writes
//! each backend's placeholders). Backend-specific SQL stays in the backend's folder.

use super::{micros, CronRecord, WorkerRecord};
use chrono::{DateTime, Utc};
use owlclaw_core::task::TaskDef;
use sqlx::{Database, Encode, QueryBuilder, Type};

/// Pushes `INSERT INTO tasks ... ON CONFLICT DO UPDATE`: a task definition a worker registers.
pub(super) fn upsert_task<'a, DB>(
    worker: &'a WorkerRecord,
    def: &'a TaskDef,
    now: DateTime<Utc>,
) -> QueryBuilder<'a, DB>
where
    DB: Database,
    &'a str: Encode<'a, DB> + Type<DB>,
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut q = QueryBuilder::new("INSERT INTO tasks (tenant, name, def, updated_at) VALUES (");
    let mut v = q.separated(", ");
    v.push_bind(worker.tenant.as_str());
    v.push_bind(def.name.as_str());
    v.push_bind(serde_json::to_string(def).unwrap_or_default());
    v.push_bind(micros(now));
    q.push(
        ") ON CONFLICT (tenant, name) DO UPDATE SET def = excluded.def, \
         updated_at = excluded.updated_at",
    );
    q
}

/// Pushes the upsert of the cron schedule of a task registered with `cron = "..."` (id
/// `task:<name>`): a new one gets no input; an existing one keeps its input and last tick.
pub(super) fn upsert_task_cron<'a, DB>(
    worker: &'a WorkerRecord,
    def: &'a TaskDef,
    expr: &'a str,
    now: DateTime<Utc>,
) -> QueryBuilder<'a, DB>
where
    DB: Database,
    &'a str: Encode<'a, DB> + Type<DB>,
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut q = QueryBuilder::new(
        "INSERT INTO crons (tenant, id, task, expr, timezone, input, last_tick, created_at) VALUES (",
    );
    let mut v = q.separated(", ");
    v.push_bind(worker.tenant.as_str());
    v.push_bind(format!("task:{}", def.name));
    v.push_bind(def.name.as_str());
    v.push_bind(expr);
    v.push_bind(def.timezone.as_deref().unwrap_or("UTC"));
    v.push("'null'");
    v.push("NULL");
    v.push_bind(micros(now));
    q.push(
        ") ON CONFLICT (tenant, id) DO UPDATE SET expr = excluded.expr, \
         timezone = excluded.timezone",
    );
    q
}

/// Pushes the upsert of a cron schedule created through the API (its last tick kept), after
/// `prefix` (PostgreSQL wraps it to notify the other engines).
pub(super) fn upsert_cron<'a, DB>(prefix: &str, cron: &'a CronRecord) -> QueryBuilder<'a, DB>
where
    DB: Database,
    &'a str: Encode<'a, DB> + Type<DB>,
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let s = &cron.schedule;
    let mut q = QueryBuilder::new(prefix);
    q.push("INSERT INTO crons (tenant, id, task, expr, timezone, input, last_tick, created_at) VALUES (");
    let mut v = q.separated(", ");
    v.push_bind(cron.tenant.as_str());
    v.push_bind(s.id.as_str());
    v.push_bind(s.task.as_str());
    v.push_bind(s.expr.as_str());
    v.push_bind(s.timezone.as_str());
    v.push_bind(s.input.to_string());
    v.push("NULL");
    v.push_bind(micros(s.created_at));
    q.push(
        ") ON CONFLICT (tenant, id) DO UPDATE SET task = excluded.task, expr = excluded.expr, \
         timezone = excluded.timezone, input = excluded.input",
    );
    q
}
