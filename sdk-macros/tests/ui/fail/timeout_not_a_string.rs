use owlclaw::{task, Context};

#[task(timeout = 30)]
async fn timeout_not_a_string(_ctx: Context) -> anyhow::Result<()> {
    Ok(())
}

fn main() {}
