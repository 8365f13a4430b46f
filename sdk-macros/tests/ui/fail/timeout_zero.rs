use owlclaw::{task, Context};

#[task(timeout = "0s")]
async fn timeout_zero(_ctx: Context) -> anyhow::Result<()> {
    Ok(())
}

fn main() {}
