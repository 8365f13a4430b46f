//! Self-scheduling: a task that schedules the next run of itself (a polling loop that survives
//! restarts), and a task that fans out runs of another task. Each new run records its parent.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example self_scheduling
//! ```

use owlclaw::{task, Client, Config, Context, RunId};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Serialize, Deserialize)]
struct Poll {
    feed: String,
    remaining: u32,
}

/// Polls a feed, then schedules itself again 200 ms later until `remaining` reaches zero.
#[task(retries = 2)]
async fn poll_feed(ctx: Context, poll: Poll) -> anyhow::Result<String> {
    let seen = format!("polled {} (attempt {})", poll.feed, ctx.attempt());
    if poll.remaining > 0 {
        let next = Poll {
            feed: poll.feed,
            remaining: poll.remaining - 1,
        };
        poll_feed::schedule(&ctx, next, Duration::from_millis(200)).await?;
    }
    Ok(seen)
}

/// Fans out one `resize` run per width and returns their ids.
#[task]
async fn thumbnails(ctx: Context, widths: Vec<u32>) -> anyhow::Result<Vec<RunId>> {
    let mut ids = Vec::new();
    for w in widths {
        ids.push(resize::enqueue(&ctx, w).priority(8).await?.id());
    }
    Ok(ids)
}

#[task]
async fn resize(_ctx: Context, width: u32) -> anyhow::Result<String> {
    Ok(format!("thumbnail-{width}.png"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("owlclaw-self-scheduling-{}", std::process::id()));
    let mut config = Config::lite();
    config.database_url = format!("sqlite://{}/owlclaw.db", dir.display());
    let client = Client::connect(config).await?;
    let worker = client.worker("self-scheduling").start().await?;

    let first = poll_feed::enqueue(
        &client,
        Poll {
            feed: "news".into(),
            remaining: 3,
        },
    )
    .await?;
    println!("{}", first.result().await?);
    // Follow the chain of runs through their parent links.
    let mut parent = first.id();
    for _ in 0..3 {
        let child = loop {
            let page = client.list(Default::default()).await?;
            if let Some(r) = page.runs.into_iter().find(|r| r.parent_id == Some(parent)) {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let done = client.wait(child.id, Duration::from_secs(10)).await?;
        println!(
            "{} (run {}, parent {})",
            done.output.unwrap_or_default(),
            done.id,
            parent
        );
        parent = done.id;
    }

    let fan = thumbnails::enqueue(&client, vec![64, 128, 256]).await?;
    for id in fan.result().await? {
        let run = client.wait(id, Duration::from_secs(10)).await?;
        println!(
            "resize -> {} (parent {})",
            run.output.unwrap_or_default(),
            run.parent_id.unwrap()
        );
    }

    worker.shutdown().await?;
    client.disconnect().await?;
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
