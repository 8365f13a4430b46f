//! The command line: global options, subcommands and the parsers of their values.
//!
//! A value that can't be parsed (a malformed `--input` JSON, a run id that is not a UUID, a
//! duration without a unit, an RFC 3339 time that isn't one) is a usage error reported by clap,
//! naming the flag and the value, with exit code 2.

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use owlclaw::{RunId, RunStatus};
use owlclaw_core::duration::parse_duration;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// Inspect, submit, cancel and retry the runs of OwlClaw Tasks; run an engine server.
///
/// The runs are reached either through an engine server (`--server URL --token T`, or
/// OWLCLAW_SERVER_URL and OWLCLAW_API_TOKEN, or `mode: server` in `--config owlclaw.yaml`) or
/// directly through their store: `--database sqlite://path` (or OWLCLAW_DATABASE_URL, or the
/// `database_url` of `--config`), by default `sqlite://.owlclaw/owlclaw.db`, the file a lite-mode
/// program uses, so that its runs can be inspected from a shell while it runs. Options typed on
/// the command line win; `--config` is read as a program reads it (OWLCLAW_* variables override
/// its values), and without it the environment decides.
///
/// Exit codes: 0 on success, 1 when the command is refused or fails, 2 on bad usage.
#[derive(Debug, Parser)]
#[command(name = "owlclaw", version, max_term_width = 100)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options accepted before or after the command.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub(crate) struct Global {
    /// Print the result as JSON on stdout (the wire types of the HTTP API) and errors as
    /// {"error":{"code":..,"message":..}} on stderr.
    #[arg(long, global = true)]
    pub(crate) json: bool,

    /// The store of the runs: sqlite://path/to/owlclaw.db. Wins over --config and over a server
    /// URL from the environment; not together with --server.
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "OWLCLAW_DATABASE_URL",
        hide_env_values = true
    )]
    pub(crate) database: Option<String>,

    /// Read the mode, server URL, API token, database URL (and the worker lease) from this
    /// owlclaw.yaml, as a program would: OWLCLAW_* variables override it, options typed here win.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    /// An engine server to talk to (`owlclaw serve`), e.g. http://127.0.0.1:7070. Selects server
    /// mode; not together with --database.
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "OWLCLAW_SERVER_URL",
        hide_env_values = true
    )]
    pub(crate) server: Option<String>,

    /// The API token for the engine server (see `owlclaw token create`).
    #[arg(
        long,
        global = true,
        value_name = "TOKEN",
        env = "OWLCLAW_API_TOKEN",
        hide_env_values = true
    )]
    pub(crate) token: Option<String>,

    /// Act as this user: submitted runs are owned by it, and status, events, cancel and retry of
    /// runs owned by another user are refused. With `list`, the default --owner.
    #[arg(long, global = true, value_name = "USER")]
    pub(crate) user: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Schedule a run of TASK.
    Submit(Submit),
    /// Show a run's snapshot.
    Status(RunArg),
    /// List runs, newest first.
    List(List),
    /// Show a run's transition log, oldest first.
    Events(EventsArgs),
    /// Wait until a run finishes: a live spinner with its status and elapsed time on a terminal,
    /// a line per change of status otherwise; exits as `submit --wait` does.
    Wait(WaitArgs),
    /// Queue depth, runs per second and workers, refreshed until interrupted.
    Top(TopArgs),
    /// Write a snapshot of the state (workers, crons, rate limits, runs) to a file, atomically
    /// (a temporary file renamed), with a schema_version.
    Export(ExportArgs),
    /// Cancel a run that has not finished, or every run a filter matches (`--status queued
    /// --task T`: counted, confirmed, then cancelled 1,000 per transaction).
    Cancel(Act),
    /// Re-queue a failed or cancelled run as a new attempt, or every such run a filter matches.
    Retry(Act),
    /// Show a workflow's plan: its stages (tasks that run in parallel) and its critical path,
    /// each task's expected duration the median of its past runs.
    Plan(PlanArg),
    /// Show the task runs of a workflow run, with the tasks pending or skipped.
    Tasks(RunArg),
    /// List cron schedules (as `schedules list`).
    Crons,
    /// Cron schedules: list, pause, resume, or fire one once now.
    #[command(subcommand)]
    Schedules(SchedulesCommand),
    /// List live workers.
    Workers,
    /// Push events: each starts one run of every task with `on_event` set to its key.
    #[command(subcommand)]
    Event(EventCommand),
    /// Rate limits: named budgets of units per period that tasks spend
    /// (`#[task(rate_limit = "stripe")]`), one bucket per key.
    #[command(subcommand)]
    Ratelimit(RatelimitCommand),
    /// Create the database if needed and apply the migrations (a store only, not a server).
    Migrate,
    /// Run an engine server: the HTTP API of workers and clients, on a store.
    Serve(Serve),
    /// Watch the runs of a store in a browser: the dashboard (and the API) on a loopback port,
    /// without sign-in, e.g. for a lite-mode program's `--database sqlite://...` while it runs.
    Dashboard(Dashboard),
    /// Delete finished runs (succeeded, failed, cancelled) older than a duration, with their events
    /// and steps, directly in a store. The engine also purges by itself past its `retention`.
    Purge(Purge),
    /// Manage the API tokens of an engine server, directly in its store.
    #[command(subcommand)]
    Token(Token),
}

