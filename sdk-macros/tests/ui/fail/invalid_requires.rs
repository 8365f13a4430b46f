use owlclaw::{task, Context};

#[task(requires = "gpu,,region=eu")]
async fn empty_requirement(_ctx: Context) -> anyhow::Result<()> {
    Ok(())
}

#[task(requires = "gpu, gpu")]
async fn required_twice(_ctx: Context) -> anyhow::Result<()> {
    Ok(())
}

fn main() {}
