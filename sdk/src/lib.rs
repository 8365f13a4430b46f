//! # OwlClaw Tasks
//!
//! Durable task orchestration for Rust. Annotate async functions with [`#[task]`](macro@task),
//! start a [`Worker`] from `main`, and schedule, cancel, list and inspect runs through a
//! [`Client`]. Runs survive crashes and restarts: they live in a database (SQLite in lite mode,
//! embedded in your process; an `owlclaw serve` engine server in server mode).
//!
//! ```no_run
//! use owlclaw::{task, Client, Context};
//! use std::time::Duration;
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Email { to: String }
//!
//! #[task(name = "send-email", retries = 3, timeout = "30s", priority = 7)]
//! async fn send_email(_ctx: Context, input: Email) -> anyhow::Result<String> {
//!     Ok(format!("sent to {}", input.to))
//! }
//!
//! #[tokio::main]
//! async fn main() -> owlclaw::Result<()> {
//!     let client = Client::lite().await?;
//!     let worker = client.worker("mailer").start().await?;
//!     let run = send_email::schedule(&client, Email { to: "a@b.c".into() }, Duration::from_secs(1)).await?;
//!     println!("{}", run.result().await?);
//!     worker.shutdown().await?;
//!     Ok(())
//! }
//! ```

mod backoff;
mod client;
pub mod config;
mod context;
#[cfg(feature = "server")]
mod http;
mod task;
mod worker;

pub use chrono::{DateTime, Utc};
pub use client::{Client, RunHandle, ScheduleBuilder, Scheduler};
pub use config::{Config, Mode, Secret, WorkerConfig};
pub use context::Context;
pub use owlclaw_core::wire::{
    AttemptError, CronRequest, CronSchedule, ListFilter, RunEvent, RunPage, RunSnapshot,
    ScheduleRequest, Scheduled, StepSnapshot, StepStatus, WorkerInfo,
};
pub use owlclaw_core::{Error, Orchestrator, Result, RunId, RunStatus};
pub use owlclaw_macros::task;
pub use task::{Task, TaskFailure, TaskSpec};
pub use worker::{Worker, WorkerBuilder};

#[doc(hidden)]
pub use task::__private;
