use owlclaw::{task, Context};

#[task(retries = 5, backoff_factor = 0.5)]
async fn bad_backoff_factor(_ctx: Context) -> anyhow::Result<()> {
    Ok(())
}

fn main() {}
