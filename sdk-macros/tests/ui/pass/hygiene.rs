//! Items of the user's crate named like the ones the generated code uses don't change it.
#![allow(dead_code, non_camel_case_types)]

use serde::{Deserialize, Serialize};

struct Context;
type Result = ();
struct Option;
struct Box;
struct Duration;
struct String;
struct Value;
struct TaskFailure;
trait Task {}
trait Scheduler {}
struct ScheduleBuilder;
mod core {}
mod std {}
mod inventory {}
fn decode_input() {}
fn encode_result() {}
fn __owlclaw_invoke() {}

#[derive(Serialize, Deserialize)]
struct In {
    n: u32,
}

#[owlclaw::task]
async fn hygienic(context: owlclaw::Context, r#in: In) -> anyhow::Result<u32> {
    let _ = context;
    Ok(r#in.n)
}

#[owlclaw::task(name = "match")]
async fn r#match(_: owlclaw::Context) -> ::std::result::Result<(), anyhow::Error> {
    Ok(())
}

fn main() {
    let _ = hygienic;
    assert_eq!(r#match::NAME, "match");
    assert_eq!(<hygienic as owlclaw::Task>::SPEC.name, "hygienic");
}
