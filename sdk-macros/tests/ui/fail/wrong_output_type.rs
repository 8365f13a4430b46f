use owlclaw::{task, Context};

#[task]
async fn count(_ctx: Context) -> anyhow::Result<u64> {
    Ok(1)
}

async fn schedule(client: &owlclaw::Client) -> owlclaw::Result<()> {
    let run = count::enqueue(client).await?;
    let _: String = run.result().await?;
    Ok(())
}

fn main() {
    let _ = schedule;
}
