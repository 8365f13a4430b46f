//! The OwlClaw Tasks quickstart, in lite mode (embedded engine on SQLite, no server).
//!
//! Shows: scheduling now and after a delay, a task that fails once and succeeds on retry, a task
//! that times out, a cancelled run, a self-scheduling task and a cron task; prints each run's final
//! status and exits 0.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! In server mode, against an `owlclaw serve` engine (see the README's "Server mode"):
//!
//! ```text
//! OWLCLAW_MODE=server OWLCLAW_SERVER_URL=http://127.0.0.1:7070 OWLCLAW_API_TOKEN=owc_... \
//!     cargo run --example quickstart
//! ```
//!
//! It stores runs in `.owlclaw/quickstart.db` (inspect them with
//! `cargo run -p owlclaw-cli -- --database sqlite://.owlclaw/quickstart.db list`). Set
//! `RUST_LOG=owlclaw=debug` for more detail.

use owlclaw::{task, Client, Config, Context, Mode, RunStatus};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

#[derive(Debug, Serialize, Deserialize)]
struct Email {
    to: String,
    subject: String,
}

/// A task with an input and an output.
#[task(name = "send-email", retries = 3, timeout = "30s", priority = 7)]
async fn send_email(_ctx: Context, input: Email) -> anyhow::Result<String> {
    Ok(format!("sent {:?} to {}", input.subject, input.to))
}

static FLAKY_CALLS: AtomicU32 = AtomicU32::new(0);

/// Fails on its first attempt, succeeds on the retry.
#[task(retries = 2, backoff_initial = "200ms")]
async fn flaky(ctx: Context) -> anyhow::Result<u32> {
    FLAKY_CALLS.fetch_add(1, Ordering::SeqCst);
    if ctx.attempt() == 1 {
        anyhow::bail!(
            "the payment provider answered 503 (attempt {})",
            ctx.attempt()
        );
    }
    Ok(ctx.attempt())
}

/// Runs longer than its timeout: the worker stops it.
#[task(timeout = "300ms")]
async fn slow_report(_ctx: Context) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_secs(60)).await;
    Ok(())
}

/// Waits until it is cancelled.
#[task(timeout = "1m")]
async fn long_export(ctx: Context) -> anyhow::Result<()> {
    ctx.cancelled().await;
    anyhow::bail!("export interrupted")
}

/// Schedules itself again, with a delay, until the countdown reaches zero.
#[task]
async fn countdown(ctx: Context, n: u32) -> anyhow::Result<u32> {
    if n > 0 {
        countdown::schedule(&ctx, n - 1, Duration::from_millis(100)).await?;
    }
    Ok(n)
}

/// Fires every second (a 6-field cron expression, seconds first).
#[task(cron = "* * * * * *")]
async fn heartbeat_report(_ctx: Context) -> anyhow::Result<String> {
    Ok("all systems nominal".to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "owlclaw=warn".into()),
        )
        .init();

    // Lite mode by default; `OWLCLAW_MODE=server OWLCLAW_SERVER_URL=... OWLCLAW_API_TOKEN=...`
    // runs the very same program against an engine server.
    let mut config = Config::from_env()?;
    if config.mode == Mode::Lite && std::env::var_os("OWLCLAW_DATABASE_URL").is_none() {
        config.database_url = "sqlite://.owlclaw/quickstart.db".into();
    }
    println!("mode: {}", config.mode);
    let client = Client::connect(config).await?;
    let worker = client.worker("quickstart").slots(8).start().await?;
    println!("worker {} started", worker.name());

    // 1. Now, typed input and output.
    let email = send_email::enqueue(
        &client,
        Email {
            to: "ada@example.com".into(),
            subject: "Welcome".into(),
        },
    )
    .await?;
    // 2. After a delay.
    let delayed = send_email::schedule(
        &client,
        Email {
            to: "grace@example.com".into(),
            subject: "Reminder".into(),
        },
        Duration::from_millis(500),
    )
    .await?;
    // 3. Fails once, succeeds on retry.
    let retried = flaky::enqueue(&client).await?;
    // 4. Times out.
    let timed_out = slow_report::enqueue(&client).await?;
    // 5. Cancelled while running.
    let cancelled = long_export::enqueue(&client).await?;
    // 6. Self-scheduling.
    let chain = countdown::enqueue(&client, 3).await?;

    println!("send-email            -> {}", email.result().await?);
    println!("send-email (delayed)  -> {}", delayed.result().await?);
    println!(
        "flaky                 -> succeeded on attempt {}",
        retried.result().await?
    );
    match timed_out.result().await {
        Err(owlclaw::Error::Task { message, .. }) => {
            println!("slow_report           -> failed: {message}")
        }
        other => anyhow::bail!("slow_report should have timed out, got {other:?}"),
    }
    while cancelled.status().await? != RunStatus::Running {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cancelled.cancel().await?;
    match cancelled.result().await {
        Err(owlclaw::Error::Cancelled { .. }) => println!("long_export           -> cancelled"),
        other => anyhow::bail!("long_export should be cancelled, got {other:?}"),
    }
    println!(
        "countdown             -> started at {}",
        chain.result().await?
    );

    // The cron task fires every second; wait for its first tick.
    let cron_run = loop {
        let page = client
            .list(owlclaw::ListFilter {
                task: Some("heartbeat_report".into()),
                ..Default::default()
            })
            .await?;
        if let Some(run) = page
            .runs
            .into_iter()
            .find(|r| r.status == RunStatus::Succeeded)
        {
            break run;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "heartbeat_report      -> cron tick ran: {}",
        cron_run.output.unwrap_or_default()
    );

    // Every run of the chain, found through its parent links.
    let countdowns = client
        .list(owlclaw::ListFilter {
            task: Some("countdown".into()),
            limit: Some(100),
            ..Default::default()
        })
        .await?;
    let mut link = Some(chain.id());
    while let Some(id) = link {
        let run = client.status(id).await?;
        println!(
            "  countdown({}) run {} -> {}",
            run.input, run.id, run.status
        );
        link = countdowns
            .runs
            .iter()
            .find(|r| r.parent_id == Some(id))
            .map(|r| r.id);
    }

    println!();
    println!("final statuses:");
    for (label, id) in [
        ("send-email", email.id()),
        ("send-email (delayed)", delayed.id()),
        ("flaky", retried.id()),
        ("slow_report", timed_out.id()),
        ("long_export", cancelled.id()),
        ("countdown", chain.id()),
        ("heartbeat_report", cron_run.id),
    ] {
        let snap = client.status(id).await?;
        println!(
            "  {label:<22} {:<10} attempts {}/{}",
            snap.status.as_str(),
            snap.attempt,
            snap.max_attempts
        );
    }

    worker.shutdown().await?;
    // The demo cron fires every second; remove its schedule so an engine server doesn't keep
    // firing it after the demo (a worker serving the task registers it again when it starts).
    client.delete_cron("task:heartbeat_report").await?;
    client.disconnect().await?;
    Ok(())
}
