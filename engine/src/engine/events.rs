//! Pushed events: stored once per id, each starting one run of every task subscribed to its key.

use super::runs::check_short_text;
use super::Engine;
use crate::limits;
use crate::store::NewEvent;
use chrono::SubsecRound;
use owlclaw_core::task as taskdef;
use owlclaw_core::wire::*;
use owlclaw_core::{Error, Result, RunId};

impl Engine {
    /// Stores `event` for `tenant`, starts a run of each task whose `on_event` is its key and
    /// ends the durable waits it matches, all in one transaction. A second push of the same id
    /// stores and starts nothing.
    pub async fn push_event(&self, tenant: &str, event: PushEvent) -> Result<PushedEvent> {
        taskdef::validate_event_key(&event.key).map_err(|e| Error::invalid_input("key", e))?;
        let len = serde_json::to_string(&event.payload).map_or(0, |s| s.len());
        if len > limits::MAX_INPUT_BYTES {
            return Err(Error::invalid_input(
                "payload",
                format!(
                    "{len} bytes of JSON; at most {} (the payload is the input of the runs it starts)",
                    limits::MAX_INPUT_BYTES
                ),
            ));
        }
        limits::check_json("payload", &event.payload)?;
        check_short_text("id", event.id.as_deref())?;
        check_short_text("owner", event.owner.as_deref())?;
        let id = event
            .id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let now = self.now().trunc_subsecs(6);
        let subscribers = self.inner.store.subscribers(tenant, &event.key).await?;
        let mut runs = Vec::with_capacity(subscribers.len());
        for def in subscribers {
            let req = ScheduleRequest {
                task: def.name.clone(),
                input: event.payload.clone(),
                owner: event.owner.clone(),
                ..ScheduleRequest::default()
            };
            let mut run = self.resolve(tenant, req, now).await?;
            // One run per (event, task), whichever replica the push reaches and however often.
            run.id = RunId::for_idempotency_key(tenant, &def.name, &format!("event:{id}"));
            run.reason = format!("event {} ({id})", event.key);
            runs.push(run);
        }
        let pushed = self
            .inner
            .store
            .push_event(
                NewEvent {
                    tenant: tenant.to_string(),
                    id,
                    key: event.key,
                    payload: event.payload,
                    runs,
                },
                now,
            )
            .await?;
        if pushed.created && !pushed.runs.is_empty() {
            self.inner
                .metrics
                .scheduled
                .inc_by(pushed.runs.len() as u64);
        }
        if pushed.created && !(pushed.runs.is_empty() && pushed.resumed.is_empty()) {
            self.inner.work.notify_waiters();
        }
        tracing::debug!(key = %pushed.key, id = %pushed.id, runs = pushed.runs.len(), resumed = pushed.resumed.len(), created = pushed.created, "event pushed");
        Ok(pushed)
    }
}
