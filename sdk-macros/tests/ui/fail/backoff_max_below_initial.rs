use owlclaw::{task, Context};

#[task(retries = 5, backoff_initial = "10s", backoff_max = "5s")]
async fn backoff_max_below_initial(_ctx: Context) -> anyhow::Result<()> {
    Ok(())
}

fn main() {}
