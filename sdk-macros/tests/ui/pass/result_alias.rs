//! A user alias of `Result`.

use owlclaw::{task, Context};

#[derive(Debug)]
struct MyErr;

impl std::fmt::Display for MyErr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("my error")
    }
}

type MyResult<T> = Result<T, MyErr>;

#[task]
async fn with_alias(_ctx: Context, input: i64) -> MyResult<Vec<i64>> {
    Ok(vec![input])
}

#[task]
async fn with_std_result(_ctx: Context) -> std::result::Result<(), String> {
    Ok(())
}

async fn schedule(client: &owlclaw::Client) -> owlclaw::Result<()> {
    let numbers: Vec<i64> = with_alias::run(client, 7).await?;
    let _ = numbers;
    with_std_result::run(client).await?;
    Ok(())
}

fn main() {
    let _ = schedule;
}
