//! Faults under a task that is inside a durable step, in server mode: the engine server dies, its
//! database drops every connection, a replica dies with the step's checkpoint in flight. In each
//! case the attempt goes on (attempt 1 succeeds), and no step body runs twice.
//!
//! The task waits at gates that the test opens, so each fault hits a known point: before the
//! first step (its read of the run's recorded steps), and inside the first step (its checkpoint).
//! On PostgreSQL, the test holds the run's row lock so that the checkpoint is provably inside the
//! engine, waiting, when the fault hits.

use owlclaw::{task, Client, Context, RunStatus};
use owlclaw_tests::{config_for, eventually, TestDb, TestEnv};
use sqlx::Connection;
use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Leases far longer than any outage here: an expired lease would start a second attempt, which
/// is another fault than the one under test.
const LONG_LEASE: Duration = Duration::from_secs(60);
/// How long the engine stays dead.
const OUTAGE: Duration = Duration::from_millis(500);
/// Generous deadlines: the machine may be loaded.
const DEADLINE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Gates and counters, keyed by test

#[derive(Default)]
struct Gates {
    runs: HashMap<String, u32>,
    entered: HashSet<String>,
    open: HashSet<String>,
}

fn gates() -> &'static Mutex<Gates> {
    static GATES: OnceLock<Mutex<Gates>> = OnceLock::new();
    GATES.get_or_init(Default::default)
}

/// Counts one execution of `what`.
fn bump(what: &str) {
    *gates()
        .lock()
        .unwrap()
        .runs
        .entry(what.to_string())
        .or_default() += 1;
}

fn count(what: &str) -> u32 {
    gates().lock().unwrap().runs.get(what).copied().unwrap_or(0)
}

/// Waits until the test opens gate `name`.
async fn gate(name: String) {
    gates().lock().unwrap().entered.insert(name.clone());
    while !gates().lock().unwrap().open.contains(&name) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn open(name: &str) {
    gates().lock().unwrap().open.insert(name.to_string());
}

async fn reached(name: &str) {
    eventually(&format!("the task at gate {name}"), DEADLINE, || async {
        gates().lock().unwrap().entered.contains(name).then_some(())
    })
    .await
}

/// Two durable steps behind gates: `KEY:start` before the first step, `KEY:first` inside it.
/// Retries are allowed: a fault that failed the attempt would run the first step's body again.
#[task(retries = 2, timeout = "5m", backoff_initial = "50ms")]
async fn stepper(ctx: Context, key: String) -> anyhow::Result<u32> {
    gate(format!("{key}:start")).await;
    let first: u32 = ctx
        .step("first", || async {
            bump(&format!("{key}:first"));
            gate(format!("{key}:first")).await;
            anyhow::Ok(1)
        })
        .await?;
    let second: u32 = ctx
        .step("second", || async {
            bump(&format!("{key}:second"));
            anyhow::Ok(2)
        })
        .await?;
    Ok(first + second)
}

/// The run of `key` succeeded in its first attempt, each step body ran once, and nothing failed.
async fn assert_one_clean_attempt(client: &Client, run: &owlclaw::RunHandle<u32>, key: &str) {
    assert_eq!(run.result_timeout(DEADLINE).await.unwrap(), 3);
    let snap = client.status(run.id()).await.unwrap();
    assert_eq!(snap.status, RunStatus::Succeeded);
    assert_eq!(snap.attempt, 1, "the attempt went on: {snap:?}");
    assert_eq!(count(&format!("{key}:first")), 1, "the first step ran once");
    assert_eq!(
        count(&format!("{key}:second")),
        1,
        "the second step ran once"
    );
    let events = client.events(run.id()).await.unwrap();
    let reasons: Vec<(u32, RunStatus, &str)> = events
        .iter()
        .map(|e| (e.attempt, e.to, e.reason.as_str()))
        .collect();
    assert!(
        events.iter().all(|e| e.attempt <= 1),
        "one attempt: {reasons:?}"
    );
    let steps: Vec<&str> = events
        .iter()
        .filter(|e| e.reason.starts_with("step "))
        .map(|e| e.reason.as_str())
        .collect();
    assert_eq!(
        steps,
        ["step 0 \"first\" succeeded", "step 1 \"second\" succeeded"],
        "{reasons:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Engine servers in child processes

/// An engine server (`owlclaw-test-engine`) in a child process; killed (SIGKILL) when dropped.
struct EngineProc {
    child: Child,
    url: String,
}

impl EngineProc {
    /// Starts an engine on `database_url`, listening on `listen`, with [`LONG_LEASE`]; with
    /// `token`, it creates an API token for the default tenant and this returns it.
    async fn start(database_url: &str, listen: &str, token: bool) -> (EngineProc, Option<String>) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_owlclaw-test-engine"));
        cmd.arg(database_url)
            .args(["--listen", listen])
            .args(["--lease-ms", &LONG_LEASE.as_millis().to_string()])
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        if token {
            cmd.args(["--token-tenant", owlclaw_engine::LITE_TENANT]);
        }
        let mut child = cmd.spawn().expect("spawn owlclaw-test-engine");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(DEADLINE, lines.next_line())
            .await
            .expect("the engine ready in time")
            .expect("reading the engine's stdout")
            .expect("the engine printed its ready line");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let mut parts = line.strip_prefix("ready ").expect(&line).split_whitespace();
        let url = parts.next().expect("the engine's URL").to_string();
        let token = parts.next().map(str::to_string);
        (EngineProc { child, url }, token)
    }

    /// Its address, to start another engine on it.
    fn addr(&self) -> &str {
        self.url.strip_prefix("http://").expect("an http URL")
    }

    /// SIGKILL: no graceful shutdown, requests in flight cut.
    async fn kill(&mut self) {
        self.child.start_kill().expect("SIGKILL the engine");
        self.child.wait().await.expect("reap the engine");
    }
}

/// A client (and its worker, serving `stepper`) of the engine servers at `urls`.
async fn worker_client(urls: &str, token: &str) -> (Client, owlclaw::Worker) {
    let client = Client::connect(config_for(urls, Some(token)))
        .await
        .expect("connect");
    let worker = client
        .worker("steady")
        .task::<stepper>()
        .start()
        .await
        .expect("worker");
    (client, worker)
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL helpers

/// A connection to `url` holding the row lock of `run` in an open transaction: a checkpoint of
/// the run waits for it inside the engine.
async fn lock_run(url: &str, run: owlclaw::RunId) -> sqlx::PgConnection {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
    sqlx::query("SELECT 1 FROM runs WHERE id = $1 FOR UPDATE")
        .bind(run.to_string())
        .fetch_one(&mut conn)
        .await
        .expect("lock the run's row");
    conn
}

/// Waits until a session of the engine waits for the lock `conn` holds.
async fn engine_waits_for(conn: &mut sqlx::PgConnection) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))",
        )
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        if n > 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the engine waiting for the run's row lock within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn release(mut conn: sqlx::PgConnection) {
    sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Tests

