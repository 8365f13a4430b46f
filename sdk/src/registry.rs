//! The tasks linked into the binary: each `#[task]` submits its registration here. Not a public
//! API (`owlclaw::__private`). Kept apart from `task.rs`, which the client uses, because running a
//! task needs its `Context`: the module graph stays free of circles.

use crate::task::{TaskFailure, TaskSpec};
pub use crate::Context;
pub use inventory;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Runs one attempt of a task: decodes the input, calls the function, encodes the output.
pub type InvokeFn = fn(Context, Value) -> BoxFuture<Result<Value, TaskFailure>>;

/// One `#[task]` linked into the binary.
#[derive(Debug)]
pub struct TaskRegistration {
    /// Its policies.
    pub spec: TaskSpec,
    /// How to run it.
    pub invoke: InvokeFn,
}

impl TaskRegistration {
    /// Used by `inventory::submit!`, which needs a const expression.
    pub const fn new(spec: TaskSpec, invoke: InvokeFn) -> TaskRegistration {
        TaskRegistration { spec, invoke }
    }
}

inventory::collect!(TaskRegistration);

/// Every `#[task]` in the binary.
pub fn registered() -> impl Iterator<Item = &'static TaskRegistration> {
    inventory::iter::<TaskRegistration>.into_iter()
}
