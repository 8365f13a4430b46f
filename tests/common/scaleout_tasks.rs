// Tasks of the scale-out tests (included with #[path] by `scaleout.rs` and by the
// `owlclaw-scaleout-worker` binary). Every execution appends one line `TASK RUN_ID ATTEMPT
// MICROS` to the file named by `OWLCLAW_SCALEOUT_LOG` (one file per worker process) before the
// task does anything else, so the test can tell how often each (run, attempt) was executed,
// across processes.

use owlclaw::{task, Context};
use std::io::Write;
use std::sync::{Mutex, OnceLock};

/// The variable naming the execution log of a worker process.
pub(crate) const LOG_ENV: &str = "OWLCLAW_SCALEOUT_LOG";

/// Task names, as registered.
pub(crate) const NOOP: &str = "so_noop";
pub(crate) const FLAKY: &str = "so_flaky";
pub(crate) const DOOMED: &str = "so_doomed";
pub(crate) const DELAYED: &str = "so_delayed";
pub(crate) const TICK: &str = "so_tick";

fn log_file() -> &'static Mutex<Option<std::fs::File>> {
    static LOG: OnceLock<Mutex<Option<std::fs::File>>> = OnceLock::new();
    LOG.get_or_init(|| {
        Mutex::new(std::env::var_os(LOG_ENV).map(|path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("opening the execution log {path:?}: {e}"))
        }))
    })
}

/// Appends this execution to the process's log (one `write` of one line, O_APPEND).
fn record(ctx: &Context) -> anyhow::Result<()> {
    let micros = owlclaw::Utc::now().timestamp_micros();
    let line = format!(
        "{} {} {} {micros}\n",
        ctx.task_name(),
        ctx.run_id(),
        ctx.attempt()
    );
    let mut guard = log_file().lock().unwrap();
    let file = guard
        .as_mut()
        .ok_or_else(|| anyhow::anyhow!("{LOG_ENV} is not set"))?;
    file.write_all(line.as_bytes())?;
    Ok(())
}

/// Succeeds at once. (Retries only matter when a lease expires: the run must still succeed.)
#[task(
    retries = 3,
    timeout = "30s",
    backoff_initial = "100ms",
    backoff_max = "1s"
)]
pub(crate) async fn so_noop(ctx: Context, _n: u64) -> anyhow::Result<u32> {
    record(&ctx)?;
    Ok(ctx.attempt())
}

/// Fails its first attempt, succeeds on the next.
#[task(
    retries = 3,
    timeout = "30s",
    backoff_initial = "100ms",
    backoff_max = "1s"
)]
pub(crate) async fn so_flaky(ctx: Context, _n: u64) -> anyhow::Result<u32> {
    record(&ctx)?;
    if ctx.attempt() == 1 {
        anyhow::bail!("first attempts of so_flaky always fail");
    }
    Ok(ctx.attempt())
}

/// Always fails: ends `failed` after its 3 attempts.
#[task(
    retries = 2,
    timeout = "30s",
    backoff_initial = "100ms",
    backoff_max = "1s"
)]
pub(crate) async fn so_doomed(ctx: Context, _n: u64) -> anyhow::Result<u32> {
    record(&ctx)?;
    anyhow::bail!("so_doomed always fails (attempt {})", ctx.attempt())
}

/// Scheduled 1 to 3 s ahead; succeeds at once.
#[task(
    retries = 3,
    timeout = "30s",
    priority = 7,
    backoff_initial = "100ms",
    backoff_max = "1s"
)]
pub(crate) async fn so_delayed(ctx: Context, _n: u64) -> anyhow::Result<u32> {
    record(&ctx)?;
    Ok(ctx.attempt())
}

/// Fires every second for as long as its cron schedule exists.
#[task(cron = "* * * * * *", timeout = "30s")]
pub(crate) async fn so_tick(ctx: Context) -> anyhow::Result<()> {
    record(&ctx)
}

/// One line of an execution log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Execution {
    pub(crate) task: String,
    pub(crate) run_id: String,
    pub(crate) attempt: u32,
    pub(crate) at_micros: i64,
}

/// Parses an execution log.
pub(crate) fn parse_log(text: &str) -> Vec<Execution> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(f.len(), 4, "malformed execution log line {l:?}");
            Execution {
                task: f[0].to_string(),
                run_id: f[1].to_string(),
                attempt: f[2].parse().expect("attempt"),
                at_micros: f[3].parse().expect("time"),
            }
        })
        .collect()
}
