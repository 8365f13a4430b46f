use owlclaw::{task, Context};

#[task(retries = "3")]
async fn retries_not_an_integer(_ctx: Context) -> anyhow::Result<()> {
    Ok(())
}

fn main() {}
