use owlclaw::task;

#[task]
async fn no_parameters() -> anyhow::Result<()> {
    Ok(())
}

fn main() {}
