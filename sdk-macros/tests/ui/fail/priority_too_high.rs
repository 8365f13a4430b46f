use owlclaw::{task, Context};

#[task(priority = 11)]
async fn priority_too_high(_ctx: Context) -> anyhow::Result<()> {
    Ok(())
}

fn main() {}
