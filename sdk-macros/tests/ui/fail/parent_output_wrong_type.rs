use owlclaw::{task, Context};

#[task]
async fn count(_ctx: Context, sku: String) -> anyhow::Result<u32> {
    Ok(sku.len() as u32)
}

#[task(parents = [count])]
async fn save(ctx: Context, sku: String) -> anyhow::Result<String> {
    let n: String = ctx.parent_output::<count>().await?;
    Ok(format!("{sku}{n}"))
}

fn main() {}
