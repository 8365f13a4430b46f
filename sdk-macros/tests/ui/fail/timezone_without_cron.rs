use owlclaw::{task, Context};

#[task(timezone = "Europe/Paris")]
async fn timezone_without_cron(_ctx: Context) -> anyhow::Result<()> {
    Ok(())
}

fn main() {}
