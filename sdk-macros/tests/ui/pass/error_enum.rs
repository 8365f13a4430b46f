//! A user error type: anything `Display` works, no `std::error::Error` needed.

use owlclaw::{task, Context};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug)]
enum PaymentError {
    Declined,
    Unreachable(String),
}

impl fmt::Display for PaymentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PaymentError::Declined => f.write_str("declined"),
            PaymentError::Unreachable(host) => write!(f, "{host} is unreachable"),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Charge {
    cents: u64,
}

#[derive(Serialize, Deserialize)]
struct Receipt {
    id: String,
}

#[task(retries = 2)]
async fn charge(_ctx: Context, input: Charge) -> Result<Receipt, PaymentError> {
    match input.cents {
        0 => Err(PaymentError::Declined),
        1 => Err(PaymentError::Unreachable("bank".into())),
        _ => Ok(Receipt { id: "r1".into() }),
    }
}

async fn schedule(client: &owlclaw::Client) -> owlclaw::Result<String> {
    let receipt: Receipt = charge::run(client, Charge { cents: 100 }).await?;
    Ok(receipt.id)
}

fn main() {
    let _ = schedule;
}
