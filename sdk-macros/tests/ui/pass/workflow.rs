use owlclaw::{task, workflow, Context, WorkflowFailure};

#[task]
async fn validate(_ctx: Context, sku: String) -> anyhow::Result<u32> {
    Ok(sku.len() as u32)
}

#[task(parents = [validate])]
async fn save(ctx: Context, sku: String) -> anyhow::Result<String> {
    let n: u32 = ctx.parent_output::<validate>().await?;
    Ok(format!("{sku}:{n}"))
}

#[task]
async fn notify(_ctx: Context, failure: WorkflowFailure) -> anyhow::Result<()> {
    let _ = failure.task;
    Ok(())
}

#[workflow(name = "publish", tasks = [validate, save], on_failure = notify, on_event = "sku.added")]
struct publish;

async fn start(client: &owlclaw::Client) -> owlclaw::Result<String> {
    // Typed: the input is the tasks' input, the output the output task's.
    let out: String = publish::run(client, "mug".to_string()).await?;
    Ok(out)
}

fn main() {
    assert_eq!(publish::NAME, "publish");
    assert_eq!(<publish as owlclaw::Task>::SPEC.name, "publish");
    assert!(<publish as owlclaw::Task>::SPEC.workflow);
    assert_eq!(<save as owlclaw::Task>::SPEC.parents, &["validate"]);
    let _ = start;
}
