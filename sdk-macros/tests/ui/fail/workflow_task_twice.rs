use owlclaw::{task, workflow, Context};

#[task]
async fn validate(_ctx: Context, sku: String) -> anyhow::Result<u32> {
    Ok(sku.len() as u32)
}

#[workflow(tasks = [validate, validate])]
struct publish;

fn main() {}