#[derive(Debug, Args)]
pub(crate) struct Purge {
    /// Delete runs that finished more than this long ago, e.g. `7d`, `12h`.
    #[arg(long, value_name = "DURATION", value_parser = parse_human_duration)]
    pub(crate) older_than: Duration,
}

#[derive(Debug, Args)]
pub(crate) struct Dashboard {
    /// The loopback address to listen on, HOST:PORT (127.0.0.1 or [::1]; port 0 picks one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7071")]
    pub(crate) listen: String,
}

#[derive(Debug, Args)]
pub(crate) struct Serve {
    /// The address to listen on, HOST:PORT; port 0 picks a free port (the one chosen is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7070")]
    pub(crate) listen: String,

    /// No authentication: every request is accepted without a token, as the `default` tenant
    /// (the tenant of lite mode). Development only: anyone who reaches the port can read, submit
    /// and cancel every run.
    #[arg(long)]
    pub(crate) insecure_dev: bool,

    /// Largest accepted request body, in bytes (default 1048576: 1 MiB).
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..=1_073_741_824))]
    pub(crate) body_limit: Option<u64>,

    /// How long a claimed run stays leased to a worker without a heartbeat (default: the
    /// worker.lease of --config, else 15s).
    #[arg(long, value_name = "DURATION", value_parser = parse_lease)]
    pub(crate) lease: Option<Duration>,

    /// Serve HTTPS with this certificate chain (PEM, leaf first); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<std::path::PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<std::path::PathBuf>,

    /// Time a client has to send a request's headers, and then its body (default 30s): past it
    /// the connection is closed, or the request answered 408.
    #[arg(long, value_name = "DURATION", value_parser = parse_lease)]
    pub(crate) read_timeout: Option<Duration>,

    /// A keep-alive connection with no request for this long is closed (default 60s).
    #[arg(long, value_name = "DURATION", value_parser = parse_lease)]
    pub(crate) idle_timeout: Option<Duration>,

    /// Most connections open at once; more wait to be accepted (default 1024).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub(crate) max_connections: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum EventCommand {
    /// Push an event: each task with `on_event = KEY` gets one run, whose input is the payload.
    Push(EventPush),
}

#[derive(Debug, Args)]
pub(crate) struct EventPush {
    /// The event's key, e.g. `order.paid`.
    #[arg(value_name = "KEY")]
    pub(crate) key: String,

    /// The payload, as JSON (default: null).
    #[arg(long, value_name = "JSON", value_parser = parse_json)]
    pub(crate) data: Option<Value>,

    /// The event's id: a second push with the same id starts nothing (default: a new UUID).
    #[arg(long, value_name = "ID")]
    pub(crate) id: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SchedulesCommand {
    /// List the schedules with their next tick, paused or not.
    List,
    /// Pause a schedule: it fires nothing until resumed (also across restarts).
    Pause(ScheduleArg),
    /// Resume a paused schedule; the ticks missed while paused are not fired.
    Resume(ScheduleArg),
    /// Fire a schedule once now (paused or not), without changing its ticks.
    Trigger(ScheduleArg),
    /// Create a schedule of a task: a cron expression (`--cron`) or an interval (`--every`).
    Create(ScheduleCreate),
    /// Delete a schedule created at run time (a `#[task(cron)]` one comes back when its worker
    /// registers).
    Delete(ScheduleArg),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("when").required(true).args(["cron", "every"])))]
pub(crate) struct ScheduleCreate {
    /// The task to schedule (one a worker has registered).
    #[arg(value_name = "TASK")]
    pub(crate) task: String,
    /// A cron expression: 5 fields, 6 with seconds first, or `@hourly`, `@daily`, ...
    #[arg(long, value_name = "EXPR")]
    pub(crate) cron: Option<String>,
    /// An interval (`30s`, `5m`, `1h30m`): ticks at its multiples since the Unix epoch.
    #[arg(long, value_name = "DURATION")]
    pub(crate) every: Option<String>,
    /// The cron expression's IANA time zone (default UTC).
    #[arg(long, value_name = "ZONE")]
    pub(crate) timezone: Option<String>,
    /// The input of each run, as JSON.
    #[arg(long, value_name = "JSON", value_parser = parse_json)]
    pub(crate) input: Option<Value>,
    /// When a tick comes while the last run is unfinished: allow, skip, cancel_previous or
    /// buffer_one.
    #[arg(long, value_name = "POLICY", value_parser = parse_overlap)]
    pub(crate) overlap: Option<owlclaw_core::cron::Overlap>,
    /// Ticks missed while no engine ran: latest, all or none.
    #[arg(long = "catch-up", value_name = "POLICY", value_parser = parse_catch_up)]
    pub(crate) catch_up: Option<owlclaw_core::cron::CatchUp>,
}

