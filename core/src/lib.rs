//! The domain of OwlClaw Tasks, free of I/O: run ids and statuses with their legal transitions,
//! task definitions, duration/cron/time-zone parsing, retry policy, the wire types shared by the
//! embedded and HTTP connections, the [`Orchestrator`] trait both implement, and the one error type.
//!
//! Application code does not depend on this crate directly: the `owlclaw` crate re-exports what
//! users need.

pub mod cron;
pub mod duration;
mod error;
mod orchestrator;
pub mod retry;
mod status;
pub mod task;
pub mod wire;

pub use error::{Error, Result};
pub use orchestrator::Orchestrator;
pub use status::{RunId, RunStatus};
