//! The engine's metrics, in the Prometheus text format (`prometheus-client`): queue depth and live
//! workers with their slots (read from the store when scraped), counters of what this engine
//! process did since it started, and per-task histograms of queue waits and attempt durations.

use super::Engine;
use crate::store::QueueDepth;
use owlclaw_core::wire::{Assignment, Completion, Outcome};
use owlclaw_core::RunId;
use prometheus_client::encoding::{prometheus_text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// The task label of a run claimed through another engine (no task name has parentheses).
const UNKNOWN_TASK: &str = "(unknown)";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    tenant: String,
    task: String,
    priority: u8,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    tenant: String,
    task: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    tenant: String,
    task: String,
    outcome: &'static str,
}

type Histograms = Family<TaskLabels, Histogram, fn() -> Histogram>;

/// Queue waits: 5 ms to about 22 minutes, by factors of 4.
fn queue_wait_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 4.0, 10))
}

/// Attempt durations: 10 ms to about 2.9 hours, by factors of 4.
fn run_duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 4.0, 11))
}

/// The live workers of one tenant (those that exchanged within the last lease period), read from
/// the store when `/metrics` is scraped.
#[derive(Debug)]
struct WorkerLoad {
    tenant: String,
    workers: u64,
    slots: u64,
    /// Runs the workers hold: their slots in use.
    busy: u64,
}

/// A gauge family by tenant, set from `loads`.
fn tenant_gauges(
    loads: &[WorkerLoad],
    value: fn(&WorkerLoad) -> u64,
) -> Family<TenantLabels, Gauge> {
    let family = Family::<TenantLabels, Gauge>::default();
    for l in loads {
        family
            .get_or_create(&TenantLabels {
                tenant: l.tenant.clone(),
            })
            .set(i64::try_from(value(l)).unwrap_or(i64::MAX));
    }
    family
}

/// A run this engine handed to a worker, until the worker reports it.
#[derive(Debug)]
struct Claim {
    labels: TaskLabels,
    at: Instant,
    /// Past this, the report will not come here (the worker was lost, or reported elsewhere).
    forget_at: Instant,
}

/// What `/metrics` exports.
#[derive(Debug)]
pub(super) struct Metrics {
    pub(super) scheduled: Counter,
    claimed: Counter,
    succeeded: Counter,
    failed_attempts: Counter,
    timed_out_attempts: Counter,
    handed_back: Counter,
    suspended: Counter,
    pub(super) lease_expiries: Counter,
    pub(super) cron_ticks: Counter,
    outcomes: Family<OutcomeLabels, Counter>,
    queue_wait: Histograms,
    run_duration: Histograms,
    claims: Mutex<HashMap<RunId, Claim>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            scheduled: Counter::default(),
            claimed: Counter::default(),
            succeeded: Counter::default(),
            failed_attempts: Counter::default(),
            timed_out_attempts: Counter::default(),
            handed_back: Counter::default(),
            suspended: Counter::default(),
            lease_expiries: Counter::default(),
            cron_ticks: Counter::default(),
            outcomes: Family::default(),
            queue_wait: Family::new_with_constructor(queue_wait_histogram),
            run_duration: Family::new_with_constructor(run_duration_histogram),
            claims: Mutex::new(HashMap::new()),
        }
    }
}

impl Metrics {
    /// Runs handed to a worker of `tenant`: counted, and remembered until they are reported.
    fn claimed(&self, tenant: &str, assignments: &[Assignment], lease: Duration) {
        self.claimed.inc_by(assignments.len() as u64);
        let now = Instant::now();
        let mut claims = self.claims.lock().unwrap();
        for a in assignments {
            let timeout = Duration::from_millis(a.timeout_ms);
            claims.insert(
                a.run_id,
                Claim {
                    labels: TaskLabels {
                        tenant: tenant.to_string(),
                        task: a.task.clone(),
                    },
                    at: now,
                    forget_at: now + timeout + lease * 2 + Duration::from_secs(60),
                },
            );
        }
    }

    /// Reports of a worker of `tenant`: the outcome counters, and the duration of each attempt
    /// this engine handed out.
    pub(super) fn reported(&self, tenant: &str, completions: &[Completion]) {
        let now = Instant::now();
        let mut claims = self.claims.lock().unwrap();
        for done in completions {
            let (counter, outcome) = match done.outcome {
                Outcome::Succeeded { .. } => (Some(&self.succeeded), "succeeded"),
                Outcome::Failed { .. } => (Some(&self.failed_attempts), "failed"),
                Outcome::TimedOut => (Some(&self.timed_out_attempts), "timed_out"),
                Outcome::HandedBack => (Some(&self.handed_back), "handed_back"),
                Outcome::Suspended { .. } => (Some(&self.suspended), "suspended"),
                Outcome::WaitingForEvent { .. } => (Some(&self.suspended), "waiting_for_event"),
                Outcome::Cancelled => (None, "cancelled"),
            };
            if let Some(c) = counter {
                c.inc();
            }
            let claim = claims.remove(&done.run_id);
            let task = match &claim {
                Some(c) => c.labels.task.clone(),
                None => UNKNOWN_TASK.to_string(),
            };
            self.outcomes
                .get_or_create(&OutcomeLabels {
                    tenant: tenant.to_string(),
                    task,
                    outcome,
                })
                .inc();
            if let Some(c) = claim {
                self.run_duration
                    .get_or_create(&c.labels)
                    .observe(now.duration_since(c.at).as_secs_f64());
            }
        }
    }

