use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// The id of a run: a UUID. Runs scheduled with an idempotency key get a deterministic id
/// ([`RunId::for_idempotency_key`]), so a caller can compute it in advance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String, format = Uuid))]
#[serde(transparent)]
pub struct RunId(pub Uuid);

impl RunId {
    /// A fresh, time-ordered id (UUID v7).
    pub fn new() -> RunId {
        RunId(Uuid::now_v7())
    }

    /// The id of the run that `tenant` schedules for `task` with idempotency key `key` (UUID v5).
    pub fn for_idempotency_key(tenant: &str, task: &str, key: &str) -> RunId {
        let name = format!("{}\u{1f}{}\u{1f}{}", tenant, task, key);
        RunId(Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes()))
    }

    /// The id of the run of `task` inside the workflow run `workflow` (UUID v5 under the
    /// workflow run's id): every engine replica and the task itself compute the same one, so a
    /// workflow's task runs are created once however many engines advance it.
    pub fn in_workflow(workflow: RunId, task: &str) -> RunId {
        RunId(Uuid::new_v5(&workflow.0, task.as_bytes()))
    }
}

impl Default for RunId {
    fn default() -> Self {
        RunId::new()
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for RunId {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<RunId, crate::Error> {
        Uuid::parse_str(s.trim()).map(RunId).map_err(|_| {
            crate::Error::invalid_input("run_id", format!("{s:?} is not a run id (a UUID)"))
        })
    }
}

/// Where a run is in its life cycle.
///
/// ```text
/// scheduled ──(due)──► queued ──(claimed)──► running ──► succeeded | failed | cancelled
///     │ cancel            │ cancel                 └─ error with attempts left ──► scheduled
///     ▼                   ▼
/// cancelled           cancelled
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Waiting for its `run_at` (a delay, a retry backoff or a durable sleep).
    Scheduled,
    /// Ready; waiting for a worker slot.
    Queued,
    /// Claimed by a worker, which holds a lease on it.
    Running,
    /// Finished with an output. Terminal.
    Succeeded,
    /// Finished with an error and no attempt left. Terminal.
    Failed,
    /// Cancelled. Terminal.
    Cancelled,
}

impl RunStatus {
    /// All statuses, in life-cycle order.
    pub const ALL: [RunStatus; 6] = [
        RunStatus::Scheduled,
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ];

    /// The lowercase name used in JSON, the CLI and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Scheduled => "scheduled",
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// `succeeded`, `failed` and `cancelled` are terminal.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
        )
    }

    /// Whether the life cycle allows going from `self` to `to` without an explicit `retry`.
    pub fn can_transition_to(self, to: RunStatus) -> bool {
        use RunStatus::*;
        matches!(
            (self, to),
            (Scheduled, Queued)
                | (Scheduled, Cancelled)
                | (Queued, Running)
                | (Queued, Cancelled)
                | (Running, Succeeded)
                | (Running, Failed)
                | (Running, Cancelled)
                | (Running, Scheduled)
                | (Running, Queued)
        )
    }

    /// Whether `cancel` is allowed.
    pub fn can_cancel(self) -> bool {
        !self.is_terminal()
    }

    /// Whether the explicit `retry` command is allowed: only from `failed` or `cancelled`.
    pub fn can_retry(self) -> bool {
        matches!(self, RunStatus::Failed | RunStatus::Cancelled)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<RunStatus, crate::Error> {
        RunStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s.trim())
            .ok_or_else(|| {
                crate::Error::invalid_input(
                    "status",
                    format!(
                        "unknown status {s:?}; expected one of scheduled, queued, running, succeeded, failed, cancelled"
                    ),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states_have_no_way_out() {
        for from in RunStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in RunStatus::ALL {
                assert!(!from.can_transition_to(to), "{from} -> {to}");
            }
            assert!(!from.can_cancel());
        }
        assert!(RunStatus::Failed.can_retry());
        assert!(RunStatus::Cancelled.can_retry());
        assert!(!RunStatus::Succeeded.can_retry());
        assert!(!RunStatus::Running.can_retry());
    }

    #[test]
    fn idempotency_ids_are_deterministic_and_scoped() {
        let a = RunId::for_idempotency_key("t", "send", "k1");
        assert_eq!(a, RunId::for_idempotency_key("t", "send", "k1"));
        assert_ne!(a, RunId::for_idempotency_key("t2", "send", "k1"));
        assert_ne!(a, RunId::for_idempotency_key("t", "other", "k1"));
        let parsed: RunId = a.to_string().parse().unwrap();
        assert_eq!(parsed, a);
        assert!("nope".parse::<RunId>().is_err());
        assert_eq!("running".parse::<RunStatus>().unwrap(), RunStatus::Running);
        assert!("done".parse::<RunStatus>().is_err());
    }
}
