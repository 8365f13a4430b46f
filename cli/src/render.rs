//! Human-readable output: aligned tables and `key: value` blocks. Times are RFC 3339 UTC to the
//! second; a missing value is `-`.

use chrono::{DateTime, SecondsFormat, Utc};
use owlclaw::{CronSchedule, PushedEvent, RateLimit, RunEvent, RunPage, RunSnapshot, WorkerInfo};
use owlclaw_core::duration::format_duration;
use serde_json::Value;
use std::fmt::Write as _;
use std::time::Duration;

const NONE: &str = "-";

pub(crate) fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn opt_time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| NONE.to_owned(), time)
}

fn opt_str(s: Option<&str>) -> String {
    s.map_or_else(|| NONE.to_owned(), str::to_owned)
}

fn opt_json(v: Option<&Value>) -> String {
    v.map_or_else(|| NONE.to_owned(), compact)
}

fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| v.to_string())
}

/// A table cell stays on one line.
fn cell(text: &str) -> String {
    text.replace('\r', "")
        .replace('\n', "\\n")
        .replace('\t', " ")
}

/// Columns separated by two spaces, each as wide as its widest cell; the last is not padded.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let cells: Vec<Vec<String>> =
        std::iter::once(headers.iter().map(|h| (*h).to_owned()).collect())
            .chain(rows.iter().map(|r| r.iter().map(|c| cell(c)).collect()))
            .collect();
    let mut widths = vec![0; headers.len()];
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for row in &cells {
        let mut line = String::new();
        for (i, (c, w)) in row.iter().zip(&widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(c);
            } else {
                let _ = write!(line, "{c}{:pad$}  ", "", pad = w - c.chars().count());
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn attempt(run: &RunSnapshot) -> String {
    format!("{}/{}", run.attempt, run.max_attempts)
}

/// `list`: ID, TASK, STATUS, ATTEMPT, PRIORITY, CREATED; then the cursor of the next page.
pub(crate) fn runs(page: &RunPage) -> String {
    let rows: Vec<Vec<String>> = page
        .runs
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.task.clone(),
                r.status.to_string(),
                attempt(r),
                r.priority.to_string(),
                time(r.created_at),
            ]
        })
        .collect();
    let mut out = table(
        &["ID", "TASK", "STATUS", "ATTEMPT", "PRIORITY", "CREATED"],
        &rows,
    );
    if let Some(cursor) = &page.next_cursor {
        let _ = writeln!(out, "more runs: pass --cursor {cursor}");
    }
    out
}

/// `events`: AT, FROM → TO, ATTEMPT, WORKER, REASON.
pub(crate) fn events(events: &[RunEvent]) -> String {
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                time(e.at),
                format!(
                    "{} → {}",
                    e.from.map_or(NONE, |s| s.as_str()),
                    e.to.as_str()
                ),
                e.attempt.to_string(),
                opt_str(e.worker.as_deref()),
                e.reason.clone(),
            ]
        })
        .collect();
    table(&["AT", "FROM → TO", "ATTEMPT", "WORKER", "REASON"], &rows)
}

