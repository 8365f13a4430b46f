use owlclaw::{task, workflow, Context};

#[task]
async fn validate(_ctx: Context, sku: String) -> anyhow::Result<u32> {
    Ok(sku.len() as u32)
}

#[task(parents = [validate])]
async fn save(_ctx: Context, id: u64) -> anyhow::Result<u64> {
    Ok(id)
}

#[workflow(tasks = [validate, save])]
struct publish;

fn main() {}
