// Tasks shared by the test binaries and the child worker process (included with #[path]).

use owlclaw::{task, Context};
use std::time::Duration;

/// Hangs when the process has OWLCLAW_TEST_HANG set (the worker that gets killed); otherwise
/// returns at once with the attempt that ran it.
#[task(retries = 2, timeout = "2m")]
pub(crate) async fn blocker(ctx: Context, key: String) -> anyhow::Result<String> {
    if std::env::var_os("OWLCLAW_TEST_HANG").is_some() {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    Ok(format!("{key} done on attempt {}", ctx.attempt()))
}

/// Fires every second.
#[task(cron = "* * * * * *")]
pub(crate) async fn every_second(_ctx: Context) -> anyhow::Result<()> {
    Ok(())
}

/// A durable sleep of `ms` after a first step; returns when the sleep is over.
#[task(retries = 2, timeout = "2m")]
pub(crate) async fn durable_nap(ctx: Context, ms: u64) -> anyhow::Result<String> {
    ctx.step("before", || async { anyhow::Ok(()) }).await?;
    ctx.sleep_for(Duration::from_millis(ms)).await?;
    Ok(format!("woke on attempt {}", ctx.attempt()))
}

/// A first step, then a durable wait for `signal.sent` of its order (2 minutes at most); returns
/// the first step's output (the process that ran it) and the id of the event it got.
#[task(retries = 2, timeout = "2m")]
pub(crate) async fn awaits_signal(ctx: Context, order: u64) -> anyhow::Result<String> {
    let first: String = ctx
        .step("before", || async {
            anyhow::Ok(format!("pid {}", std::process::id()))
        })
        .await?;
    let filter = serde_json::json!({ "order": order });
    let event = ctx
        .wait_for_event("signal.sent", filter, Duration::from_secs(120))
        .await?;
    Ok(format!(
        "{first}; got {}",
        event.map(|e| e.id).unwrap_or_else(|| "nothing".into())
    ))
}
