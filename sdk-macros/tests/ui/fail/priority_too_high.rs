use owlclaw::{task, Context};

#[task(priority = 11)]
async fn priority_too_high(_ctx: Context) -> anyhow::Result<()> {
    Ok(())
}

// The handle is still generated (with the default priority), so that the wrong argument is the
// only error, not also every use of the handle.
async fn schedule(client: &owlclaw::Client) -> owlclaw::Result<()> {
    priority_too_high::enqueue(client).await?;
    Ok(())
}

fn main() {
    let _ = schedule;
}
