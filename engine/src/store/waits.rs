//! Durable event waits (`ctx.wait_for_event`), the parts both stores share; each writes them
//! with its own SQL, in the transaction of the report that parks the run or of the push that
//! ends the wait:
//!
//! - a worker reports `WaitingForEvent`: the run is parked until the wait's end, then the store
//!   looks for a stored event the wait takes ([`owlclaw_core::event`] defines which); if there is
//!   one, the event becomes the output of the wait's step and the run is queued again at once,
//!   else the wait is kept open in `event_waits`;
//! - an event is pushed: each open wait of its key whose filter it matches, of a run still
//!   parked by that wait, takes it the same way.

use super::rows::json_text;
use super::state::{Locked, Planned};
use super::{from_micros, micros};
use chrono::{DateTime, Utc};
use owlclaw_core::lifecycle::Happening;
use owlclaw_core::wire::{Completion, Outcome, ReceivedEvent};
use owlclaw_core::{Result, RunId, RunStatus};
use serde_json::Value;

/// Events read per page when looking for the one a wait takes.
pub(super) const PAGE: i64 = 256;

/// A wait a worker reported, of a run the report parked.
#[derive(Debug, Clone)]
pub(super) struct OpenWait {
    /// The run.
    pub(super) run_id: RunId,
    /// Its row.
    pub(super) seq: i64,
    /// The position of the wait's step.
    pub(super) position: u32,
    /// The key waited for.
    pub(super) key: String,
    /// The filter, as given.
    pub(super) filter: Value,
    /// The end of the wait (µs): the due time of the run's timer.
    pub(super) deadline: i64,
}

impl OpenWait {
    /// The wait reported by `c`, when it is one and `planned` (its report's change) parks the
    /// run.
    pub(super) fn of(c: &Completion, planned: &Planned) -> Option<OpenWait> {
        let Outcome::WaitingForEvent {
            position,
            key,
            filter,
            ..
        } = &c.outcome
        else {
            return None;
        };
        Some(OpenWait {
            run_id: c.run_id,
            seq: planned.seq,
            position: *position,
            key: key.clone(),
            filter: filter.clone(),
            deadline: planned.run_at(),
        })
    }

    /// The filter as stored.
    pub(super) fn filter_text(&self) -> String {
        self.filter.to_string()
    }
}

/// The columns of `pushed_events` that [`CandidateRow`] maps.
pub(super) const CANDIDATE_COLS: &str = "seq, id, key, payload, created_at";

/// A stored event a wait may take.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct CandidateRow {
    pub(super) seq: i64,
    id: String,
    key: String,
    payload: String,
    pub(super) created_at: i64,
}

impl CandidateRow {
    /// The event as the wait's step output holds it.
    pub(super) fn received(&self) -> ReceivedEvent {
        ReceivedEvent {
            id: self.id.clone(),
            key: self.key.clone(),
            payload: json_text(self.payload.clone()),
            pushed_at: from_micros(self.created_at),
        }
    }
}

/// The first of a page of events (in push order) that `filter` takes.
pub(super) fn first_match(filter: &Value, page: Vec<CandidateRow>) -> Option<CandidateRow> {
    page.into_iter()
        .find(|e| owlclaw_core::event::matches(filter, &json_text(e.payload.clone())))
}

/// An open wait of the pushed event's key.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct WaiterRow {
    pub(super) run_seq: i64,
    pub(super) position: i64,
    filter: String,
    pub(super) deadline: i64,
}

impl WaiterRow {
    /// Whether the wait takes an event with this payload.
    pub(super) fn takes(&self, payload: &Value) -> bool {
        owlclaw_core::event::matches(&json_text(self.filter.clone()), payload)
    }
}

/// The change that ends, with `event`, the wait (ending at `deadline`) of the locked run `st`:
/// `None` when the run is not parked by that wait any more (it timed out, was cancelled, or
/// went on to another timer).
pub(super) fn ended(
    st: &mut Locked,
    deadline: i64,
    event: &ReceivedEvent,
    now: DateTime<Utc>,
) -> Result<Option<Planned>> {
    if st.run.status != RunStatus::Scheduled || micros(st.run.run_at) != deadline {
        return Ok(None);
    }
    let happened = Happening::EventArrived {
        key: &event.key,
        id: &event.id,
    };
    st.plan(happened, now)
}

/// The output of a wait's step that took `event`.
pub(super) fn step_output(event: &ReceivedEvent) -> String {
    serde_json::json!({ "event": event }).to_string()
}

#[cfg(feature = "sqlite")]
sqlite_rows! {
    CandidateRow { seq, id, key, payload, created_at }
    WaiterRow { run_seq, position, filter, deadline }
}
