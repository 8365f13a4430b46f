use owlclaw::{task, Context};

#[task(timeout = "30")]
async fn timeout_without_unit(_ctx: Context) -> anyhow::Result<()> {
    Ok(())
}

fn main() {}
