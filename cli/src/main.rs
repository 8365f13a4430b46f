//! `owlclaw`: inspect, submit, cancel and retry the runs of OwlClaw Tasks from a shell, and run
//! the engine server.
//!
//! The run commands reach runs either through an engine server (`owlclaw serve`, over its HTTP
//! API, as a server-mode program does) or directly through their store, the SQLite file that a
//! lite-mode program uses (it embeds the same engine), so the runs of a running program can be
//! inspected while it runs:
//!
//! ```text
//! owlclaw serve --listen 0.0.0.0:7070 --database sqlite:///var/lib/owlclaw/owlclaw.db
//! owlclaw token create --tenant acme --database sqlite:///var/lib/owlclaw/owlclaw.db
//! owlclaw --server http://owlclaw:7070 --token "$TOKEN" list --status failed --limit 20
//! OWLCLAW_SERVER_URL=http://owlclaw:7070 OWLCLAW_API_TOKEN=owc_... owlclaw status RUN
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
//! Highest first (see `target.rs`):
//!
//! 1. typed options: `--server URL` with `--token T` (server mode), or `--database URL` (the
//!    store); both together is a usage error (exit 2), and so is `--token` without a server;
//! 2. `--config FILE`, read as a program reads it (`OWLCLAW_*` variables override its values):
//!    its `mode`, `server_url`, `api_token` and `database_url`;
//! 3. the environment: `OWLCLAW_MODE` when set, else server mode when `OWLCLAW_SERVER_URL` is set
//!    (with `OWLCLAW_API_TOKEN`), else lite mode on `OWLCLAW_DATABASE_URL`;
//! 4. lite mode on `sqlite://.owlclaw/owlclaw.db`.
//!
//! In server mode the command connects as the SDK does (`Client::connect`), which checks that the
//! server answers (else exit 1, code `connection`, naming the URL) and accepts the token (else
//! code `unauthorized`). In lite mode, commands other than `submit` and `migrate` never create the
//! database: when its file does not exist they fail (exit 1, code `connection`).
//!
//! `serve`, `token create` and `migrate` work on a store, never through a server (`--server` or
//! `--token` with them is a usage error); `serve` and `token` take the database of the same layers
//! whatever the mode says, `migrate` refuses a server named by `--config` or the environment.
//! `serve` and `token create` create the database if it does not exist.
//!
//! # The engine server
//!
//! `owlclaw serve [--listen 127.0.0.1:7070] [--insecure-dev] [--body-limit BYTES] [--lease 15s]`
//! opens the engine on the store (applying migrations), binds the address (failure: exit 1, code
//! `listen`, naming it), prints one line on stderr,
//!
//! ```text
//! owlclaw engine listening on http://127.0.0.1:7070 (database: sqlite://.owlclaw/owlclaw.db)
//! ```
//!
//! (the port actually bound when `--listen` asks for port 0; a database password is redacted) and
//! serves until SIGINT or SIGTERM, then shuts down gracefully (long polls end at once, requests in
//! flight finish, the store is closed) and exits 0; a second signal stops it at once (exit 1).
//! `--insecure-dev` turns authentication off (every caller is the `default` tenant, that of lite
//! mode) and prints a warning banner. Requests need a token made by
//! `owlclaw token create --tenant NAME`, which writes it into the store (a running server sees it
//! at once) and prints it on stdout, once: the store keeps only its hash.
//!
//! # Output
//!
//! Without `--json`: aligned tables (`list`, `events`, `crons`, `workers`), a `key: value` block
//! (`status`, `submit --wait`), or one line (`submit`, `cancel`, `retry`, `migrate`, `token
//! create`: the token alone).
//!
//! With `--json`, stdout holds exactly one JSON document, the wire types of the HTTP API, the same
//! in server and lite mode:
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
//! | `token create` | `{"tenant": NAME, "token": TOKEN}` |
//!
//! # Exit codes and errors
//!
//! 0 on success; 1 when the command is refused or fails, with `error: <message>` on stderr, or
//! under `--json` `{"error":{"code":..,"message":..}}` where `code` is the engine's error code
//! (`not_found`, `forbidden`, `invalid_input`, `invalid_transition`, `idempotency_conflict`,
//! `unauthorized`, `config`, ...), `task_failed` / `cancelled` / `timeout` for `submit --wait`,
//! `connection` for an unreachable server or a missing database, `listen` for an address `serve`
//! can't bind; 2 on bad usage (an
//! unknown flag, a malformed `--input` JSON, run id, duration, time or server URL, `--server`
//! with `--database`), code `usage`.
//!
//! Logs go to stderr, only when `RUST_LOG` is set (`RUST_LOG=owlclaw=debug`), except for `serve`,
//! which logs at `info` by default (`owlclaw=info,owlclaw_engine=info`).

