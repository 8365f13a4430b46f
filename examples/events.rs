//! Events, in lite mode: three tasks subscribe to `order.paid`; one push starts a run of each,
//! and pushing the same event id again starts nothing. One of them, `ship`, then waits durably
//! for `order.packed` of its own order (its worker slot is free meanwhile): the packing event
//! of another order does not end its wait, the one of its order does.
//!
//! ```text
//! cargo run --example events
//! ```
//!
//! The events and runs are kept in `.owlclaw/events.db`. The same push from a shell:
//! `cargo run -p owlclaw-cli -- --database sqlite://.owlclaw/events.db event push order.paid
//! --data '{"order": 1002, "email": "ada@example.com", "items": 1}'` (it starts runs when a
//! worker of this example has registered the tasks in that database).

use owlclaw::{task, Client, Config, Context, Mode, RunStatus};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The payload of `order.paid`, and the input of its subscribers.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OrderPaid {
    order: u64,
    email: String,
    items: u32,
}

#[task(on_event = "order.paid", retries = 3)]
async fn send_receipt(_ctx: Context, paid: OrderPaid) -> anyhow::Result<String> {
    Ok(format!(
        "receipt for order {} sent to {}",
        paid.order, paid.email
    ))
}

#[task(on_event = "order.paid", retries = 3)]
async fn reserve_stock(_ctx: Context, paid: OrderPaid) -> anyhow::Result<String> {
    Ok(format!(
        "{} item(s) reserved for order {}",
        paid.items, paid.order
    ))
}

/// The payload of `order.packed`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OrderPacked {
    order: u64,
    boxes: u32,
}

#[task(on_event = "order.paid", retries = 3)]
async fn ship(ctx: Context, paid: OrderPaid) -> anyhow::Result<String> {
    // Durable: survives restarts, takes a packing event pushed since this run was created.
    let filter = serde_json::json!({ "order": paid.order });
    let packed = ctx
        .wait_for_event("order.packed", filter, Duration::from_secs(3600))
        .await?;
    Ok(match packed {
        Some(event) => {
            let packed: OrderPacked = serde_json::from_value(event.payload)?;
            format!("order {} shipped in {} box(es)", packed.order, packed.boxes)
        }
        None => format!("order {} not packed within an hour", paid.order),
    })
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
        config.database_url = "sqlite://.owlclaw/events.db".into();
    }
    let client = Client::connect(config).await?;
    // Starting the worker registers the subscribers: events pushed from now on start their runs.
    let worker = client.worker("events-example").start().await?;

    let paid = OrderPaid {
        order: 1001,
        email: "ada@example.com".into(),
        items: 2,
    };
    // A fresh id per execution of the example; an application would use its own (the order's
    // payment id), so that a repeated webhook starts nothing twice.
    let id = format!("payment-{}", owlclaw::RunId::new());
    let pushed = client.push_event_with_id(&id, "order.paid", &paid).await?;
    println!(
        "event {} ({}) started {} runs",
        pushed.id,
        pushed.key,
        pushed.runs.len()
    );
    // The warehouse packs another order, then this one.
    for (order, boxes) in [(999, 1), (1001, 2)] {
        let packed = OrderPacked { order, boxes };
        let id = format!("packed-{order}-{}", owlclaw::RunId::new());
        client
            .push_event_with_id(&id, "order.packed", &packed)
            .await?;
    }
    for run in &pushed.runs {
        let done = client.wait(*run, Duration::from_secs(30)).await?;
        if done.status != RunStatus::Succeeded {
            anyhow::bail!("run {run} of {} ended {}", done.task, done.status);
        }
        let output = done.output.unwrap_or_default();
        println!(
            "{:<14} -> {}",
            done.task,
            output.as_str().unwrap_or_default()
        );
    }
    let again = client.push_event_with_id(&id, "order.paid", &paid).await?;
    println!(
        "pushed {} again: created={}, the same {} runs, nothing new",
        again.id,
        again.created,
        again.runs.len()
    );
    anyhow::ensure!(!again.created && again.runs == pushed.runs);
    worker.shutdown().await?;
    client.disconnect().await?;
    Ok(())
}
