use owlclaw::{task, Context};

#[task]
async fn three_parameters(_ctx: Context, to: String, subject: String) -> anyhow::Result<()> {
    let _ = (to, subject);
    Ok(())
}

fn main() {}