mod args;
mod failure;
mod render;
mod serve;
mod target;
mod watch;

use args::{Cli, Command, EventCommand, List, RatelimitCommand, SchedulesCommand, Submit, Token};
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};
use failure::{Failure, EXIT_USAGE};
use owlclaw::{
    Client, Config, Error, ListFilter, Mode, RunId, RunSnapshot, RunStatus, ScheduleRequest,
};
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
    let json = json || cli.global.json;
    init_logging(matches!(
        cli.command,
        Command::Serve(_) | Command::Dashboard(_)
    ));
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

/// Logs on stderr as `RUST_LOG` says; when it is not set, none, but for `serve` (`server`), which
/// logs at `info`.
fn init_logging(server: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var_os("RUST_LOG") {
        Some(_) => EnvFilter::from_default_env(),
        None if server => EnvFilter::new("owlclaw=info,owlclaw_engine=info"),
        None => return,
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
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
        Command::Serve(args) => {
            let config = target::store_target(global, explicit, "serve")?;
            return serve::serve(&config, args).await;
        }
        Command::Dashboard(args) => {
            let config = target::store_target(global, explicit, "dashboard")?;
            return serve::dashboard(&config, args).await;
        }
        Command::Purge(args) => {
            let config = target::store_target(global, explicit, "purge")?;
            return purge(&config, args.older_than, global.json, out).await;
        }
        Command::Token(Token::Create(args)) => {
            let config = target::store_target(global, explicit, "token create")?;
            return create_token(&config, &args.tenant, global.json, out).await;
        }
        Command::Migrate => {
            return migrate(target::migrate_target(global, explicit)?, global.json, out).await
        }
        Command::Submit(_) => Need::MayCreate,
        _ => Need::Existing,
    };
    let config = target::resolve(global, explicit, need)?;
    let client = connect(config).await?;
    let result = execute(cli, &client, out).await;
    let closed = client.disconnect().await;
    result?;
    closed?;
    Ok(())
}