    /// Forgets claims whose report will not come here.
    pub(super) fn forget_lost_claims(&self) {
        let now = Instant::now();
        self.claims.lock().unwrap().retain(|_, c| c.forget_at > now);
    }

    /// The Prometheus text of every metric, with `depth` as the queue depth and `workers` as the
    /// live workers of each tenant.
    fn encode(&self, depth: Vec<QueueDepth>, workers: &[WorkerLoad]) -> String {
        let queue_depth = Family::<QueueLabels, Gauge>::default();
        for d in depth {
            queue_depth
                .get_or_create(&QueueLabels {
                    tenant: d.tenant,
                    task: d.task,
                    priority: d.priority,
                })
                .set(i64::try_from(d.ready).unwrap_or(i64::MAX));
        }
        // The registry appends a period to each help text. Counters get the `_total` suffix.
        let mut r = Registry::default();
        r.register("owlclaw_queue_depth", "Runs ready to start", queue_depth);
        r.register(
            "owlclaw_workers",
            "Live workers (an exchange within the last lease period), by tenant",
            tenant_gauges(workers, |l| l.workers),
        );
        r.register(
            "owlclaw_worker_slots",
            "Slots of the live workers, by tenant",
            tenant_gauges(workers, |l| l.slots),
        );
        r.register(
            "owlclaw_worker_slots_busy",
            "Runs held by the live workers (their slots in use), by tenant",
            tenant_gauges(workers, |l| l.busy),
        );
        for (name, help, c) in [
            (
                "owlclaw_runs_scheduled",
                "Runs scheduled through this engine",
                &self.scheduled,
            ),
            (
                "owlclaw_runs_claimed",
                "Runs handed to workers",
                &self.claimed,
            ),
            (
                "owlclaw_runs_succeeded",
                "Attempts that succeeded",
                &self.succeeded,
            ),
            (
                "owlclaw_attempts_failed",
                "Attempts that failed (retried or not)",
                &self.failed_attempts,
            ),
            (
                "owlclaw_attempts_timed_out",
                "Attempts stopped at their timeout",
                &self.timed_out_attempts,
            ),
            (
                "owlclaw_runs_handed_back",
                "Runs handed back by workers shutting down",
                &self.handed_back,
            ),
            (
                "owlclaw_runs_suspended",
                "Attempts that suspended the run (a durable sleep or event wait)",
                &self.suspended,
            ),
            (
                "owlclaw_lease_expiries",
                "Leases that expired (worker lost)",
                &self.lease_expiries,
            ),
            (
                "owlclaw_cron_ticks",
                "Cron ticks fired by this engine",
                &self.cron_ticks,
            ),
        ] {
            r.register(name, help, c.clone());
        }
        r.register(
            "owlclaw_attempt_outcomes",
            "Attempts reported by workers, by tenant, task and outcome (succeeded, failed, \
             timed_out, handed_back, suspended, waiting_for_event, cancelled)",
            self.outcomes.clone(),
        );
        r.register(
            "owlclaw_queue_wait_seconds",
            "Time from a run's due time to its claim by a worker, by tenant and task",
            self.queue_wait.clone(),
        );
        r.register(
            "owlclaw_run_duration_seconds",
            "Time from an attempt's start (its claim) to the worker's report of its end, by \
             tenant and task",
            self.run_duration.clone(),
        );
        let mut out = String::new();
        if let Err(e) = prometheus_text::encode(&mut out, &r) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        out
    }
}