/// `crons`: ID, TASK, EXPR, TIMEZONE, PAUSED, NEXT TICK, LAST TICK, OVERLAP/CATCH-UP.
pub(crate) fn crons(crons: &[CronSchedule]) -> String {
    let rows: Vec<Vec<String>> = crons
        .iter()
        .map(|c| {
            vec![
                c.id.clone(),
                c.task.clone(),
                c.expr.clone(),
                c.timezone.clone(),
                c.paused_at
                    .map_or_else(|| "no".to_string(), |t| format!("since {}", time(t))),
                opt_time(c.next_tick),
                opt_time(c.last_tick),
                format!("{}/{}", c.overlap.as_str(), c.catch_up.as_str()),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "TASK",
            "EXPR",
            "TIMEZONE",
            "PAUSED",
            "NEXT TICK",
            "LAST TICK",
            "OVERLAP/CATCH-UP",
        ],
        &rows,
    )
}

/// `ratelimit list`: NAME, LIMIT, PER.
pub(crate) fn rate_limits(limits: &[RateLimit]) -> String {
    let rows: Vec<Vec<String>> = limits
        .iter()
        .map(|l| vec![l.name.clone(), l.limit.to_string(), format_duration(l.per)])
        .collect();
    table(&["NAME", "LIMIT", "PER"], &rows)
}

/// `workers`: ID, NAME, SLOTS, HELD, STARTED, LAST HEARTBEAT, TASKS, LABELS (`key=value,...`).
pub(crate) fn workers(workers: &[WorkerInfo]) -> String {
    let rows: Vec<Vec<String>> = workers
        .iter()
        .map(|w| {
            vec![
                w.id.clone(),
                w.name.clone(),
                w.slots.to_string(),
                w.held_runs.len().to_string(),
                time(w.started_at),
                time(w.last_heartbeat),
                w.tasks.join(","),
                w.labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "NAME",
            "SLOTS",
            "HELD",
            "STARTED",
            "LAST HEARTBEAT",
            "TASKS",
            "LABELS",
        ],
        &rows,
    )
}

/// `event push`: the event (with the waiting runs it resumed), and the runs it started, one id
/// per line.
pub(crate) fn pushed_event(event: &PushedEvent) -> String {
    let mut out = String::new();
    let what = if event.created && !event.resumed.is_empty() {
        format!(
            "{} run(s) started, {} waiting run(s) resumed ({})",
            event.runs.len(),
            event.resumed.len(),
            event
                .resumed
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else if event.created {
        format!("{} run(s) started", event.runs.len())
    } else {
        "pushed before: nothing new started".to_string()
    };
    let _ = writeln!(out, "event {} ({}): {what}", event.id, event.key);
    for run in &event.runs {
        let _ = writeln!(out, "{run}");
    }
    out
}

/// `status`: one `key: value` line per field of the snapshot (the JSON names), then the errors of
/// failed attempts and the durable steps, one per line.
pub(crate) fn snapshot(run: &RunSnapshot) -> String {
    let mut fields: Vec<(&str, String)> = vec![
        ("id", run.id.to_string()),
        ("task", run.task.clone()),
        ("status", run.status.to_string()),
        ("attempt", attempt(run)),
        ("priority", run.priority.to_string()),
        ("owner", opt_str(run.owner.as_deref())),
        ("idempotency_key", opt_str(run.idempotency_key.as_deref())),
        (
            "parent_id",
            opt_str(run.parent_id.map(|p| p.to_string()).as_deref()),
        ),
        ("worker", opt_str(run.worker.as_deref())),
        (
            "timeout",
            format_duration(Duration::from_millis(run.timeout_ms)),
        ),
        ("run_at", time(run.run_at)),
        ("created_at", time(run.created_at)),
        ("started_at", opt_time(run.started_at)),
        ("finished_at", opt_time(run.finished_at)),
        ("input", compact(&run.input)),
        ("output", opt_json(run.output.as_ref())),
        ("error", opt_str(run.error.as_deref())),
    ];
    if let Some(metadata) = &run.metadata {
        fields.push(("metadata", compact(metadata)));
    }
    if let Some(key) = &run.limit_key {
        fields.push(("limit_key", format!("{key:?}")));
    }
    if let Some(waiting) = &run.waiting {
        fields.insert(3, ("waiting", waiting.clone()));
    }
    let width = "idempotency_key:".len() + 2;
    let mut out = String::new();
    let mut line = |key: &str, value: &str| {
        let label = format!("{key}:");
        // Continuation lines of a multi-line value line up under its first line.
        let value = value.replace('\n', &format!("\n{:width$}", ""));
        let _ = writeln!(out, "{label:width$}{value}");
    };
    for (key, value) in &fields {
        line(key, value);
    }
    if run.errors.is_empty() {
        line("errors", NONE);
    } else {
        line("errors", "");
        for e in &run.errors {
            line(
                "",
                &format!("attempt {} at {}: {}", e.attempt, time(e.at), e.error),
            );
        }
    }
    if run.steps.is_empty() {
        line("steps", NONE);
    } else {
        line("steps", "");
        let rows: Vec<Vec<String>> = run
            .steps
            .iter()
            .map(|s| {
                let mut detail = opt_json(s.output.as_ref());
                if let Some(e) = &s.error {
                    detail = format!("error: {e}");
                }
                let status = serde_json::to_value(s.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                vec![
                    s.position.to_string(),
                    s.name.clone(),
                    status,
                    s.attempt.to_string(),
                    detail,
                ]
            })
            .collect();
        for row in table(&["#", "NAME", "STATUS", "ATTEMPT", "OUTPUT"], &rows).lines() {
            line("", row);
        }
    }
    out.lines()
        .map(|l| l.trim_end().to_owned() + "\n")
        .collect()
}

/// A duration in milliseconds, as `1.2s` or `340ms`.
fn millis(ms: u64) -> String {
    if ms >= 1000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{ms}ms")
    }
}

/// A workflow's plan: its stages, then its tasks with their expected durations, then the
/// critical path.
pub(crate) fn plan(plan: &owlclaw::WorkflowPlan) -> String {
    let mut out = format!(
        "workflow {}\n\nstages (the tasks of one stage can run in parallel):\n",
        plan.workflow
    );
    for (i, stage) in plan.stages.iter().enumerate() {
        out.push_str(&format!("  {}. {}\n", i + 1, stage.join(", ")));
    }
    out.push('\n');
    let rows: Vec<Vec<String>> = plan
        .tasks
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                if t.parents.is_empty() {
                    "-".into()
                } else {
                    t.parents.join(",")
                },
                t.expected_ms.map_or_else(|| "no history".into(), millis),
            ]
        })
        .collect();
    out.push_str(&table(&["TASK", "PARENTS", "EXPECTED"], &rows));
    out.push_str(&format!(
        "\ncritical path: {} ({}{})\n",
        plan.critical_path.join(" -> "),
        millis(plan.critical_path_ms),
        if plan.tasks.iter().any(|t| t.expected_ms.is_none()) {
            "; tasks with no history count as 0"
        } else {
            ""
        }
    ));
    out.push_str(&format!("output: {}\n", plan.output));
    if let Some(f) = &plan.on_failure {
        out.push_str(&format!("on failure: {f}\n"));
    }
    out
}

/// The task runs of a workflow run.
pub(crate) fn workflow_tasks(tasks: &owlclaw::WorkflowRunTasks) -> String {
    let row = |t: &owlclaw::WorkflowTaskRun| {
        vec![
            t.task.clone(),
            t.status.clone(),
            t.run_id.map_or_else(|| "-".into(), |id| id.to_string()),
            t.reason.clone().unwrap_or_default(),
        ]
    };
    let mut rows: Vec<Vec<String>> = tasks.tasks.iter().map(row).collect();
    if let Some(f) = &tasks.on_failure {
        let mut r = row(f);
        r[0] = format!("{} (on failure)", r[0]);
        rows.push(r);
    }
    format!(
        "workflow {} run {}\n{}",
        tasks.workflow,
        tasks.run_id,
        table(&["TASK", "STATUS", "RUN", "WHY"], &rows)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_and_leaves_the_last_unpadded() {
        let out = table(
            &["ID", "NAME", "X"],
            &[
                vec!["1".into(), "long name".into(), "a".into()],
                vec!["22".into(), "n\nl".into(), "".into()],
            ],
        );
        assert_eq!(out, "ID  NAME       X\n1   long name  a\n22  n\\nl\n");
    }

    #[test]
    fn status_says_why_a_queued_run_waits() {
        let run: RunSnapshot = serde_json::from_value(serde_json::json!({
            "id": "0b8c5d1e-3f4a-4b6c-8d9e-0f1a2b3c4d5e",
            "task": "render",
            "status": "queued",
            "attempt": 0,
            "max_attempts": 1,
            "priority": 5,
            "input": null,
            "output": null,
            "error": null,
            "owner": null,
            "idempotency_key": null,
            "parent_id": null,
            "timeout_ms": 60000,
            "run_at": "2026-12-04T05:00:00Z",
            "created_at": "2026-12-04T05:00:00Z",
            "started_at": null,
            "finished_at": null,
            "waiting": "no live worker has the labels task `render` requires (gpu): w lacks gpu",
            "limit_key": "customer-7",
        }))
        .unwrap();
        let out = snapshot(&run);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[2].starts_with("status:"), "{out}");
        assert!(
            lines[3].starts_with("waiting:") && lines[3].ends_with("w lacks gpu"),
            "{out}"
        );
        assert!(
            lines.contains(&"limit_key:        \"customer-7\""),
            "the key its limit counts it under: {out}"
        );
    }

    #[test]
    fn workers_table_lists_labels() {
        let now = chrono::Utc::now();
        let w = WorkerInfo {
            id: "w-1".into(),
            name: "w".into(),
            slots: 2,
            tasks: vec!["t".into()],
            started_at: now,
            last_heartbeat: now,
            held_runs: Vec::new(),
            labels: [
                ("gpu".to_string(), "a100".to_string()),
                ("region".to_string(), "eu".to_string()),
            ]
            .into_iter()
            .collect(),
        };
        let out = workers(&[w]);
        let header = out.lines().next().unwrap();
        assert!(header.ends_with("TASKS  LABELS"), "{out}");
        assert!(
            out.lines()
                .nth(1)
                .unwrap()
                .ends_with("t      gpu=a100,region=eu"),
            "{out}"
        );
    }
}
