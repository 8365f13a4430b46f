use owlclaw::{task, Context};

#[task(name = "send email")]
async fn invalid_name(_ctx: Context) -> anyhow::Result<()> {
    Ok(())
}

fn main() {}
