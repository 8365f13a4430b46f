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

/// One `#[workflow]` linked into the binary.
#[derive(Debug)]
pub struct WorkflowRegistration {
    /// Its name and triggers (a `TaskSpec` with `workflow: true`).
    pub spec: TaskSpec,
    /// Its tasks' names, as written in `#[task]`, in the order declared.
    pub tasks: &'static [&'static str],
    /// The task whose output is the workflow's.
    pub output: &'static str,
    /// The task run when it fails.
    pub on_failure: Option<&'static str>,
}

inventory::collect!(WorkflowRegistration);

/// Every `#[workflow]` in the binary.
pub fn registered_workflows() -> impl Iterator<Item = &'static WorkflowRegistration> {
    inventory::iter::<WorkflowRegistration>.into_iter()
}

impl WorkflowRegistration {
    /// The definition the engine stores: its shape from its tasks' `parents`, names qualified
    /// by the namespace. A task that is not a `#[task]` of the binary is refused.
    pub fn to_def(&self, namespace: Option<&str>) -> crate::Result<owlclaw_core::task::TaskDef> {
        use crate::task::qualified_name;
        use owlclaw_core::workflow::{WorkflowShape, WorkflowTask};
        let mut tasks = Vec::with_capacity(self.tasks.len());
        for name in self.tasks {
            let spec = registered()
                .find(|r| r.spec.name == *name)
                .ok_or_else(|| {
                    crate::Error::config(
                        "workflows",
                        format!(
                            "workflow {:?} lists {name:?}, which is not a #[task] in this binary",
                            self.spec.name
                        ),
                    )
                })?
                .spec;
            tasks.push(WorkflowTask {
                name: qualified_name(namespace, name),
                parents: spec
                    .parents
                    .iter()
                    .map(|p| qualified_name(namespace, p))
                    .collect(),
            });
        }
        let mut def = self.spec.to_def(namespace);
        def.workflow = Some(WorkflowShape {
            tasks,
            output: qualified_name(namespace, self.output),
            on_failure: self.on_failure.map(|f| qualified_name(namespace, f)),
        });
        def.validate().map_err(|e| match e {
            crate::Error::InvalidInput { message, .. } => {
                crate::Error::config("workflows", message)
            }
            other => other,
        })?;
        Ok(def)
    }
}
