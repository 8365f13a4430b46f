use owlclaw::{task, Context};

#[task(retry = 3)]
async fn unknown_argument(_ctx: Context) -> anyhow::Result<()> {
    Ok(())
}

fn main() {}
