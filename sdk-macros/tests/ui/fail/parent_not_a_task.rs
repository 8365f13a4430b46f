use owlclaw::{task, Context};

#[task(parents = [validate])]
async fn save(_ctx: Context, sku: String) -> anyhow::Result<String> {
    Ok(sku)
}

fn main() {}
