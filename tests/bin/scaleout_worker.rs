//! A worker process of the scale-out tests.
//!
//! Usage: `owlclaw-scaleout-worker TARGET NAME SLOTS TASK...` — TARGET is one engine server URL or
//! a comma-separated list of replicas (`http://a,http://b`: requests that can't connect fail over
//! to the next), token in `OWLCLAW_TEST_TOKEN`; serves the named tasks of
//! `common/scaleout_tasks.rs` with SLOTS slots, logging every execution to the file named by
//! `OWLCLAW_SCALEOUT_LOG`. Prints `ready WORKER_ID` once registered and runs until SIGTERM/SIGINT
//! (or SIGKILL). Logs go to stderr when `RUST_LOG` is set.

#[allow(dead_code)]
#[path = "../common/scaleout_tasks.rs"]
mod scaleout_tasks;

use std::io::Write;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let usage = "usage: owlclaw-scaleout-worker TARGET NAME SLOTS TASK...";
    let mut args = std::env::args().skip(1);
    let target = args.next().ok_or_else(|| anyhow::anyhow!(usage))?;
    let name = args.next().ok_or_else(|| anyhow::anyhow!(usage))?;
    let slots: u32 = args.next().ok_or_else(|| anyhow::anyhow!(usage))?.parse()?;
    anyhow::ensure!(
        std::env::var_os(scaleout_tasks::LOG_ENV).is_some(),
        "{} must name the execution log",
        scaleout_tasks::LOG_ENV
    );
    let token = std::env::var("OWLCLAW_TEST_TOKEN").ok();
    let mut config = owlclaw_tests::config_for(&target, token.as_deref());
    config.worker.slots = slots;
    let client = owlclaw::Client::connect(config).await?;
    let mut builder = client.worker(name);
    for task in args {
        builder = builder.task_named(task);
    }
    let worker = builder.start().await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready {}", worker.id())?;
        out.flush()?;
    }
    worker.shutdown_on_signal().await?;
    Ok(())
}
