//! Commands that watch or copy the state as it changes: `events --follow`, `top` and `export`.

use crate::args::{EventsArgs, ExportArgs, TopArgs};
use crate::failure::Failure;
use crate::render;
use owlclaw::{Client, ListFilter, RunEvent, RunStatus};
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// The version of the documents the CLI writes itself (`export`, `events --jsonl`).
pub(crate) const SCHEMA_VERSION: u32 = 1;

/// Writes `text` to stdout at once (streaming commands print as they go).
fn print_now(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::new("io", format!("writing to stdout failed: {e}")))
}

/// One event as a JSON line.
fn jsonl(event: &RunEvent) -> Result<String, Failure> {
    #[derive(Serialize)]
    struct Line<'a> {
        schema_version: u32,
        #[serde(flatten)]
        event: &'a RunEvent,
    }
    let line = serde_json::to_string(&Line {
        schema_version: SCHEMA_VERSION,
        event,
    })
    .map_err(|e| Failure::new("internal", format!("cannot print JSON: {e}")))?;
    Ok(format!("{line}\n"))
}

/// `events RUN --follow [--jsonl]`: the transitions so far, then each new one as it happens,
/// until the run is finished.
pub(crate) async fn follow_events(client: &Client, args: &EventsArgs) -> Result<(), Failure> {
    let mut printed = 0;
    loop {
        let events = client.events(args.run).await?;
        for e in events.iter().skip(printed) {
            let text = if args.jsonl {
                jsonl(e)?
            } else {
                format!(
                    "{}  {} → {}  attempt {}{}  {}\n",
                    render::time(e.at),
                    e.from.map_or("created", |s| s.as_str()),
                    e.to.as_str(),
                    e.attempt,
                    e.worker
                        .as_deref()
                        .map(|w| format!(", worker {w}"))
                        .unwrap_or_default(),
                    e.reason
                )
            };
            print_now(&text)?;
        }
        printed = printed.max(events.len());
        // A finished run has no transition left but a retry: stop once its last one is printed.
        if events.last().is_some_and(|e| e.to.is_terminal()) {
            return Ok(());
        }
        // Returns early when the run finishes.
        client.wait(args.run, Duration::from_millis(500)).await?;
    }
}

/// `events RUN --jsonl` without `--follow`.
pub(crate) fn events_jsonl(events: &[RunEvent], out: &mut String) -> Result<(), Failure> {
    for e in events {
        out.push_str(&jsonl(e)?);
    }
    Ok(())
}

/// What `top` shows at one refresh.
#[derive(Debug, Serialize)]
struct Screen {
    schema_version: u32,
    counts: Vec<(RunStatus, u64)>,
    queued_by_task: Vec<(String, u64)>,
    succeeded_per_second: Option<f64>,
    workers: Vec<owlclaw::WorkerInfo>,
}

/// Counts of the runs in each live status, the queued ones by task (from the newest 1,000),
/// and the workers.
async fn screen(client: &Client) -> Result<Screen, Failure> {
    let mut counts = Vec::new();
    for status in [
        RunStatus::Scheduled,
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ] {
        let n = client
            .count(ListFilter {
                status: Some(status),
                ..ListFilter::default()
            })
            .await?;
        counts.push((status, n));
    }
    let queued = client
        .list(ListFilter {
            status: Some(RunStatus::Queued),
            limit: Some(1000),
            ..ListFilter::default()
        })
        .await?;
    let mut by_task: std::collections::BTreeMap<String, u64> = Default::default();
    for r in queued.runs {
        *by_task.entry(r.task).or_default() += 1;
    }
    let mut queued_by_task: Vec<(String, u64)> = by_task.into_iter().collect();
    queued_by_task.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(Screen {
        schema_version: SCHEMA_VERSION,
        counts,
        queued_by_task,
        succeeded_per_second: None,
        workers: client.workers().await?,
    })
}

