use owlclaw::{task, Context};

#[task(concurrency_key = "customer_id", concurrency = 0)]
async fn per_customer(_ctx: Context, customer_id: String) -> anyhow::Result<String> {
    Ok(customer_id)
}

#[task(concurrency_key = "customer_id")]
async fn no_limit(_ctx: Context, customer_id: String) -> anyhow::Result<String> {
    Ok(customer_id)
}

#[task(concurrency = 2, concurrency_strategy = "fifo")]
async fn unknown_strategy(_ctx: Context, customer_id: String) -> anyhow::Result<String> {
    Ok(customer_id)
}

fn main() {}