fn parse_overlap(s: &str) -> Result<owlclaw_core::cron::Overlap, String> {
    owlclaw_core::cron::Overlap::parse(s)
}

fn parse_catch_up(s: &str) -> Result<owlclaw_core::cron::CatchUp, String> {
    owlclaw_core::cron::CatchUp::parse(s)
}

#[derive(Debug, Args)]
pub(crate) struct ScheduleArg {
    /// The schedule's id: `task:NAME` for a `#[task(cron)]`, or the id `crons` lists.
    #[arg(value_name = "ID")]
    pub(crate) id: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RatelimitCommand {
    /// Create a rate limit, or change the one of that name: LIMIT units per PER, per key.
    Set(RatelimitSet),
    /// List the rate limits.
    List,
}

#[derive(Debug, Args)]
pub(crate) struct RatelimitSet {
    /// Its name, e.g. `stripe`.
    #[arg(value_name = "NAME")]
    pub(crate) name: String,

    /// Units granted per period: 1 to 1000000.
    #[arg(long, value_name = "N")]
    pub(crate) limit: u32,

    /// The period, e.g. `1s`, `1m`: 1ms to 1d.
    #[arg(long, value_name = "DURATION", value_parser = parse_human_duration)]
    pub(crate) per: Duration,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Token {
    /// Create an API token for a tenant and print it (once: the store keeps only its hash).
    Create(TokenCreate),
}

#[derive(Debug, Args)]
pub(crate) struct TokenCreate {
    /// The tenant the token belongs to: letters, digits and _ - . : /, at most 128 characters.
    /// Tenants never see each other's runs.
    #[arg(long, value_name = "NAME")]
    pub(crate) tenant: String,
}

/// One run, by id.
#[derive(Debug, Args)]
pub(crate) struct RunArg {
    /// The run's id (a UUID).
    #[arg(value_name = "RUN", value_parser = parse_run_id)]
    pub(crate) run: RunId,
}

#[derive(Debug, Args)]
pub(crate) struct PlanArg {
    /// The workflow's full name (namespace included).
    #[arg(value_name = "WORKFLOW")]
    pub(crate) workflow: String,
}

#[derive(Debug, Args)]
pub(crate) struct Submit {
    /// The task's full name (namespace included, e.g. `billing.send-email`).
    #[arg(value_name = "TASK")]
    pub(crate) task: String,

    /// The input, as JSON (default: null).
    #[arg(long, value_name = "JSON", value_parser = parse_json)]
    pub(crate) input: Option<Value>,

    /// Start after this delay: 500ms, 10s, 5m, 1h30m, 7d.
    #[arg(long, value_name = "DURATION", value_parser = parse_human_duration, conflicts_with = "at")]
    pub(crate) delay: Option<Duration>,

    /// Start at this time (RFC 3339, e.g. 2030-01-01T09:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub(crate) at: Option<DateTime<Utc>>,

    /// 1 (lowest) to 10 (highest); the task's default when absent.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub(crate) priority: Option<i64>,

    /// The same key and input give back the same run; the same key with another input is
    /// refused (idempotency_conflict).
    #[arg(long, value_name = "KEY")]
    pub(crate) idempotency_key: Option<String>,

    /// How many times to retry a failed attempt (overrides the task's). With --timeout, allows
    /// submitting a task that no worker has registered yet.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub(crate) retries: Option<i64>,

    /// Timeout of one attempt (overrides the task's), e.g. 30s.
    #[arg(long, value_name = "DURATION", value_parser = parse_human_duration)]
    pub(crate) timeout: Option<Duration>,

    /// Free-form JSON kept with the run.
    #[arg(long, value_name = "JSON", value_parser = parse_json)]
    pub(crate) metadata: Option<Value>,

    /// Wait until the run finishes and print its final state; exit 1 if it failed or was
    /// cancelled.
    #[arg(long)]
    pub(crate) wait: bool,

    /// With --wait: give up after this long (exit 1, code `timeout`). Default: no limit.
    #[arg(long, value_name = "DURATION", value_parser = parse_human_duration, requires = "wait")]
    pub(crate) wait_timeout: Option<Duration>,
}

#[derive(Debug, Args)]
pub(crate) struct List {
    /// Only runs in this status: scheduled, queued, running, succeeded, failed, cancelled.
    #[arg(long, value_name = "STATUS", value_parser = parse_status)]
    pub(crate) status: Option<RunStatus>,

