use owlclaw::{task, Context};

#[task(priority = 0)]
async fn priority_zero(_ctx: Context) -> anyhow::Result<()> {
    Ok(())
}

fn main() {}
