use owlclaw::{task, Context};

#[task(cron = "*/5 * * *")]
async fn invalid_cron(_ctx: Context) -> anyhow::Result<()> {
    Ok(())
}

fn main() {}