/// Server mode on a SQLite file: the server process is killed (SIGKILL) twice, once while the
/// task reads its recorded steps and once while it commits its first step, and each time a new
/// server starts on the same file and port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_while_a_task_is_inside_a_step_does_not_fail_the_attempt() {
    owlclaw_tests::init_tracing();
    let key = "sqlite-kill";
    let db = TestDb::new();
    let (mut engine, token) = EngineProc::start(&db.url(), "127.0.0.1:0", true).await;
    let token = token.expect("a token");
    let addr = engine.addr().to_string();
    let (client, worker) = worker_client(&engine.url, &token).await;
    let run = stepper::enqueue(&client, key.to_string()).await.unwrap();

    // Dead while the task reads the steps recorded by earlier executions.
    reached(&format!("{key}:start")).await;
    engine.kill().await;
    open(&format!("{key}:start"));
    tokio::time::sleep(OUTAGE).await;
    let (mut engine, _) = EngineProc::start(&db.url(), &addr, false).await;

    // Dead while the first step's checkpoint is sent.
    reached(&format!("{key}:first")).await;
    engine.kill().await;
    open(&format!("{key}:first"));
    tokio::time::sleep(OUTAGE).await;
    let (_engine, _) = EngineProc::start(&db.url(), &addr, false).await;

    assert_one_clean_attempt(&client, &run, key).await;
    worker.shutdown().await.unwrap();
}

/// Server mode on PostgreSQL: every connection of the engine to its database is terminated
/// (`pg_terminate_backend`, as a database restart does) while the first step's checkpoint is
/// inside the engine. (The machine's shared PostgreSQL server itself is not restarted.)
async fn database_connections_dropped_while_a_step_commits_do_not_fail_the_attempt(env: TestEnv) {
    let key = format!("{:?}-pg-terminate", env.backend());
    env.set_engine(|e| e.lease = LONG_LEASE);
    let client = env.client().await;
    let worker = client
        .worker("steady")
        .task::<stepper>()
        .start()
        .await
        .unwrap();
    open(&format!("{key}:start"));
    let run = stepper::enqueue(&client, key.clone()).await.unwrap();
    reached(&format!("{key}:first")).await;

    let mut lock = lock_run(&env.database_url(), run.id()).await;
    open(&format!("{key}:first"));
    engine_waits_for(&mut lock).await;
    let (killed,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()) t",
    )
    .fetch_one(&mut lock)
    .await
    .unwrap();
    assert!(killed > 0, "the engine's connections were terminated");
    release(lock).await;

    assert_one_clean_attempt(&client, &run, &key).await;
    worker.shutdown().await.unwrap();
}

mod server_postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn database_connections_dropped_while_a_step_commits_do_not_fail_the_attempt() {
        if let Some(env) = owlclaw_tests::TestEnv::new(owlclaw_tests::Backend::ServerPostgres).await
        {
            super::database_connections_dropped_while_a_step_commits_do_not_fail_the_attempt(env)
                .await
        }
    }
}

/// Two engine replicas on one PostgreSQL database, the worker configured with both: the replica
/// it talks to is killed while the first step's checkpoint waits inside it. The checkpoint is
/// sent again to the other replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_with_a_checkpoint_in_flight_fails_over_without_failing_the_attempt() {
    owlclaw_tests::init_tracing();
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let key = "replica-kill";
    let (mut first, token) = EngineProc::start(&db.url(), "127.0.0.1:0", true).await;
    let token = token.expect("a token");
    let (second, _) = EngineProc::start(&db.url(), "127.0.0.1:0", false).await;
    let (client, worker) = worker_client(&format!("{},{}", first.url, second.url), &token).await;
    open(&format!("{key}:start"));
    let run = stepper::enqueue(&client, key.to_string()).await.unwrap();
    reached(&format!("{key}:first")).await;

    let mut lock = lock_run(&db.url(), run.id()).await;
    open(&format!("{key}:first"));
    engine_waits_for(&mut lock).await;
    first.kill().await;
    release(lock).await;

    assert_one_clean_attempt(&client, &run, key).await;
    worker.shutdown().await.unwrap();
    drop(second);
}
