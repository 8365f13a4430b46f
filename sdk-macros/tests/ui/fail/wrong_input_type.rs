use owlclaw::{task, Context};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Email {
    to: String,
}

#[task]
async fn send_email(_ctx: Context, input: Email) -> anyhow::Result<String> {
    Ok(input.to)
}

async fn schedule(client: &owlclaw::Client) -> owlclaw::Result<()> {
    send_email::enqueue(client, String::from("a@b.c")).await?;
    Ok(())
}

fn main() {
    let _ = schedule;
}