/// `Client::connect`, with a hint when a server refuses the token.
async fn connect(config: Config) -> Result<Client, Failure> {
    let server = config.mode == Mode::Server;
    let tokenless = config.api_token.is_none();
    Client::connect(config).await.map_err(|error| {
        let mut failure = Failure::from(error);
        if server && failure.code == "unauthorized" {
            failure.message.push_str(if tokenless {
                " (no API token was given: pass --token T or set OWLCLAW_API_TOKEN; `owlclaw \
                 token create --tenant NAME` makes one)"
            } else {
                " (the server does not know this token: `owlclaw token create --tenant NAME` \
                 on its database makes one)"
            });
        }
        failure
    })
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
        Command::Events(args) if args.follow => watch::follow_events(&acting, args).await,
        Command::Events(args) => {
            let events = acting.events(args.run).await?;
            if args.jsonl {
                watch::events_jsonl(&events, out)
            } else if json {
                push_json(out, &events)
            } else {
                out.push_str(&render::events(&events));
                Ok(())
            }
        }
        Command::Wait(args) => {
            let run = wait_for(&acting, args.run, args.timeout, json).await?;
            print_waited(run, args.timeout, json, out)
        }
        Command::Top(args) => watch::top(client, args, json).await,
        Command::Export(args) => watch::export(client, args, out).await,
        Command::Plan(arg) => {
            let plan = client.orchestrator().workflow_plan(&arg.workflow).await?;
            if json {
                push_json(out, &plan)
            } else {
                out.push_str(&render::plan(&plan));
                Ok(())
            }
        }
        Command::Tasks(arg) => {
            let tasks = acting.workflow_tasks(arg.run).await?;
            if json {
                push_json(out, &tasks)
            } else {
                out.push_str(&render::workflow_tasks(&tasks));
                Ok(())
            }
        }
        Command::Cancel(act) if act.from_step.is_some() => Err(Failure::usage(
            "--from-step applies to retry: `owlclaw retry RUN --from-step STEP`",
        )),
        Command::Cancel(act) => match act.run {
            Some(id) => {
                let run = acting.cancel(id).await?;
                print_change(&run, json, out)
            }
            None => bulk(&acting, act, false, json, out).await,
        },
        Command::Retry(act) => match act.run {
            Some(id) => {
                let run = match &act.from_step {
                    Some(step) => acting.replay(id, step).await?,
                    None => acting.retry(id).await?,
                };
                print_change(&run, json, out)
            }
            None => bulk(&acting, act, true, json, out).await,
        },
        Command::List(args) => list(client, args, user, json, out).await,
        Command::Schedules(SchedulesCommand::Pause(arg)) => {
            let cron = client.pause_cron(&arg.id).await?;
            print_schedule(&cron, "paused", json, out)
        }
        Command::Schedules(SchedulesCommand::Resume(arg)) => {
            let cron = client.resume_cron(&arg.id).await?;
            print_schedule(&cron, "resumed", json, out)
        }
        Command::Schedules(SchedulesCommand::Trigger(arg)) => {
            let run = client.trigger_cron(&arg.id).await?.snapshot().await?;
            if json {
                push_json(out, &run)
            } else {
                out.push_str(&format!(
                    "schedule {} fired: run {} of {} ({})\n",
                    arg.id, run.id, run.task, run.status
                ));
                Ok(())
            }
        }
        Command::Schedules(SchedulesCommand::Create(args)) => {
            let expr = match (&args.cron, &args.every) {
                (Some(expr), _) => expr.clone(),
                (None, Some(every)) => format!("@every {every}"),
                (None, None) => unreachable!("clap requires --cron or --every"),
            };
            let cron = client
                .create_cron(owlclaw::CronRequest {
                    task: args.task.clone(),
                    expr,
                    timezone: args.timezone.clone(),
                    input: args.input.clone().unwrap_or(serde_json::Value::Null),
                    overlap: args.overlap,
                    catch_up: args.catch_up,
                })
                .await?;
            print_schedule(&cron, "created", json, out)
        }
        Command::Schedules(SchedulesCommand::Delete(arg)) => {
            client.delete_cron(&arg.id).await?;
            if json {
                push_json(out, &serde_json::json!({"id": arg.id, "deleted": true}))
            } else {
                out.push_str(&format!("schedule {} deleted\n", arg.id));
                Ok(())
            }
        }
        Command::Crons | Command::Schedules(SchedulesCommand::List) => {
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
        Command::Event(EventCommand::Push(args)) => {
            let data = args.data.clone().unwrap_or(serde_json::Value::Null);
            let pushed = match &args.id {
                Some(id) => acting.push_event_with_id(id, &args.key, data).await?,
                None => acting.push_event(&args.key, data).await?,
            };
            if json {
                push_json(out, &pushed)
            } else {
                out.push_str(&render::pushed_event(&pushed));
                Ok(())
            }
        }
        Command::Ratelimit(RatelimitCommand::Set(args)) => {
            let limit = client
                .set_rate_limit(&args.name, args.limit, args.per)
                .await?;
            if json {
                push_json(out, &limit)
            } else {
                out.push_str(&render::rate_limits(std::slice::from_ref(&limit)));
                Ok(())
            }
        }
        Command::Ratelimit(RatelimitCommand::List) => {
            let limits = client.rate_limits().await?;
            if json {
                push_json(out, &limits)
            } else {
                out.push_str(&render::rate_limits(&limits));
                Ok(())
            }
        }
        Command::Migrate
        | Command::Serve(_)
        | Command::Dashboard(_)
        | Command::Purge(_)
        | Command::Token(_) => {
            unreachable!("handled before connecting")
        }
    }
}

/// `cancel`, `retry`: the new snapshot, or `run ID: STATUS (attempt A/M)`.
/// A schedule after a pause or resume.
fn print_schedule(
    cron: &owlclaw::CronSchedule,
    done: &str,
    json: bool,
    out: &mut String,
) -> Result<(), Failure> {
    if json {
        return push_json(out, cron);
    }
    out.push_str(&format!(
        "schedule {} {done}; next tick: {}\n",
        cron.id,
        cron.next_tick
            .map_or_else(|| "none while paused".to_string(), render::time)
    ));
    Ok(())
}

