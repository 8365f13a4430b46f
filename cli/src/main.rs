//! `owlclaw`: inspect, submit, cancel and retry the runs of OwlClaw Tasks from a shell.
//!
//! In this version the command reaches runs directly through their store, the SQLite file that a
//! lite-mode program uses (it embeds the same engine), so the runs of a running program can be
//! inspected while it runs:
//!
//! ```text
//! owlclaw --database sqlite://.owlclaw/owlclaw.db list --status failed --limit 20
//! owlclaw status 0192f0c1-7b1e-7c3a-9d2e-5f0a1b2c3d4e
//! owlclaw events 0192f0c1-7b1e-7c3a-9d2e-5f0a1b2c3d4e
//! owlclaw submit send-email --input '{"to":"a@b.c"}' --delay 10s --priority 7
//! owlclaw submit report --input '{}' --retries 2 --timeout 5m --wait --wait-timeout 10m
//! owlclaw --user alice cancel 0192f0c1-7b1e-7c3a-9d2e-5f0a1b2c3d4e
//! owlclaw retry 0192f0c1-7b1e-7c3a-9d2e-5f0a1b2c3d4e --json | jq .status
//! owlclaw --config owlclaw.yaml crons
//! owlclaw migrate
//! ```
//!
//! # Where the runs are
//!
//! `--database URL`, else `OWLCLAW_DATABASE_URL`, else the `database_url` of `--config FILE`
//! (which `OWLCLAW_*` variables override, as for any program), else
//! `sqlite://.owlclaw/owlclaw.db`. Commands other than `submit` and `migrate` never create the
//! database: when its file does not exist they fail (exit 1). Server mode (`--server URL --token
//! T`, `OWLCLAW_SERVER_URL`, `mode: server`) is accepted on the command line but refused in this
//! version (exit 1, code `unsupported`), as are the `serve`, `purge` and `token` commands.
//!
//! # Output
//!
//! Without `--json`: aligned tables (`list`, `events`, `crons`, `workers`), a `key: value` block
//! (`status`, `submit --wait`), or one line (`submit`, `cancel`, `retry`, `migrate`).
//!
//! With `--json`, stdout holds exactly one JSON document, the wire types of the HTTP API:
//!
//! | command | stdout |
//! |---|---|
//! | `submit` | the run's snapshot (`RunSnapshot`, as `POST /v1/runs` returns it; the existing run for a repeated idempotency key); with `--wait`, its last snapshot |
//! | `status`, `cancel`, `retry` | the run's snapshot (`RunSnapshot`) |
//! | `list` | `{"runs": [RunSnapshot...], "next_cursor": "..." or null}` (`RunPage`) |
//! | `events` | `[RunEvent...]`, oldest first |
//! | `crons` | `[CronSchedule...]` |
//! | `workers` | `[WorkerInfo...]` |
//! | `migrate` | `{"migrated": true, "database": URL}` (password redacted) |
//!
//! # Exit codes and errors
//!
//! 0 on success; 1 when the command is refused or fails, with `error: <message>` on stderr, or
//! under `--json` `{"error":{"code":..,"message":..}}` where `code` is the engine's error code
//! (`not_found`, `forbidden`, `invalid_input`, `invalid_transition`, `idempotency_conflict`,
//! `config`, ...), `task_failed` / `cancelled` / `timeout` for `submit --wait`, `connection` for a
//! missing database and `unsupported` for what this version can't do yet; 2 on bad usage (an
//! unknown flag, a malformed `--input` JSON, run id, duration or time), code `usage`.
//!
//! Logs go to stderr, only when `RUST_LOG` is set (`RUST_LOG=owlclaw=debug`).

mod args;
mod failure;
mod render;
mod target;

use args::{Cli, Command, List, Submit};
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};
use failure::{Failure, EXIT_USAGE};
use owlclaw::{Client, Config, Error, ListFilter, RunId, RunSnapshot, RunStatus, ScheduleRequest};
use owlclaw_core::duration::format_duration;
use serde::Serialize;
use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use target::{Explicit, Need};

fn main() -> ExitCode {
    let raw: Vec<OsString> = std::env::args_os().collect();
    let json = wants_json(&raw);
    let (cli, explicit) = match parse(raw) {
        Ok(parsed) => parsed,
        Err(clap_error) => {
            use clap::error::ErrorKind;
            match clap_error.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => clap_error.exit(),
                _ if json => {
                    let failure = Failure::usage(first_line(&clap_error.to_string()));
                    emit_stderr(&failure.render(true));
                    return ExitCode::from(EXIT_USAGE);
                }
                _ => clap_error.exit(),
            }
        }
    };
    // `--json` swallowed by the free arguments of `serve`, `purge` and `token` counts too.
    let json = json || cli.global.json;
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let failure = Failure::new("internal", format!("cannot start the runtime: {e}"));
            emit_stderr(&failure.render(json));
            return ExitCode::from(failure.exit);
        }
    };
    let mut out = String::new();
    let result = runtime.block_on(run(&cli, explicit, &mut out));
    drop(runtime);
    emit_stdout(&out);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            emit_stderr(&failure.render(json));
            ExitCode::from(failure.exit)
        }
    }
}