fn draw(s: &Screen) -> String {
    let mut out = String::new();
    let counts: Vec<String> = s
        .counts
        .iter()
        .map(|(status, n)| format!("{status} {n}"))
        .collect();
    out.push_str(&format!("runs: {}\n", counts.join("  ")));
    out.push_str(&format!(
        "succeeded per second: {}\n\n",
        s.succeeded_per_second
            .map_or_else(|| "(next refresh)".to_string(), |r| format!("{r:.1}"))
    ));
    let rows: Vec<Vec<String>> = s
        .queued_by_task
        .iter()
        .map(|(t, n)| vec![t.clone(), n.to_string()])
        .collect();
    out.push_str("queued by task (of the newest 1000):\n");
    out.push_str(&render::table(&["TASK", "QUEUED"], &rows));
    out.push('\n');
    out.push_str(&render::workers(&s.workers));
    out
}

/// `top`: refreshes a screen of counts, throughput and workers every `--interval`.
pub(crate) async fn top(client: &Client, args: &TopArgs, json: bool) -> Result<(), Failure> {
    let tty = std::io::stdout().is_terminal();
    let mut last: Option<(Instant, u64)> = None;
    loop {
        let mut s = screen(client).await?;
        let succeeded = s
            .counts
            .iter()
            .find(|(st, _)| *st == RunStatus::Succeeded)
            .map_or(0, |(_, n)| *n);
        let now = Instant::now();
        if let Some((at, before)) = last {
            let secs = now.duration_since(at).as_secs_f64();
            if secs > 0.0 {
                s.succeeded_per_second = Some(succeeded.saturating_sub(before) as f64 / secs);
            }
        }
        last = Some((now, succeeded));
        let text = if json {
            let mut t = serde_json::to_string(&s)
                .map_err(|e| Failure::new("internal", format!("cannot print JSON: {e}")))?;
            t.push('\n');
            t
        } else if tty && !args.once {
            // Home and clear, then the screen.
            format!("\x1b[H\x1b[2J{}", draw(&s))
        } else {
            format!("{}\n", draw(&s))
        };
        print_now(&text)?;
        if args.once {
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(args.interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// The document `export` writes.
#[derive(Debug, Serialize)]
struct Export {
    schema_version: u32,
    exported_at: owlclaw::DateTime<owlclaw::Utc>,
    runs_included: String,
    workers: Vec<owlclaw::WorkerInfo>,
    crons: Vec<owlclaw::CronSchedule>,
    rate_limits: Vec<owlclaw::RateLimit>,
    runs: Vec<owlclaw::RunSnapshot>,
}

/// `export --out FILE`: the state as one JSON document, written to a temporary file in the same
/// directory and renamed over FILE, so a reader never sees half of it.
pub(crate) async fn export(
    client: &Client,
    args: &ExportArgs,
    out: &mut String,
) -> Result<(), Failure> {
    let statuses: &[Option<RunStatus>] = match args.runs.as_str() {
        "all" => &[None],
        "unfinished" => &[
            Some(RunStatus::Scheduled),
            Some(RunStatus::Queued),
            Some(RunStatus::Running),
        ],
        _ => &[],
    };
    let mut runs = Vec::new();
    for status in statuses {
        let mut filter = ListFilter {
            status: *status,
            limit: Some(1000),
            ..ListFilter::default()
        };
        loop {
            let page = client.list(filter.clone()).await?;
            runs.extend(page.runs);
            match page.next_cursor {
                Some(c) => filter.cursor = Some(c),
                None => break,
            }
        }
    }
    let doc = Export {
        schema_version: SCHEMA_VERSION,
        exported_at: owlclaw::Utc::now(),
        runs_included: args.runs.clone(),
        workers: client.workers().await?,
        crons: client.crons().await?,
        rate_limits: client.rate_limits().await?,
        runs,
    };
    let text = serde_json::to_vec_pretty(&doc)
        .map_err(|e| Failure::new("internal", format!("cannot write JSON: {e}")))?;
    let dir = match args.out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let io = |what: &str, e: std::io::Error| {
        Failure::new("io", format!("{what} {}: {e}", args.out.display()))
    };
    let mut tmp =
        tempfile::NamedTempFile::new_in(&dir).map_err(|e| io("cannot write next to", e))?;
    tmp.write_all(&text)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| io("cannot write", e))?;
    tmp.persist(&args.out)
        .map_err(|e| io("cannot replace", e.error))?;
    out.push_str(&format!(
        "exported {} run(s), {} worker(s), {} cron(s) and {} rate limit(s) to {}\n",
        doc.runs.len(),
        doc.workers.len(),
        doc.crons.len(),
        doc.rate_limits.len(),
        args.out.display()
    ));
    Ok(())
}
