//! Fair queues, in lite mode: a report task limited to 2 runs at once per customer. A big
//! customer queues 200 reports, then a small one queues 3: the small customer's reports start
//! among the first, because the keys take turns, and no customer ever has more than 2 running.
//! Then a rate limit: 60 notifications through a mailer that takes 20 a second start over about
//! two seconds (a burst of 20, then 20 a second), none failing.
//!
//! ```text
//! cargo run --example fair_queues
//! ```
//!
//! The runs are kept in `.owlclaw/fair_queues.db`.

use owlclaw::{task, Client, Config, Context, Mode};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Report {
    customer: String,
    n: u32,
}

/// Per customer: how many reports run now, the most at once, and the start order of all.
#[derive(Default)]
struct Seen {
    running: HashMap<String, u32>,
    most: HashMap<String, u32>,
    started: Vec<String>,
}

fn seen() -> &'static Mutex<Seen> {
    static SEEN: OnceLock<Mutex<Seen>> = OnceLock::new();
    SEEN.get_or_init(Default::default)
}

/// At most 2 reports of one customer at once, whatever the worker's slots.
#[task(concurrency = 2, concurrency_key = "customer", retries = 2)]
async fn build_report(_ctx: Context, report: Report) -> anyhow::Result<String> {
    {
        let mut s = seen().lock().unwrap();
        let now = s.running.entry(report.customer.clone()).or_default();
        *now += 1;
        let now = *now;
        let most = s.most.entry(report.customer.clone()).or_default();
        *most = (*most).max(now);
        s.started.push(report.customer.clone());
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    *seen()
        .lock()
        .unwrap()
        .running
        .get_mut(&report.customer)
        .unwrap() -= 1;
    Ok(format!("report {} of {}", report.n, report.customer))
}

/// Sends through a mailer that takes 20 messages a second (the rate limit `mailer`, declared on
/// the worker below).
#[task(rate_limit = "mailer")]
async fn notify(_ctx: Context, report: Report) -> anyhow::Result<()> {
    let _ = report;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "owlclaw=warn".into()),
        )
        .init();
    let mut config = Config::from_env()?;
    if config.mode == Mode::Lite && std::env::var_os("OWLCLAW_DATABASE_URL").is_none() {
        config.database_url = "sqlite://.owlclaw/fair_queues.db".into();
    }
    let client = Client::connect(config).await?;
    let report = |customer: &str, n| Report {
        customer: customer.into(),
        n,
    };
    let mut runs = client
        .enqueue_bulk::<build_report>((0..200).map(|n| report("big-corp", n)))
        .await?;
    runs.extend(
        client
            .enqueue_bulk::<build_report>((0..3).map(|n| report("small-shop", n)))
            .await?,
    );
    println!("queued 200 reports of big-corp, then 3 of small-shop");
    // Eight slots: without the limit, big-corp's reports would take all of them first.
    let worker = client
        .worker("fair-queues-example")
        .task::<build_report>()
        .task::<notify>()
        .rate_limit("mailer", 20, Duration::from_secs(1))
        .slots(8)
        .start()
        .await?;
    for run in &runs {
        run.result_timeout(Duration::from_secs(60)).await?;
    }
    let (first_small, started, most) = {
        let s = seen().lock().unwrap();
        let first = s.started.iter().position(|c| c == "small-shop");
        (first, s.started.len(), s.most.clone())
    };
    println!(
        "small-shop's first report started as report #{} of {started}",
        first_small.map_or(0, |i| i + 1),
    );
    for customer in ["big-corp", "small-shop"] {
        println!(
            "{customer:<10} most reports at once: {} (limit 2)",
            most.get(customer).copied().unwrap_or(0)
        );
    }
    anyhow::ensure!(first_small.is_some_and(|i| i < 4), "small-shop waited");
    anyhow::ensure!(most.values().all(|m| *m <= 2), "a limit was exceeded");

    let notes = client
        .enqueue_bulk::<notify>((0..60).map(|n| report("big-corp", n)))
        .await?;
    let mut starts = Vec::new();
    for run in &notes {
        run.result_timeout(Duration::from_secs(60)).await?;
        starts.extend(run.snapshot().await?.started_at);
    }
    starts.sort();
    let span = (starts[59] - starts[0]).num_milliseconds() as f64 / 1000.0;
    println!("60 notifications at 20 a second started over {span:.1} s");
    anyhow::ensure!(span >= 1.8, "the rate limit was not kept");
    worker.shutdown().await?;
    client.disconnect().await?;
    Ok(())
}