/// Parses the command line; also tells which connection options were typed rather than read
/// from the environment.
fn parse(raw: Vec<OsString>) -> Result<(Cli, Explicit), clap::Error> {
    let matches = Cli::command().try_get_matches_from(raw)?;
    let typed = |id: &str| {
        // Global options are recorded on the subcommand's matches too.
        let on = |m: &clap::ArgMatches| m.value_source(id) == Some(ValueSource::CommandLine);
        on(&matches) || matches.subcommand().is_some_and(|(_, sub)| on(sub))
    };
    let explicit = Explicit {
        database: typed("database"),
        server: typed("server"),
        token: typed("token"),
    };
    let cli = Cli::from_arg_matches(&matches)?;
    Ok((cli, explicit))
}

/// `--json` anywhere before a `--`, so that even usage errors can be reported as JSON.
fn wants_json(raw: &[OsString]) -> bool {
    raw.iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .any(|a| a == "--json")
}

fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_owned()
}

fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .try_init();
    }
}

/// Writes to stdout; a closed pipe (`owlclaw list | head`) is not an error.
fn emit_stdout(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

fn emit_stderr(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// Appends `value` as pretty JSON and a newline.
fn push_json(out: &mut String, value: &impl Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Failure::new("internal", format!("cannot print JSON: {e}")))?;
    out.push_str(&text);
    out.push('\n');
    Ok(())
}

async fn run(cli: &Cli, explicit: Explicit, out: &mut String) -> Result<(), Failure> {
    let global = &cli.global;
    let need = match &cli.command {
        Command::Serve(_) => return Err(unavailable("serve")),
        Command::Purge(_) => return Err(unavailable("purge")),
        Command::Token(_) => return Err(unavailable("token")),
        Command::Migrate => {
            return migrate(
                target::resolve(global, explicit, Need::MayCreate)?,
                global.json,
                out,
            )
            .await
        }
        Command::Submit(_) => Need::MayCreate,
        _ => Need::Existing,
    };
    let config = target::resolve(global, explicit, need)?;
    let client = Client::connect(config).await?;
    let result = execute(cli, &client, out).await;
    let closed = client.disconnect().await;
    result?;
    closed?;
    Ok(())
}

fn unavailable(command: &str) -> Failure {
    Failure::unsupported(format!(
        "`owlclaw {command}` is not available in this version yet"
    ))
}

async fn execute(cli: &Cli, client: &Client, out: &mut String) -> Result<(), Failure> {
    let json = cli.global.json;
    let user = cli.global.user.as_deref();
    let acting = match user {
        Some(user) => client.for_user(user),
        None => client.clone(),
    };
    match &cli.command {
        Command::Submit(args) => submit(&acting, args, json, out).await,
        Command::Status(arg) => {
            let run = acting.status(arg.run).await?;
            if json {
                push_json(out, &run)
            } else {
                out.push_str(&render::snapshot(&run));
                Ok(())
            }
        }
        Command::Events(arg) => {
            let events = acting.events(arg.run).await?;
            if json {
                push_json(out, &events)
            } else {
                out.push_str(&render::events(&events));
                Ok(())
            }
        }
        Command::Cancel(arg) => {
            let run = acting.cancel(arg.run).await?;
            print_change(&run, json, out)
        }
        Command::Retry(arg) => {
            let run = acting.retry(arg.run).await?;
            print_change(&run, json, out)
        }
        Command::List(args) => list(client, args, user, json, out).await,
        Command::Crons => {
            let crons = client.crons().await?;
            if json {
                push_json(out, &crons)
            } else {
                out.push_str(&render::crons(&crons));
                Ok(())
            }
        }
        Command::Workers => {
            let workers = client.workers().await?;
            if json {
                push_json(out, &workers)
            } else {
                out.push_str(&render::workers(&workers));
                Ok(())
            }
        }
        Command::Migrate | Command::Serve(_) | Command::Purge(_) | Command::Token(_) => {
            unreachable!("handled before connecting")
        }
    }
}

/// `cancel`, `retry`: the new snapshot, or `run ID: STATUS (attempt A/M)`.
fn print_change(run: &RunSnapshot, json: bool, out: &mut String) -> Result<(), Failure> {
    if json {
        return push_json(out, run);
    }
    out.push_str(&format!(
        "run {}: {} (attempt {}/{})\n",
        run.id, run.status, run.attempt, run.max_attempts
    ));
    Ok(())
}

async fn list(
    client: &Client,
    args: &List,
    user: Option<&str>,
    json: bool,
    out: &mut String,
) -> Result<(), Failure> {
    let owner = match (&args.owner, user) {
        (Some(owner), Some(user)) if owner != user => {
            return Err(Error::Forbidden(format!(
                "user {user:?} cannot list the runs of {owner:?}"
            ))
            .into());
        }
        (Some(owner), _) => Some(owner.clone()),
        (None, user) => user.map(str::to_owned),
    };
    let page = client
        .list(ListFilter {
            status: args.status,
            task: args.task.clone(),
            owner,
            limit: args.limit,
            cursor: args.cursor.clone(),
        })
        .await?;
    if json {
        push_json(out, &page)
    } else {
        out.push_str(&render::runs(&page));
        Ok(())
    }
}

async fn submit(
    client: &Client,
    args: &Submit,
    json: bool,
    out: &mut String,
) -> Result<(), Failure> {
    let request = ScheduleRequest {
        task: args.task.clone(),
        input: args.input.clone().unwrap_or(serde_json::Value::Null),
        delay: args.delay,
        run_at: args.at,
        priority: args.priority,
        idempotency_key: args.idempotency_key.clone(),
        metadata: args.metadata.clone(),
        retries: args.retries,
        timeout: args.timeout,
        ..ScheduleRequest::default()
    };
    let scheduled = client.submit(request).await.map_err(|error| {
        let overridden = args.retries.is_some() && args.timeout.is_some();
        let mut failure = Failure::from(error);
        if failure.code == "not_found" && !overridden {
            failure.message.push_str(
                "; to submit it anyway, give its retries and timeout: --retries N --timeout 30s",
            );
        }
        failure
    })?;
    let run = scheduled.run;
    if !args.wait {
        if json {
            return push_json(out, &run);
        }
        let how = if scheduled.created {
            "created".to_owned()
        } else {
            format!(
                "existing run for idempotency key {:?}",
                run.idempotency_key.as_deref().unwrap_or_default()
            )
        };
        out.push_str(&format!(
            "run {}: {} ({how}; task {}, priority {}, run at {})\n",
            run.id,
            run.status,
            run.task,
            run.priority,
            render::time(run.run_at)
        ));
        return Ok(());
    }
    let run = wait_for(client, run.id, args.wait_timeout).await?;
    if json {
        push_json(out, &run)?;
    } else {
        out.push_str(&render::snapshot(&run));
    }
    let error = match run.status {
        RunStatus::Succeeded => return Ok(()),
        RunStatus::Failed => Error::Task {
            run_id: run.id,
            message: run.error.clone().unwrap_or_else(|| "failed".to_owned()),
        },
        RunStatus::Cancelled => Error::Cancelled { run_id: run.id },
        status => Error::Timeout(format!(
            "run {} is still {status} after {}",
            run.id,
            format_duration(args.wait_timeout.unwrap_or_default())
        )),
    };
    Err(error.into())
}

/// Waits until the run is terminal or `limit` has passed; shows a spinner on stderr when it is a
/// terminal.
async fn wait_for(
    client: &Client,
    id: RunId,
    limit: Option<Duration>,
) -> Result<RunSnapshot, Failure> {
    const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
    let spinner = std::io::stderr().is_terminal();
    let tick = if spinner {
        Duration::from_millis(100)
    } else {
        Duration::from_secs(30)
    };
    let start = Instant::now();
    let mut frame = 0;
    let run = loop {
        let step = limit.map_or(tick, |l| l.saturating_sub(start.elapsed()).min(tick));
        let run = client.wait(id, step).await?;
        if run.status.is_terminal() || limit.is_some_and(|l| start.elapsed() >= l) {
            break run;
        }
        if spinner {
            emit_stderr(&format!(
                "\r\x1b[2K{} run {id}: {} ({}s)",
                FRAMES[frame % FRAMES.len()],
                run.status,
                start.elapsed().as_secs()
            ));
            frame += 1;
        }
    };
    if spinner {
        emit_stderr("\r\x1b[2K");
    }
    Ok(run)
}

/// `migrate`: opens the store, which creates it if needed and applies the migrations.
async fn migrate(config: Config, json: bool, out: &mut String) -> Result<(), Failure> {
    let store = owlclaw_engine::store::open(&config.database_url).await?;
    store.close().await;
    let database = owlclaw::config::redact_url(&config.database_url);
    if json {
        push_json(
            out,
            &serde_json::json!({ "migrated": true, "database": database }),
        )
    } else {
        out.push_str(&format!("migrated {database}\n"));
        Ok(())
    }
}
