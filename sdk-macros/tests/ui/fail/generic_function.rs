use owlclaw::{task, Context};

#[task]
async fn generic_function<T: serde::de::DeserializeOwned>(_ctx: Context, input: T) -> anyhow::Result<()> {
    let _ = input;
    Ok(())
}

fn main() {}
