//! The `#[task]` attribute macro of OwlClaw Tasks. Use it through the `owlclaw` crate
//! (`use owlclaw::task;`), which re-exports it and holds everything the generated code names.
//!
//! `attr.rs` parses and checks the arguments, `expand.rs` generates the code.

mod attr;
mod expand;
mod workflow;

use proc_macro::TokenStream;

/// Turns an `async fn` into a task that workers run and clients schedule.
///
/// ```no_run
/// use owlclaw::{task, Context};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// pub struct Email {
///     pub to: String,
/// }
///
/// #[task(name = "send-email", retries = 3, timeout = "30s", priority = 7)]
/// pub async fn send_email(ctx: Context, input: Email) -> anyhow::Result<String> {
///     Ok(format!("sent to {}", input.to))
/// }
///
/// #[task(cron = "*/5 * * * *", timezone = "Europe/Paris")]
/// async fn cleanup(ctx: Context) -> anyhow::Result<()> {
///     Ok(())
/// }
///
/// async fn schedule(client: &owlclaw::Client) -> owlclaw::Result<()> {
///     // The typed handle checks the input type, and the output type of the result.
///     let run = send_email::enqueue(client, Email { to: "a@b.c".into() }).priority(9).await?;
///     let sent: String = run.result().await?;
///     Ok(())
/// }
/// ```
///
/// The function must be `async fn name(ctx: Context) -> Result<O, E>` or
/// `async fn name(ctx: Context, input: I) -> Result<O, E>`, where the input `I` and the output `O`
/// are `Serialize + DeserializeOwned` (they are stored as JSON) and the error `E` is `Display`
/// (an `Err` fails the attempt, which is retried if retries are left). Any alias of `Result`
/// works, such as `anyhow::Result<O>`.
///
/// # Arguments
///
/// All are optional; each is checked at compile time, and a wrong value is a compile error on it.
///
/// | argument | value | default |
/// |---|---|---|
/// | `name` | the task's name: letters, digits and `_ - . : /` | the function's name |
/// | `cron` | a schedule: 5 fields (`"*/5 * * * *"`), 6 with seconds first, or `"@hourly"`, `"@daily"`... | none |
/// | `timezone` | the IANA time zone of `cron`, such as `"Europe/Paris"` | `"UTC"` |
/// | `retries` | retries after the first attempt, 0 to 100 | 0 |
/// | `timeout` | timeout of one attempt, with a unit (`ms`, `s`, `m`, `h`, `d`), at most `"7d"` | `"60s"` |
/// | `priority` | 1 (lowest) to 10 (highest) | 5 |
/// | `backoff_initial` | delay before the first retry | `"1s"` |
/// | `backoff_factor` | growth of the delay per retry, 1 to 100 | `2.0` |
/// | `backoff_max` | upper bound of the delay, at least `backoff_initial` | `"5m"` |
///
/// # What it generates
///
/// The function is kept as written (it stays callable, e.g. from unit tests). Next to it come a
/// typed handle, a braced unit struct of the same name (the struct lives in the type namespace and
/// the function in the value namespace, so both coexist), and the registration that lets a worker
/// find the task. The `send_email` task above is equivalent to this code without `#[task]`:
///
/// ```no_run
/// use owlclaw::Context;
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// pub struct Email {
///     pub to: String,
/// }
///
/// pub async fn send_email(ctx: Context, input: Email) -> anyhow::Result<String> {
///     Ok(format!("sent to {}", input.to))
/// }
///
/// /// Typed handle of the `send-email` task.
/// #[allow(non_camel_case_types)]
/// #[derive(Debug, Clone, Copy, Default)]
/// pub struct send_email {}
///
/// impl owlclaw::Task for send_email {
///     type Input = Email;
///     type Output = <anyhow::Result<String> as owlclaw::__private::TaskReturn>::Output;
///     const SPEC: owlclaw::TaskSpec = owlclaw::TaskSpec {
///         name: "send-email",
///         retries: 3,
///         timeout_ms: 30_000,
///         priority: 7,
///         ..owlclaw::TaskSpec::DEFAULT
///     };
/// }
///
/// impl send_email {
///     /// The task's name.
///     pub const NAME: &'static str = "send-email";
///
///     /// Schedules a run now.
///     pub fn enqueue(
///         scheduler: &impl owlclaw::Scheduler,
///         input: Email,
///     ) -> owlclaw::ScheduleBuilder<Self> {
///         owlclaw::ScheduleBuilder::<Self>::new(scheduler, input)
///     }
///
///     /// Schedules a run after `delay`.
///     pub fn schedule(
///         scheduler: &impl owlclaw::Scheduler,
///         input: Email,
///         delay: std::time::Duration,
///     ) -> owlclaw::ScheduleBuilder<Self> {
///         owlclaw::ScheduleBuilder::<Self>::new(scheduler, input).delay(delay)
///     }
///
///     /// Schedules a run at `at`.
///     pub fn schedule_at(
///         scheduler: &impl owlclaw::Scheduler,
///         input: Email,
///         at: owlclaw::DateTime<owlclaw::Utc>,
///     ) -> owlclaw::ScheduleBuilder<Self> {
///         owlclaw::ScheduleBuilder::<Self>::new(scheduler, input).at(at)
///     }
///
///     /// Schedules a run now and waits for its output.
///     pub async fn run(
///         scheduler: &impl owlclaw::Scheduler,
///         input: Email,
///     ) -> owlclaw::Result<<Self as owlclaw::Task>::Output> {
///         owlclaw::ScheduleBuilder::<Self>::new(scheduler, input).wait().await
///     }
/// }
///
/// const _: () = {
///     fn invoke(
///         ctx: owlclaw::Context,
///         input: owlclaw::__private::Value,
///     ) -> owlclaw::__private::BoxFuture<
///         Result<owlclaw::__private::Value, owlclaw::__private::TaskFailure>,
///     > {
///         Box::pin(async move {
///             let input: Email = owlclaw::__private::decode_input("send-email", input)?;
///             owlclaw::__private::encode_result(send_email(ctx, input).await)
///         })
///     }
///
///     owlclaw::__private::inventory::submit! {
///         owlclaw::__private::TaskRegistration::new(<send_email as owlclaw::Task>::SPEC, invoke)
///     }
/// };
/// ```
///
/// A task without input has the same handle without the `input` parameters (its `Task::Input` is
/// `()`). The generated code names everything by absolute paths (`::owlclaw::...`), so a type of
/// the user's crate named `Context` or `Result` doesn't change it.
///
/// # Errors
///
/// A wrong argument or function shape is a compile error on the offending token: a missing
/// `async` (on `fn`), a generic function, a `self` parameter, more than two parameters, no return
/// type, an unknown argument (the error lists the valid ones), an argument given twice, an
/// invalid cron expression or time zone, a timeout without a unit, an out-of-range priority.
#[proc_macro_attribute]
pub fn task(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::task(args.into(), item.into()).into()
}

/// Declares a workflow: a DAG of `#[task]`s that run in dependency order, each task's
/// `parents = [...]` giving its edges, on a unit struct that becomes the workflow's typed handle.
///
/// ```ignore
/// #[task] async fn validate(ctx: Context, l: Listing) -> anyhow::Result<Valid> { .. }
/// #[task(parents = [validate])] async fn save(ctx: Context, l: Listing) -> anyhow::Result<Saved> {
///     let valid = ctx.parent_output::<validate>().await?;
///     ..
/// }
/// #[workflow(name = "publish", tasks = [validate, save], on_failure = notify)]
/// pub struct publish;
///
/// let saved: Saved = publish::run(&client, listing).await?;
/// ```
///
/// Arguments: `tasks` (required), `name` (default: the struct's name), `output` (the task whose
/// output is the workflow's; default: the last listed), `on_failure` (a task taking a
/// `WorkflowFailure`), `cron`, `timezone`, `on_event`, `priority`.
#[proc_macro_attribute]
pub fn workflow(args: TokenStream, item: TokenStream) -> TokenStream {
    workflow::workflow(args.into(), item.into()).into()
}
