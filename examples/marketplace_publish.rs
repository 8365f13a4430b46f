//! Publishing a product to a marketplace as durable steps: `validate`, `map_data`,
//! `upload_image_1..N`, `create_listing`, `save`.
//!
//! The upload of the second image fails on the first attempt *after* the CDN stored the file (the
//! response was lost). The run is retried: the completed steps are not run again (their stored
//! outputs are returned), the non-idempotent upload is *verified* ("is the file already on the
//! CDN?") instead of uploaded twice, and the run finishes. The output prints how many times each
//! step's body ran.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example marketplace_publish
//! ```

use owlclaw::{task, Client, Config, Context};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Product {
    sku: String,
    title: String,
    price_cents: u64,
    images: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct MarketplaceItem {
    external_sku: String,
    headline: String,
    price: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Listing {
    listing_id: String,
    image_urls: Vec<String>,
}

/// How many times each step's body (or verify closure) ran.
fn calls() -> &'static Mutex<BTreeMap<String, u32>> {
    static CALLS: OnceLock<Mutex<BTreeMap<String, u32>>> = OnceLock::new();
    CALLS.get_or_init(Default::default)
}

fn called(what: &str) -> u32 {
    let mut c = calls().lock().unwrap();
    let n = c.entry(what.to_string()).or_default();
    *n += 1;
    *n
}

/// A pretend CDN: the files it holds.
fn cdn() -> &'static Mutex<BTreeSet<String>> {
    static CDN: OnceLock<Mutex<BTreeSet<String>>> = OnceLock::new();
    CDN.get_or_init(Default::default)
}

