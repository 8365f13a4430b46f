//! A worker in its own process, for the crash-recovery and multi-process cron tests.
//!
//! Usage: `owlclaw-test-worker DATABASE_URL WORKER_NAME TASK...` — serves the named tasks of
//! `common/tasks.rs`, prints `ready` once registered, and runs until SIGTERM/SIGINT (or SIGKILL).

#[allow(dead_code)]
#[path = "../common/tasks.rs"]
mod tasks;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    owlclaw_tests::init_tracing();
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: DATABASE_URL NAME TASK..."))?;
    let name = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("missing worker name"))?;
    let client = owlclaw::Client::connect(owlclaw_tests::test_config(&url)).await?;
    let mut builder = client.worker(name);
    for task in args {
        builder = builder.task_named(task);
    }
    let worker = builder.start().await?;
    println!("ready {}", worker.id());
    worker.shutdown_on_signal().await?;
    Ok(())
}
