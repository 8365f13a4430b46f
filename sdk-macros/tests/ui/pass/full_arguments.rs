//! Every argument, a struct input and an `anyhow::Result` output.

use owlclaw::{task, Context, Task, TaskSpec};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Serialize, Deserialize)]
pub struct Email {
    pub to: String,
}

#[task(
    name = "send-email",
    retries = 3,
    timeout = "1m30s",
    priority = 7,
    backoff_initial = "500ms",
    backoff_factor = 1.5,
    backoff_max = "1m",
    requires = "smtp, region = eu",
    on_event = "user.signed-up",
    concurrency = 3,
    concurrency_key = "to",
    concurrency_strategy = "cancel_in_progress",
)]
pub async fn send_email(_ctx: Context, input: Email) -> anyhow::Result<String> {
    Ok(format!("sent to {}", input.to))
}

/// A rate limit with a key of its own.
#[task(rate_limit = "stripe", rate_limit_units = 2, rate_limit_key = "to")]
pub async fn charge(_ctx: Context, input: Email) -> anyhow::Result<()> {
    let _ = input;
    Ok(())
}

/// Both limits: one run per recipient at once, all recipients within the mailer's rate.
#[task(concurrency = 1, concurrency_key = "to", rate_limit = "mailer")]
pub async fn notify(_ctx: Context, input: Email) -> anyhow::Result<()> {
    let _ = input;
    Ok(())
}

/// An interval schedule with its policies.
#[task(every = "30s", overlap = "buffer_one", catch_up = "all")]
pub async fn tick(_ctx: Context) -> anyhow::Result<()> {
    Ok(())
}

/// Type-checks the typed handle; never run.
async fn schedule(client: &owlclaw::Client) -> owlclaw::Result<()> {
    let email = || Email { to: "a@b.c".into() };
    let run = send_email::enqueue(client, email()).priority(9).await?;
    let _ = run.id();
    let _ = run.status().await?;
    let sent: String = run.result().await?;
    let _ = sent;
    let _ = send_email::schedule(client, email(), Duration::from_secs(10)).await?;
    let _ = send_email::schedule_at(client, email(), owlclaw::Utc::now()).await?;
    let output: String = send_email::run(client, email()).await?;
    let _ = output;
    Ok(())
}

/// A task scheduling another one through its context; never run.
#[task]
async fn fan_out(ctx: Context, to: Vec<String>) -> anyhow::Result<usize> {
    for to in &to {
        send_email::enqueue(&ctx, Email { to: to.clone() }).await?;
    }
    Ok(to.len())
}

fn main() {
    // The function stays callable as written.
    let _call = |ctx: Context| async move { send_email(ctx, Email { to: "a@b.c".into() }).await };
    let _ = schedule;

    assert_eq!(send_email::NAME, "send-email");
    assert_eq!(
        send_email::SPEC,
        TaskSpec {
            name: "send-email",
            retries: 3,
            timeout_ms: 90_000,
            priority: 7,
            backoff_initial_ms: 500,
            backoff_factor: 1.5,
            backoff_max_ms: 60_000,
            cron: None,
            timezone: None,
            overlap: None,
            catch_up: None,
            requires: &["smtp", "region=eu"],
            on_event: Some("user.signed-up"),
            concurrency: 3,
            concurrency_key: Some("to"),
            concurrency_strategy: "cancel_in_progress",
            rate_limit: None,
            rate_limit_units: 1,
            rate_limit_key: None,
            expires_ms: 0,
            parents: &[],
            workflow: false,
        }
    );
    assert_eq!(
        tick::SPEC,
        TaskSpec {
            name: "tick",
            cron: Some("@every 30s"),
            overlap: Some("buffer_one"),
            catch_up: Some("all"),
            ..TaskSpec::DEFAULT
        }
    );
    assert_eq!(
        charge::SPEC,
        TaskSpec {
            name: "charge",
            rate_limit: Some("stripe"),
            rate_limit_units: 2,
            rate_limit_key: Some("to"),
            ..TaskSpec::DEFAULT
        }
    );
    assert_eq!(
        notify::SPEC,
        TaskSpec {
            name: "notify",
            concurrency: 1,
            concurrency_key: Some("to"),
            rate_limit: Some("mailer"),
            ..TaskSpec::DEFAULT
        }
    );
    assert_eq!(fan_out::SPEC, TaskSpec { name: "fan_out", ..TaskSpec::DEFAULT });
    fn output_of<T: Task<Input = I, Output = O>, I, O>(_: T) {}
    output_of::<send_email, Email, String>(send_email {});
    output_of::<fan_out, Vec<String>, usize>(fan_out {});

    let mut registered: Vec<&str> =
        owlclaw::__private::registered().map(|task| task.spec.name).collect();
    registered.sort_unstable();
    assert_eq!(registered, ["charge", "fan_out", "notify", "send-email", "tick"]);
}
