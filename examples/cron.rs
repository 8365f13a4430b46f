//! Cron tasks: schedules declared with `#[task(cron = ...)]`, in a time zone, plus one created at
//! run time through the client.
//!
//! Each tick enqueues exactly one run, however many workers or processes run the same binary on
//! the same database (the tick's run id is derived from the schedule and the tick).
//!
//! Run it with:
//!
//! ```text
//! cargo run --example cron
//! ```
//!
//! It runs for about five seconds, then prints the runs each schedule produced.

use owlclaw::{task, Client, Config, Context, CronRequest, ListFilter};
use std::time::Duration;

/// Every two seconds (6 fields: seconds first).
#[task(cron = "*/2 * * * * *")]
async fn sync_inventory(ctx: Context) -> anyhow::Result<String> {
    Ok(format!("inventory synced by run {}", ctx.run_id()))
}

/// Every day at 09:30 in Paris; daylight saving time is handled by the time zone database.
#[task(cron = "30 9 * * *", timezone = "Europe/Paris")]
async fn morning_digest(_ctx: Context) -> anyhow::Result<()> {
    Ok(())
}

/// Hourly, with a shorthand.
#[task(cron = "@hourly")]
async fn rotate_logs(_ctx: Context) -> anyhow::Result<()> {
    Ok(())
}

/// Scheduled at run time below, with an input.
#[task]
async fn ping(_ctx: Context, target: String) -> anyhow::Result<String> {
    Ok(format!("pinged {target}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("owlclaw-cron-example-{}", std::process::id()));
    let mut config = Config::lite();
    config.database_url = format!("sqlite://{}/owlclaw.db", dir.display());
    let client = Client::connect(config).await?;
    let worker = client.worker("cron-example").start().await?;

    let dynamic = client
        .create_cron(CronRequest {
            task: "ping".into(),
            expr: "* * * * * *".into(),
            input: serde_json::json!("db.internal"),
            ..CronRequest::default()
        })
        .await?;

    println!("schedules:");
    for cron in client.crons().await? {
        println!(
            "  {:<22} {:<16} {:<14} next tick {}",
            cron.id,
            cron.expr,
            cron.timezone,
            cron.next_tick.map(|t| t.to_rfc3339()).unwrap_or_default()
        );
    }

    tokio::time::sleep(Duration::from_secs(5)).await;
    client.delete_cron(&dynamic.id).await?;
    worker.shutdown().await?;

    for task in ["sync_inventory", "ping"] {
        let runs = client
            .list(ListFilter {
                task: Some(task.into()),
                ..Default::default()
            })
            .await?
            .runs;
        println!("{task}: {} runs", runs.len());
        for run in runs.iter().rev() {
            println!(
                "  due {}  {:<9} {}",
                run.run_at.format("%H:%M:%S"),
                run.status.as_str(),
                run.output
                    .as_ref()
                    .map(|o| o.to_string())
                    .unwrap_or_default()
            );
        }
    }
    client.disconnect().await?;
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
