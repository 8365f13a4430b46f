//! A worker in its own process that exports its spans by OTLP, for the OpenTelemetry test
//! (`tests/otel.rs`, which includes this file for the tasks' typed handles).
//!
//! Usage: `owlclaw-otel-probe DATABASE_URL`, with the `OTEL_*` variables naming the collector.
//! Serves the tasks below in lite mode on that database, prints `ready` once registered, and
//! stops when its stdin closes: it shuts the worker down, then exports its last spans and exits.

use owlclaw::{task, Context};

/// Two durable steps.
#[task(name = "otel-two-steps")]
pub(crate) async fn two_steps(ctx: Context, order: String) -> anyhow::Result<String> {
    let fetched: String = ctx
        .step("fetch", || async { anyhow::Ok(format!("{order} fetched")) })
        .await?;
    let stored: String = ctx
        .step("store", || async move {
            anyhow::Ok(format!("{fetched}, stored"))
        })
        .await?;
    Ok(stored)
}

/// Fails its first attempt, succeeds on the second.
#[task(
    name = "otel-flaky",
    retries = 1,
    backoff_initial = "10ms",
    backoff_max = "20ms"
)]
pub(crate) async fn flaky(ctx: Context) -> anyhow::Result<u32> {
    if ctx.attempt() == 1 {
        anyhow::bail!("the first attempt fails");
    }
    Ok(ctx.attempt())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let otel = owlclaw::otel::init()?;
    let url = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: owlclaw-otel-probe DATABASE_URL"))?;
    let client = owlclaw::Client::connect(owlclaw_tests::test_config(&url)).await?;
    let worker = client.worker("otel-probe").start().await?;
    println!("ready {}", worker.id());
    // Until the test closes stdin.
    tokio::task::spawn_blocking(|| {
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new())
    })
    .await??;
    worker.shutdown().await?;
    client.disconnect().await?;
    drop(otel); // exports the spans not sent yet
    Ok(())
}