#[task(
    name = "publish-product",
    retries = 3,
    backoff_initial = "200ms",
    timeout = "30s"
)]
async fn publish_product(ctx: Context, product: Product) -> anyhow::Result<Listing> {
    println!("  attempt {} of run {}", ctx.attempt(), ctx.run_id());
    ctx.step("validate", || async {
        called("validate");
        anyhow::ensure!(
            !product.images.is_empty(),
            "a product needs at least one image"
        );
        anyhow::ensure!(product.price_cents > 0, "a product needs a price");
        anyhow::Ok(())
    })
    .await?;
    let item: MarketplaceItem = ctx
        .step("map_data", || async {
            called("map_data");
            anyhow::Ok(MarketplaceItem {
                external_sku: format!("OWL-{}", product.sku),
                headline: product.title.to_uppercase(),
                price: format!(
                    "{}.{:02} EUR",
                    product.price_cents / 100,
                    product.price_cents % 100
                ),
            })
        })
        .await?;
    let mut urls = Vec::new();
    for (i, image) in product.images.iter().enumerate() {
        let step = format!("upload_image_{}", i + 1);
        let url = format!("https://cdn.example/{}/{image}", product.sku);
        let stored: String = ctx
            .step_verified(
                &step,
                || async {
                    called(&format!("{step} (verify)"));
                    let there = cdn().lock().unwrap().contains(&url);
                    println!(
                        "    verify {step}: {}",
                        if there {
                            "already on the CDN, not uploading again"
                        } else {
                            "not there"
                        }
                    );
                    anyhow::Ok(there.then(|| url.clone()))
                },
                || async {
                    let n = called(&step);
                    cdn().lock().unwrap().insert(url.clone());
                    if i == 1 && n == 1 {
                        println!("    {step}: stored on the CDN, but the response was lost (503)");
                        anyhow::bail!("CDN answered 503 Service Unavailable");
                    }
                    anyhow::Ok(url.clone())
                },
            )
            .await?;
        urls.push(stored);
    }
    let listing: Listing = ctx
        .step("create_listing", || async {
            called("create_listing");
            anyhow::Ok(Listing {
                listing_id: format!("L-{}", item.external_sku),
                image_urls: urls.clone(),
            })
        })
        .await?;
    ctx.step("save", || async {
        called("save");
        anyhow::Ok(listing.listing_id.clone())
    })
    .await?;
    Ok(listing)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("owlclaw-marketplace-{}", std::process::id()));
    let mut config = Config::lite();
    config.database_url = format!("sqlite://{}/owlclaw.db", dir.display());
    let client = Client::connect(config).await?;
    let worker = client.worker("publisher").start().await?;

    let product = Product {
        sku: "lamp-42".into(),
        title: "Brass desk lamp".into(),
        price_cents: 4_990,
        images: vec!["front.jpg".into(), "side.jpg".into(), "box.jpg".into()],
    };
    println!("publishing {}:", product.sku);
    let run = publish_product::enqueue(&client, product).await?;
    let listing = run.result_timeout(Duration::from_secs(30)).await?;
    println!(
        "published listing {} with {} images",
        listing.listing_id,
        listing.image_urls.len()
    );

    println!("\nsteps of run {}:", run.id());
    for step in run.snapshot().await?.steps {
        println!(
            "  {:>2}. {:<16} {:<10} attempt {}",
            step.position,
            step.name,
            format!("{:?}", step.status).to_lowercase(),
            step.attempt
        );
    }
    println!("\nhow many times each body ran:");
    for (what, n) in calls().lock().unwrap().iter() {
        println!("  {what:<28} {n}");
    }
    worker.shutdown().await?;
    client.disconnect().await?;
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use owlclaw::testing::{crash_each_step, run_with_crash, Crash, RunAssert};
    use owlclaw::RunStatus;
    use std::sync::atomic::{AtomicU32, Ordering};

    const STEPS: [&str; 6] = [
        "validate",
        "map_data",
        "upload_image_1",
        "upload_image_2",
        "create_listing",
        "save",
    ];

    fn product(sku: &str) -> Product {
        Product {
            sku: sku.into(),
            title: "Owl mug".into(),
            price_cents: 1250,
            images: vec!["front.jpg".into(), "back.jpg".into()],
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_crash_after_a_step_committed_runs_no_step_again() {
        let client = Client::lite_in_memory().await.unwrap();
        // Dies right after `upload_image_1` (step 2) committed.
        let run =
            run_with_crash::<publish_product>(&client, product("after-2"), Crash::AfterCommit(2))
                .await
                .unwrap();
        for step in [
            "validate",
            "map_data",
            "upload_image_1",
            "create_listing",
            "save",
        ] {
            assert_eq!(run.bodies(step), 1, "{step}: {run:#?}");
        }
        assert!(run.ran_twice().is_empty(), "{run:#?}");
        let listing = run.output.as_ref().unwrap();
        assert_eq!(listing.listing_id, "L-OWL-after-2");
        RunAssert::of(&client, run.run.id)
            .await
            .unwrap()
            .status(RunStatus::Succeeded)
            .steps_succeeded(&STEPS)
            .children(0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn crashing_at_every_step_shows_which_steps_would_run_twice() {
        let client = Client::lite_in_memory().await.unwrap();
        let n = AtomicU32::new(0);
        let report = crash_each_step::<publish_product>(&client, || {
            product(&format!("each-{}", n.fetch_add(1, Ordering::SeqCst)))
        })
        .await
        .unwrap();
        assert_eq!(report.steps, STEPS);
        assert_eq!(report.crashes.len(), 2 * STEPS.len());
        assert!(report.different_endings.is_empty(), "{report:#?}");
        // A crash after a commit: no step runs again. A crash between a plain step's body and
        // its commit: that step runs again (its body had run); the uploads, verified steps,
        // never do: their verify finds the file on the CDN.
        let mut twice: Vec<(Crash, &str)> = report
            .findings
            .iter()
            .map(|f| (f.crash, f.step.as_str()))
            .collect();
        twice.sort_by_key(|(c, _)| format!("{c:?}"));
        assert_eq!(
            twice,
            [
                (Crash::BeforeCommit(0), "validate"),
                (Crash::BeforeCommit(1), "map_data"),
                (Crash::BeforeCommit(4), "create_listing"),
                (Crash::BeforeCommit(5), "save"),
            ],
            "{report:#?}"
        );
    }
}