impl Engine {
    /// Prometheus text exposition of the engine's metrics: queue depth by tenant, task and
    /// priority, live workers and their slots by tenant, counters of what this engine process did
    /// since it started, and histograms of queue waits and attempt durations by task.
    pub async fn metrics_text(&self) -> String {
        let depth = match self.inner.store.queue_depth().await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "queue depth for metrics");
                Vec::new()
            }
        };
        let workers = self.worker_loads(&depth).await;
        self.inner.metrics.encode(depth, &workers)
    }

    /// The live workers of each tenant this engine knows: those of the workers and task
    /// definitions it has seen, and those with queued runs (so that queued work without a worker
    /// shows as 0 workers). One store read per tenant, at scrape time only.
    async fn worker_loads(&self, depth: &[QueueDepth]) -> Vec<WorkerLoad> {
        let mut tenants: BTreeSet<String> = depth.iter().map(|d| d.tenant.clone()).collect();
        // (Each lock is released before the reads below.)
        {
            let workers = self.inner.workers.lock().unwrap();
            tenants.extend(workers.values().map(|w| w.tenant.clone()));
        }
        {
            let tasks = self.inner.tasks.lock().unwrap();
            tenants.extend(tasks.keys().map(|(tenant, _)| tenant.clone()));
        }
        let mut loads = Vec::with_capacity(tenants.len());
        for tenant in tenants {
            match self.list_workers(&tenant).await {
                Ok(live) => loads.push(WorkerLoad {
                    workers: live.len() as u64,
                    slots: live.iter().map(|w| u64::from(w.slots)).sum(),
                    busy: live.iter().map(|w| w.held_runs.len() as u64).sum(),
                    tenant,
                }),
                // Left out rather than reported as 0: a scrape without the series says "unknown".
                Err(e) => tracing::warn!(error = %e, tenant = %tenant, "live workers for metrics"),
            }
        }
        loads
    }

    /// Counts runs handed to a worker of `tenant` and measures how long each waited from its
    /// due time to its claim (the claim returns the due time: no extra read).
    pub(super) fn observe_claims(&self, tenant: &str, assignments: &[Assignment]) {
        if assignments.is_empty() {
            return;
        }
        let inner = &self.inner;
        inner.metrics.claimed(tenant, assignments, inner.cfg.lease);
        let now = chrono::Utc::now();
        for a in assignments {
            let Some(due) = a.due_at else { continue };
            let wait = (now - due).to_std().unwrap_or(Duration::ZERO);
            inner
                .metrics
                .queue_wait
                .get_or_create(&TaskLabels {
                    tenant: tenant.to_string(),
                    task: a.task.clone(),
                })
                .observe(wait.as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_keeps_the_classic_names_and_types() {
        // (The families by task appear once they have a sample: see the next test.)
        let m = Metrics::default();
        m.scheduled.inc_by(2);
        let text = m.encode(
            vec![QueueDepth {
                tenant: "acme".into(),
                task: "send-email".into(),
                priority: 5,
                ready: 2,
            }],
            &[WorkerLoad {
                tenant: "acme".into(),
                workers: 2,
                slots: 12,
                busy: 3,
            }],
        );
        for line in [
            "# HELP owlclaw_queue_depth Runs ready to start.",
            "# TYPE owlclaw_queue_depth gauge",
            r#"owlclaw_queue_depth{tenant="acme",task="send-email",priority="5"} 2"#,
            "# HELP owlclaw_runs_scheduled_total Runs scheduled through this engine.",
            "# TYPE owlclaw_runs_scheduled_total counter",
            "owlclaw_runs_scheduled_total 2",
            "owlclaw_runs_claimed_total 0",
            "owlclaw_runs_succeeded_total 0",
            "owlclaw_attempts_failed_total 0",
            "owlclaw_attempts_timed_out_total 0",
            "owlclaw_runs_handed_back_total 0",
            "owlclaw_runs_suspended_total 0",
            "owlclaw_lease_expiries_total 0",
            "owlclaw_cron_ticks_total 0",
            "# TYPE owlclaw_workers gauge",
            r#"owlclaw_workers{tenant="acme"} 2"#,
            "# TYPE owlclaw_worker_slots gauge",
            r#"owlclaw_worker_slots{tenant="acme"} 12"#,
            "# TYPE owlclaw_worker_slots_busy gauge",
            r#"owlclaw_worker_slots_busy{tenant="acme"} 3"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in:\n{text}");
        }
    }

    #[test]
    fn reports_count_outcomes_and_time_the_attempts_claimed_here() {
        let m = Metrics::default();
        let run = RunId::new();
        let assignment = Assignment {
            run_id: run,
            task: "t".into(),
            input: serde_json::Value::Null,
            attempt: 1,
            max_attempts: 1,
            timeout_ms: 1000,
            parent_id: None,
            due_at: None,
        };
        m.claimed("acme", &[assignment], Duration::from_secs(15));
        let done = |run_id| Completion {
            run_id,
            attempt: 1,
            outcome: Outcome::Succeeded {
                output: serde_json::Value::Null,
            },
        };
        // One claimed here, one claimed through another engine.
        m.reported("acme", &[done(run), done(RunId::new())]);
        let text = m.encode(Vec::new(), &[]);
        for line in [
            "# TYPE owlclaw_attempt_outcomes_total counter",
            "# TYPE owlclaw_run_duration_seconds histogram",
            "owlclaw_runs_claimed_total 1",
            "owlclaw_runs_succeeded_total 2",
            r#"owlclaw_attempt_outcomes_total{tenant="acme",task="t",outcome="succeeded"} 1"#,
            r#"owlclaw_attempt_outcomes_total{tenant="acme",task="(unknown)",outcome="succeeded"} 1"#,
            r#"owlclaw_run_duration_seconds_count{tenant="acme",task="t"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in:\n{text}");
        }
        assert!(m.claims.lock().unwrap().is_empty());
    }
}
