//! A long-running worker: the process a deployment runs beside its engine servers (it is the
//! `worker` service of the repository's `docker-compose.yml`).
//!
//! Shows: a worker configured by the environment alone (`Client::from_env`), serving every
//! `#[task]` of its binary until SIGINT or SIGTERM, then shutting down gracefully (in-flight runs
//! finish within `worker.shutdown_grace`, the rest are handed back); a task with retries that
//! fails on its first attempt for some inputs; a cron task that fires every minute, exactly once
//! per tick however many copies of this worker run.
//!
//! Run it in lite mode (embedded engine on `.owlclaw/owlclaw.db`; stop it with Ctrl-C):
//!
//! ```text
//! cargo run --example worker
//! ```
//!
//! or against engine servers (several URLs: the client fails over between replicas):
//!
//! ```text
//! OWLCLAW_MODE=server OWLCLAW_SERVER_URL=http://127.0.0.1:7070,http://127.0.0.1:7071 \
//!     OWLCLAW_API_TOKEN=owc_... cargo run --example worker
//! ```
//!
//! Then give it work from another shell (add `--server URL --token T` in server mode):
//!
//! ```text
//! cargo run -p owlclaw-cli -- submit send-email \
//!     --input '{"to":"ada@example.com","subject":"Welcome"}' --wait
//! ```
//!
//! An address at `flaky.example` fails its first attempt and succeeds on the retry. Logs go to
//! stderr; `RUST_LOG` sets their level (default `owlclaw=info`).

use owlclaw::{task, Client, Context};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Serialize, Deserialize)]
struct Email {
    to: String,
    subject: String,
}

/// Sends an email (simulated): retried up to three times with exponential backoff.
#[task(
    name = "send-email",
    retries = 3,
    timeout = "30s",
    backoff_initial = "2s"
)]
async fn send_email(ctx: Context, email: Email) -> anyhow::Result<String> {
    // Stands in for a call to a mail provider.
    tokio::time::sleep(Duration::from_millis(200)).await;
    if email.to.ends_with("@flaky.example") && ctx.attempt() == 1 {
        anyhow::bail!("the mail provider answered 503 (attempt {})", ctx.attempt());
    }
    println!(
        "send-email: sent {:?} to {} (run {}, attempt {})",
        email.subject,
        email.to,
        ctx.run_id(),
        ctx.attempt()
    );
    Ok(format!("sent {:?} to {}", email.subject, email.to))
}

/// Fires at the start of every minute (UTC).
#[task(name = "heartbeat", cron = "* * * * *")]
async fn heartbeat(ctx: Context) -> anyhow::Result<String> {
    println!("heartbeat: run {}", ctx.run_id());
    Ok("alive".to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "owlclaw=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();

    // OWLCLAW_MODE, OWLCLAW_SERVER_URL, OWLCLAW_API_TOKEN, OWLCLAW_WORKER_SLOTS, ...
    let client = Client::from_env().await?;
    let worker = client.worker("example-worker").start().await?;
    println!(
        "worker {} ({}) serving send-email and heartbeat in {} mode; Ctrl-C or SIGTERM stops it",
        worker.name(),
        worker.id(),
        client.config().mode
    );
    worker.shutdown_on_signal().await?;
    client.disconnect().await?;
    println!("worker stopped");
    Ok(())
}
