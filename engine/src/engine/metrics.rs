use super::Engine;
use std::sync::atomic::Ordering;

impl Engine {
    /// Prometheus text exposition of the engine's metrics: queue depth by tenant, task and
    /// priority, and counters of what this engine process did since it started.
    pub async fn metrics_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP owlclaw_queue_depth Runs ready to start.\n# TYPE owlclaw_queue_depth gauge"
        );
        match self.inner.store.queue_depth().await {
            Ok(rows) => {
                for (tenant, task, priority, n) in rows {
                    let _ = writeln!(
                        out,
                        "owlclaw_queue_depth{{tenant=\"{}\",task=\"{}\",priority=\"{priority}\"}} {n}",
                        tenant.replace('"', "'"),
                        task.replace('"', "'")
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "queue depth for metrics"),
        }
        let c = &self.inner.counters;
        for (name, help, v) in [
            (
                "owlclaw_runs_scheduled_total",
                "Runs scheduled through this engine.",
                &c.scheduled,
            ),
            (
                "owlclaw_runs_claimed_total",
                "Runs handed to workers.",
                &c.claimed,
            ),
            (
                "owlclaw_runs_succeeded_total",
                "Attempts that succeeded.",
                &c.succeeded,
            ),
            (
                "owlclaw_attempts_failed_total",
                "Attempts that failed (retried or not).",
                &c.failed_attempts,
            ),
            (
                "owlclaw_attempts_timed_out_total",
                "Attempts stopped at their timeout.",
                &c.timed_out_attempts,
            ),
            (
                "owlclaw_runs_handed_back_total",
                "Runs handed back by workers shutting down.",
                &c.handed_back,
            ),
            (
                "owlclaw_lease_expiries_total",
                "Leases that expired (worker lost).",
                &c.lease_expiries,
            ),
            (
                "owlclaw_cron_ticks_total",
                "Cron ticks fired by this engine.",
                &c.cron_ticks,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        out
    }
}
