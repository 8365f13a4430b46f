//! The marketplace publish as a workflow, in lite mode: validate the listing, map it to the
//! marketplace's format, upload its three images in parallel, create the listing once every
//! upload is done, and save its id. Each task reads its parents' outputs typed; the workflow's
//! output is `save`'s. It prints the plan (stages and critical path) and the run's tasks.
//!
//! ```text
//! cargo run --example publish_workflow
//! ```
//!
//! The runs are kept in `.owlclaw/publish_workflow.db`; from a shell, `cargo run -p owlclaw-cli
//! -- --database sqlite://.owlclaw/publish_workflow.db plan publish` prints the plan with the
//! durations of the runs so far.

use owlclaw::{task, workflow, Client, Config, Context, Mode, WorkflowFailure};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What the seller submits.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Listing {
    sku: String,
    title: String,
    price_cents: u64,
    images: [String; 3],
}

/// The listing in the marketplace's format.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Mapped {
    title: String,
    price: String,
}

#[task(retries = 2)]
async fn validate(_ctx: Context, listing: Listing) -> anyhow::Result<String> {
    if listing.title.trim().is_empty() {
        return Err(owlclaw::fatal("a listing needs a title").into());
    }
    Ok(listing.sku.to_uppercase())
}

#[task(parents = [validate])]
async fn map(ctx: Context, listing: Listing) -> anyhow::Result<Mapped> {
    let sku: String = ctx.parent_output::<validate>().await?;
    Ok(Mapped {
        title: format!("{} [{sku}]", listing.title),
        price: format!(
            "{}.{:02} EUR",
            listing.price_cents / 100,
            listing.price_cents % 100
        ),
    })
}

/// Uploads one image (here: waits as a slow upload would) and returns its URL.
async fn upload(listing: &Listing, i: usize) -> anyhow::Result<String> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(format!(
        "https://cdn.example/{}/{}",
        listing.sku, listing.images[i]
    ))
}

#[task(parents = [map], retries = 3)]
async fn upload_front(_ctx: Context, listing: Listing) -> anyhow::Result<String> {
    upload(&listing, 0).await
}

#[task(parents = [map], retries = 3)]
async fn upload_back(_ctx: Context, listing: Listing) -> anyhow::Result<String> {
    upload(&listing, 1).await
}

#[task(parents = [map], retries = 3)]
async fn upload_detail(_ctx: Context, listing: Listing) -> anyhow::Result<String> {
    upload(&listing, 2).await
}

#[task(parents = [map, upload_front, upload_back, upload_detail])]
async fn create_listing(ctx: Context, _listing: Listing) -> anyhow::Result<String> {
    let mapped = ctx.parent_output::<map>().await?;
    let images = [
        ctx.parent_output::<upload_front>().await?,
        ctx.parent_output::<upload_back>().await?,
        ctx.parent_output::<upload_detail>().await?,
    ];
    Ok(format!(
        "listing \"{}\" at {} with {} images",
        mapped.title,
        mapped.price,
        images.len()
    ))
}

#[task(parents = [create_listing])]
async fn save(ctx: Context, listing: Listing) -> anyhow::Result<String> {
    let created = ctx.parent_output::<create_listing>().await?;
    Ok(format!("saved {}: {created}", listing.sku))
}

/// Runs when the workflow fails, with what failed.
#[task]
async fn notify_seller(_ctx: Context, failure: WorkflowFailure) -> anyhow::Result<()> {
    eprintln!(
        "publishing failed at {}: {} (run {})",
        failure.task, failure.error, failure.run_id
    );
    Ok(())
}

#[workflow(
    name = "publish",
    tasks = [validate, map, upload_front, upload_back, upload_detail, create_listing, save],
    on_failure = notify_seller
)]
struct publish;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut config = Config::from_env()?;
    if config.mode == Mode::Lite && std::env::var_os("OWLCLAW_DATABASE_URL").is_none() {
        std::fs::create_dir_all(".owlclaw")?;
        config.database_url = "sqlite://.owlclaw/publish_workflow.db".into();
    }
    let client = Client::connect(config).await?;
    let worker = client.worker("publisher").slots(4).start().await?;

    let plan = client.workflow_plan("publish").await?;
    println!("stages:");
    for (i, stage) in plan.stages.iter().enumerate() {
        println!("  {}. {}", i + 1, stage.join(", "));
    }
    println!(
        "critical path: {} ({} ms expected from past runs)",
        plan.critical_path.join(" -> "),
        plan.critical_path_ms
    );

    let listing = Listing {
        sku: "mug-42".into(),
        title: "Owl mug".into(),
        price_cents: 1450,
        images: ["front.jpg".into(), "back.jpg".into(), "detail.jpg".into()],
    };
    let run = publish::enqueue(&client, listing).await?;
    let saved = run.result_timeout(Duration::from_secs(60)).await?;
    println!("{saved}");
    for t in client.workflow_tasks(run.id()).await?.tasks {
        let took = match (t.started_at, t.finished_at) {
            (Some(s), Some(f)) => format!("{} ms", (f - s).num_milliseconds()),
            _ => "-".into(),
        };
        println!("  {:<15} {:<10} {took}", t.task, t.status);
    }
    worker.shutdown().await?;
    Ok(())
}
