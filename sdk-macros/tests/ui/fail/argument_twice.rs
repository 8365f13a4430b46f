use owlclaw::{task, Context};

#[task(retries = 3, priority = 2, retries = 5)]
async fn argument_twice(_ctx: Context) -> anyhow::Result<()> {
    Ok(())
}

fn main() {}
