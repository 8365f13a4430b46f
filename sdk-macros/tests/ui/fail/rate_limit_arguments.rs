use owlclaw::{task, Context};

#[task(rate_limit_units = 2)]
async fn units_without_limit(_ctx: Context, customer_id: String) -> anyhow::Result<String> {
    Ok(customer_id)
}

#[task(rate_limit = "stripe", rate_limit_units = 0)]
async fn no_units(_ctx: Context, customer_id: String) -> anyhow::Result<String> {
    Ok(customer_id)
}

#[task(rate_limit = "stripe api")]
async fn bad_name(_ctx: Context, customer_id: String) -> anyhow::Result<String> {
    Ok(customer_id)
}

#[task(
    concurrency = 2,
    concurrency_key = "customer",
    rate_limit = "stripe",
    rate_limit_key = "region"
)]
async fn both_limits_with_two_keys(_ctx: Context, customer_id: String) -> anyhow::Result<String> {
    Ok(customer_id)
}

fn main() {}
