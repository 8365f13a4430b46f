use owlclaw::{task, Context};

#[task(retries = 1000)]
async fn retries_too_many(_ctx: Context) -> anyhow::Result<()> {
    Ok(())
}

fn main() {}