/// A bulk cancel or retry: counts the matches, asks for confirmation (unless `--yes`), then
/// acts a page at a time, reporting progress on stderr.
async fn bulk(
    client: &Client,
    act: &args::Act,
    retry: bool,
    json: bool,
    out: &mut String,
) -> Result<(), Failure> {
    let filter = ListFilter {
        status: act.status,
        task: act.task.clone(),
        owner: act.owner.clone(),
        created_after: act.created_after,
        created_before: act.created_before,
        ..ListFilter::default()
    };
    let verb = if retry { "retry" } else { "cancel" };
    let matched = client.count(filter.clone()).await?;
    if !act.yes {
        if !std::io::stdin().is_terminal() {
            return Err(Failure::usage(format!(
                "{matched} run(s) match: pass --yes to {verb} them without a terminal to confirm on"
            )));
        }
        eprint!("{matched} run(s) match. {verb} them? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .map_err(|e| Failure::new("io", format!("reading the answer failed: {e}")))?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            out.push_str("nothing done\n");
            return Ok(());
        }
    }
    let show = !json && std::io::stderr().is_terminal();
    let changed = if retry {
        client
            .retry_where(filter, |_, n| {
                if show {
                    eprint!("\rretried {n} of {matched}");
                }
            })
            .await?
    } else {
        client
            .cancel_where(filter, |_, n| {
                if show {
                    eprint!("\rcancelled {n} of {matched}");
                }
            })
            .await?
    };
    if show {
        eprintln!();
    }
    if json {
        push_json(
            out,
            &serde_json::json!({"schema_version": 1, "matched": matched, "changed": changed}),
        )
    } else {
        let done = if retry { "retried" } else { "cancelled" };
        out.push_str(&format!(
            "{done} {changed} of {matched} matching run(s); the others' status did not allow it\n"
        ));
        Ok(())
    }
}

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
            created_after: args.created_after,
            created_before: args.created_before,
            parent_id: args.parent,
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
    let run = wait_for(client, run.id, args.wait_timeout, json).await?;
    print_waited(run, args.wait_timeout, json, out)
}

/// Prints the snapshot a wait ended with; an unsuccessful end is the command's failure.
fn print_waited(
    run: RunSnapshot,
    limit: Option<Duration>,
    json: bool,
    out: &mut String,
) -> Result<(), Failure> {
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
            format_duration(limit.unwrap_or_default())
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
    json: bool,
) -> Result<RunSnapshot, Failure> {
    const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
    let spinner = std::io::stderr().is_terminal() && !json;
    let tick = if spinner {
        Duration::from_millis(100)
    } else {
        Duration::from_secs(1)
    };
    let start = Instant::now();
    let mut frame = 0;
    let mut last_status = None;
    let run = loop {
        let step = limit.map_or(tick, |l| l.saturating_sub(start.elapsed()).min(tick));
        let run = client.wait(id, step).await?;
        if !spinner && !json && !run.status.is_terminal() && last_status != Some(run.status) {
            // Not a terminal: a plain line per change of status (none under --json, whose
            // stderr holds only an error document).
            emit_stderr(&format!(
                "run {id}: {} ({}s)\n",
                run.status,
                start.elapsed().as_secs()
            ));
            last_status = Some(run.status);
        }
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

/// `token create`: writes a new token of `tenant` into the store and prints it, once.
/// `purge --older-than D`: deletes finished runs, with their events and steps, in the store.
async fn purge(
    config: &Config,
    older_than: Duration,
    json: bool,
    out: &mut String,
) -> Result<(), Failure> {
    let engine = owlclaw_engine::Engine::start(owlclaw_engine::EngineConfig {
        database_url: config.database_url.clone(),
        ..owlclaw_engine::EngineConfig::default()
    })
    .await?;
    let purged = engine.purge(older_than).await;
    engine.shutdown().await;
    let purged = purged?;
    let older_than = owlclaw_core::duration::format_duration(older_than);
    if json {
        push_json(
            out,
            &serde_json::json!({ "purged": purged, "older_than": older_than }),
        )
    } else {
        out.push_str(&format!(
            "purged {purged} finished run(s) older than {older_than}\n"
        ));
        Ok(())
    }
}

async fn create_token(
    config: &Config,
    tenant: &str,
    json: bool,
    out: &mut String,
) -> Result<(), Failure> {
    // Checked first, so that a bad name does not create a database.
    owlclaw_core::task::validate_task_name(tenant)
        .map_err(|e| Error::invalid_input("tenant", e.replace("task name", "tenant name")))?;
    let engine = owlclaw_engine::Engine::start(owlclaw_engine::EngineConfig {
        database_url: config.database_url.clone(),
        ..owlclaw_engine::EngineConfig::default()
    })
    .await?;
    let created = engine.create_token(tenant).await;
    engine.shutdown().await;
    let token = created?;
    if json {
        push_json(
            out,
            &serde_json::json!({ "tenant": tenant, "token": token }),
        )?;
    } else {
        out.push_str(&token);
        out.push('\n');
    }
    emit_stderr(&format!(
        "created an API token for tenant {tenant:?} in {}. It is shown only once: the server \
         keeps only its hash. Use it with --token or OWLCLAW_API_TOKEN.\n",
        owlclaw::config::redact_url(&config.database_url)
    ));
    Ok(())
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
