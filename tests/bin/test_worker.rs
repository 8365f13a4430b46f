//! A worker in its own process, for the crash-recovery and multi-process cron tests.
//!
//! Usage: `owlclaw-test-worker TARGET WORKER_NAME TASK...` — TARGET is a `sqlite://` database
//! (lite mode) or an `http://` engine server (server mode, token in `OWLCLAW_TEST_TOKEN`). Serves
//! the named tasks of `common/tasks.rs`, prints `ready` once registered, and runs until
//! SIGTERM/SIGINT (or SIGKILL).

#[allow(dead_code)]
#[path = "../common/tasks.rs"]
mod tasks;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    owlclaw_tests::init_tracing();
    let mut args = std::env::args().skip(1);
    let target = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: TARGET NAME TASK..."))?;
    let name = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("missing worker name"))?;
    let token = std::env::var("OWLCLAW_TEST_TOKEN").ok();
    let config = owlclaw_tests::config_for(&target, token.as_deref());
    let client = owlclaw::Client::connect(config).await?;
    let mut builder = client.worker(name);
    for task in args {
        builder = builder.task_named(task);
    }
    let worker = builder.start().await?;
    println!("ready {}", worker.id());
    worker.shutdown_on_signal().await?;
    Ok(())
}
