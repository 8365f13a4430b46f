use owlclaw::{task, Context};

#[task(retries = -1)]
async fn retries_negative(_ctx: Context) -> anyhow::Result<()> {
    Ok(())
}

fn main() {}
