use owlclaw::{task, Context};

#[task(cron = "0 9 * * 1-5", timezone = "Europe/Paname")]
async fn unknown_timezone(_ctx: Context) -> anyhow::Result<()> {
    Ok(())
}

fn main() {}