    /// Only runs of this task (full name).
    #[arg(long, value_name = "TASK")]
    pub(crate) task: Option<String>,

    /// Only runs owned by this user.
    #[arg(long, value_name = "USER")]
    pub(crate) owner: Option<String>,

    /// At most this many runs (1 to 1000, default 50).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(crate) limit: Option<u32>,

    /// The next_cursor printed by the previous page.
    #[arg(long, value_name = "CURSOR")]
    pub(crate) cursor: Option<String>,

    /// Only runs created at or after this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub(crate) created_after: Option<DateTime<Utc>>,

    /// Only runs created before this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub(crate) created_before: Option<DateTime<Utc>>,

    /// Only the runs this run scheduled (a workflow run's tasks).
    #[arg(long, value_name = "RUN", value_parser = parse_run_id)]
    pub(crate) parent: Option<RunId>,
}

/// One run, or the runs a filter matches.
#[derive(Debug, Args)]
pub(crate) struct Act {
    /// The run's id (a UUID); or give a filter instead.
    #[arg(value_name = "RUN", value_parser = parse_run_id, required_unless_present_any = ["status", "task", "owner", "created_before", "created_after"])]
    pub(crate) run: Option<RunId>,
    /// Every run in this status.
    #[arg(long, value_name = "STATUS", value_parser = parse_status, conflicts_with = "run")]
    pub(crate) status: Option<RunStatus>,
    /// Every run of this task (full name).
    #[arg(long, value_name = "TASK", conflicts_with = "run")]
    pub(crate) task: Option<String>,
    /// Every run owned by this user.
    #[arg(long, value_name = "USER", conflicts_with = "run")]
    pub(crate) owner: Option<String>,
    /// Every run created before this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time, conflicts_with = "run")]
    pub(crate) created_before: Option<DateTime<Utc>>,
    /// Every run created at or after this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time, conflicts_with = "run")]
    pub(crate) created_after: Option<DateTime<Utc>>,
    /// Don't ask for confirmation (scripts).
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,
    /// `retry` only: replay the run from its first durable step of this name; that step and the
    /// later ones run again, the earlier ones keep their outputs and their children.
    #[arg(long, value_name = "STEP", requires = "run")]
    pub(crate) from_step: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct EventsArgs {
    /// The run's id (a UUID).
    #[arg(value_name = "RUN", value_parser = parse_run_id)]
    pub(crate) run: RunId,
    /// Keep printing transitions as they happen, until the run finishes.
    #[arg(long)]
    pub(crate) follow: bool,
    /// One JSON object per line (with schema_version), for scripts.
    #[arg(long)]
    pub(crate) jsonl: bool,
}

#[derive(Debug, Args)]
pub(crate) struct WaitArgs {
    /// The run's id (a UUID).
    #[arg(value_name = "RUN", value_parser = parse_run_id)]
    pub(crate) run: RunId,
    /// Give up after this long (default: wait as long as it takes), e.g. `10m`.
    #[arg(long, value_name = "DURATION", value_parser = parse_human_duration)]
    pub(crate) timeout: Option<Duration>,
}

#[derive(Debug, Args)]
pub(crate) struct TopArgs {
    /// Time between refreshes (default 2s).
    #[arg(long, value_name = "DURATION", value_parser = parse_human_duration, default_value = "2s")]
    pub(crate) interval: Duration,
    /// Print one screen and exit (for scripts and tests).
    #[arg(long)]
    pub(crate) once: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The file to write (replaced atomically).
    #[arg(long, value_name = "FILE")]
    pub(crate) out: std::path::PathBuf,
    /// Which runs to include: all, unfinished (scheduled, queued, running) or none.
    #[arg(long, value_name = "WHICH", default_value = "unfinished", value_parser = ["all", "unfinished", "none"])]
    pub(crate) runs: String,
}

fn parse_run_id(text: &str) -> Result<RunId, String> {
    text.parse::<RunId>().map_err(|_| {
        "not a run id: expected a UUID such as 0192f0c1-7b1e-7c3a-9d2e-5f0a1b2c3d4e".into()
    })
}

fn parse_json(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))
}

fn parse_human_duration(text: &str) -> Result<Duration, String> {
    parse_duration(text)
}

/// A duration greater than zero (a lease, a timeout).
fn parse_lease(text: &str) -> Result<Duration, String> {
    let lease = parse_duration(text)?;
    if lease.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(lease)
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("not an RFC 3339 time ({e}); e.g. 2030-01-01T09:00:00Z"))
}

fn parse_status(text: &str) -> Result<RunStatus, String> {
    text.parse::<RunStatus>().map_err(|_| {
        "unknown status; expected one of scheduled, queued, running, succeeded, failed, cancelled"
            .into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
