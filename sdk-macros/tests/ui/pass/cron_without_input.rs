use owlclaw::{task, Context, Task, TaskSpec};

#[task(cron = "*/5 * * * *", timezone = "Europe/Paris")]
async fn cleanup(_ctx: Context) -> anyhow::Result<()> {
    Ok(())
}

#[task(cron = "@daily")]
async fn nightly(_ctx: Context) -> anyhow::Result<u32> {
    Ok(0)
}

#[task(name = "reports/weekly", cron = "0 0 9 * * Mon")]
async fn weekly_report(_ctx: Context) -> anyhow::Result<()> {
    Ok(())
}

async fn schedule(client: &owlclaw::Client) -> owlclaw::Result<()> {
    let run = cleanup::enqueue(client).await?;
    let () = run.result().await?;
    let _ = cleanup::schedule(client, std::time::Duration::from_secs(60)).await?;
    let _: u32 = nightly::run(client).await?;
    Ok(())
}

fn main() {
    let _ = schedule;
    let _ = weekly_report;
    assert_eq!(
        cleanup::SPEC,
        TaskSpec {
            name: "cleanup",
            cron: Some("*/5 * * * *"),
            timezone: Some("Europe/Paris"),
            ..TaskSpec::DEFAULT
        }
    );
    assert_eq!(nightly::SPEC.cron, Some("@daily"));
    assert_eq!(nightly::SPEC.timezone, None);
    assert_eq!(weekly_report::NAME, "reports/weekly");
}
