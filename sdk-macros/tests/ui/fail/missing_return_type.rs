use owlclaw::{task, Context};

#[task]
async fn missing_return_type(_ctx: Context) {}

fn main() {}
