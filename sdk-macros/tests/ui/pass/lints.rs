//! The generated code is clean under strict lints (documented, Debug, no unsafe of its own).
#![forbid(unsafe_code)]
#![deny(
    warnings,
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms,
    unused_qualifications,
    unused,
    dead_code
)]

use owlclaw::{task, Context};

/// The input.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Input {
    /// A value.
    pub value: u32,
}

/// A documented public task.
#[task(retries = 1)]
pub async fn documented(_ctx: Context, input: Input) -> anyhow::Result<u32> {
    Ok(input.value)
}

/// A public task without input.
#[task]
pub async fn documented_without_input(_ctx: Context) -> anyhow::Result<()> {
    Ok(())
}

#[task(cron = "@hourly")]
async fn private_without_input(_ctx: Context) -> anyhow::Result<()> {
    Ok(())
}

fn main() {}
