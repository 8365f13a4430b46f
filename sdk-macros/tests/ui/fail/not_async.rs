use owlclaw::{task, Context};

#[task]
fn not_async(_ctx: Context) -> anyhow::Result<()> {
    Ok(())
}

fn main() {}
