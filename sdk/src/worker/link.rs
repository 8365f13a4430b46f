//! The worker's link to the engine: its identity, and the exchange that carries reports, claims
//! and heartbeats.

use owlclaw_core::wire::{
    Completion, ExchangeRequest, ExchangeResponse, Outcome, WorkerRegistration,
};
use owlclaw_core::{Error, Orchestrator, Result};
use std::sync::{Arc, Mutex};

/// The worker's link to the engine, shared with the exchanges in flight.
pub(super) struct Link {
    pub(super) orch: Arc<dyn Orchestrator>,
    /// The current id; it changes when the worker registers again. Shared with the runs'
    /// contexts, which checkpoint steps under it.
    pub(super) worker_id: Arc<Mutex<String>>,
    pub(super) registration: WorkerRegistration,
    pub(super) reregister: tokio::sync::Mutex<()>,
    pub(super) name: String,
}

impl Link {
    pub(super) fn worker_id(&self) -> String {
        self.worker_id.lock().unwrap().clone()
    }

    /// One exchange; when the engine no longer knows this worker (its state was reset), registers
    /// again and reports the error so the caller retries.
    pub(super) async fn exchange(&self, req: ExchangeRequest) -> Result<ExchangeResponse> {
        let id = self.worker_id();
        let (want, wait_ms, reported) = (req.want, req.wait_ms, req.completions.len());
        let sent = std::time::Instant::now();
        let result = self.orch.exchange(&id, req).await;
        tracing::debug!(
            worker = %self.name,
            want,
            wait_ms,
            reported,
            claimed = result.as_ref().map_or(0, |r| r.assignments.len()),
            ok = result.is_ok(),
            took_ms = sent.elapsed().as_secs_f64() * 1e3,
            "exchange"
        );
        if let Err(Error::NotFound { what: "worker", .. }) = &result {
            let _guard = self.reregister.lock().await;
            if self.worker_id() == id {
                tracing::warn!(worker = %self.name, "the engine does not know this worker any more; registering again");
                let session = self.orch.register_worker(self.registration.clone()).await?;
                *self.worker_id.lock().unwrap() = session.worker_id;
            }
        }
        result
    }

    /// Reports completions one per exchange. A completion the engine refuses on its own is
    /// reported instead as a failure that says so (not retried: its result can't be stored);
    /// if even that is refused, it is dropped (its lease expires). Returns the completions to
    /// report again later (the engine could not be reached).
    pub(super) async fn report_singly(&self, completions: Vec<Completion>) -> Vec<Completion> {
        let mut again = Vec::new();
        for c in completions {
            let one = |c: Completion| ExchangeRequest {
                completions: vec![c],
                ..ExchangeRequest::default()
            };
            match self.exchange(one(c.clone())).await {
                Ok(_) => {}
                Err(refused @ Error::InvalidInput { .. }) => {
                    tracing::error!(run_id = %c.run_id, error = %refused, "the engine refused this run's report; reporting it as failed");
                    let failed = Completion {
                        outcome: Outcome::Failed {
                            error: format!(
                                "the engine refused the report of this attempt, so its result could not be stored: {refused}"
                            ),
                            retryable: false,
                        },
                        ..c
                    };
                    let run_id = failed.run_id;
                    match self.exchange(one(failed.clone())).await {
                        Ok(_) => {}
                        Err(e @ Error::InvalidInput { .. }) => {
                            tracing::error!(%run_id, error = %e, "the engine refused the failure report too; the run's lease will expire")
                        }
                        Err(_) => again.push(failed),
                    }
                }
                Err(_) => again.push(c),
            }
        }
        again
    }
}
