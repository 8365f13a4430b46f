//! The benchmark protocol of /work/shared/BENCH.md applied to apalis 1.0 (apalis-sqlite and
//! apalis-postgres), so that OwlClaw's figures can be compared with a Rust peer.
//!
//!   owlclaw-peer-apalis --backend sqlite|postgres [--tasks N] [--skip-latency] [--json]
//!                       [--pg-url URL] [--poll-ms MS]
//!
//! The benchmark process enqueues (single, bulk, latency) and observes the store; the worker is
//! ONE separate process (this executable re-run as `__worker`) with concurrency 10, driven over
//! its stdin/stdout by a tiny line protocol:
//!   parent -> child: `expect K` (reset the sample buffer, report when K bodies have started),
//!                    `go` (build and start the apalis worker), EOF (exit)
//!   child -> parent: `ready`, `ok`, `reached`, `samples <json array of queue-to-start µs>`
use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use apalis::prelude::*;
use apalis_postgres::{PgPool, PostgresStorage};
use apalis_sqlite::{SqlitePool, SqliteStorage};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

type Err = Box<dyn std::error::Error + Send + Sync>;

/// The protocol's job: `{ "i": n, "t": enqueue wall-clock µs }`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    i: u64,
    t: u64,
}

const SINGLE_JOBS: u64 = 2_000;
const BULK_CHUNK: usize = 1_000;
const LATENCY_JOBS: u64 = 1_000;
const SLOTS: usize = 10;

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as u64
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

struct Args {
    backend: Backend,
    tasks: u64,
    skip_latency: bool,
    json: bool,
    pg_url: String,
    poll_ms: u64,
    // worker only
    url: String,
}

fn parse_args(it: impl Iterator<Item = String>) -> Args {
    let mut a = Args {
        backend: Backend::Sqlite,
        tasks: 20_000,
        skip_latency: false,
        json: false,
        pg_url: std::env::var("OWLCLAW_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
        poll_ms: 100,
        url: String::new(),
    };
    let mut it = it.peekable();
    while let Some(arg) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| die(&format!("{arg} needs a value")));
        match arg.as_str() {
            "--backend" => {
                a.backend = match val().as_str() {
                    "sqlite" => Backend::Sqlite,
                    "postgres" | "pg" => Backend::Postgres,
                    other => die(&format!("unknown backend {other}")),
                }
            }
            "--tasks" => a.tasks = val().parse().unwrap_or_else(|_| die("bad --tasks")),
            "--pg-url" => a.pg_url = val(),
            "--poll-ms" => a.poll_ms = val().parse().unwrap_or_else(|_| die("bad --poll-ms")),
            "--url" => a.url = val(),
            "--skip-latency" => a.skip_latency = true,
            "--json" => a.json = true,
            "-h" | "--help" => {
                eprintln!("usage: owlclaw-peer-apalis --backend sqlite|postgres [--tasks N] [--skip-latency] [--json] [--pg-url URL] [--poll-ms MS]");
                std::process::exit(0);
            }
            other => die(&format!("unknown argument {other}")),
        }
    }
    a
}

fn die(msg: &str) -> ! {
    eprintln!("owlclaw-peer-apalis: {msg}");
    std::process::exit(2)
}

#[tokio::main]
async fn main() -> Result<(), Err> {
    let mut argv = std::env::args().skip(1).peekable();
    if argv.peek().map(String::as_str) == Some("__worker") {
        argv.next();
        return worker_main(parse_args(argv)).await;
    }
    let args = parse_args(argv);
    let res = bench(&args).await;
    if let Err(e) = &res {
        eprintln!("owlclaw-peer-apalis: failed: {e}");
    }
    res
}

// ------------------------------------------------------------------------------------------------
// Stores: a fresh SQLite file or a fresh PostgreSQL database per phase, deleted afterwards.

enum Store {
    Sqlite { pool: SqlitePool, path: PathBuf, url: String },
    Postgres { pool: PgPool, admin_url: String, name: String, url: String },
}

fn rand_suffix() -> String {
    format!("{:x}{:x}", std::process::id(), now_us() & 0xffff_ffff)
}

fn pg_url_with_db(url: &str, db: &str) -> String {
    // postgres://user@host:port/dbname?query -> same with dbname replaced
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[scheme_end..].find('/').map(|i| i + scheme_end).unwrap_or(base.len());
    let mut out = format!("{}/{}", &base[..path_start], db);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

impl Store {
    async fn fresh(args: &Args) -> Result<Store, Err> {
        match args.backend {
            Backend::Sqlite => {
                let dir = std::env::var("CARGO_TARGET_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|_| std::env::temp_dir())
                    .join("apalis-bench-tmp");
                std::fs::create_dir_all(&dir)?;
                let path = dir.join(format!("peer-{}.db", rand_suffix()));
                let url = format!("sqlite://{}?mode=rwc", path.display());
                let pool = SqlitePool::connect(&url).await?;
                SqliteStorage::setup(&pool).await?;
                Ok(Store::Sqlite { pool, path, url })
            }
            Backend::Postgres => {
                let name = format!("owlclaw_peer_apalis_{}", rand_suffix());
                let admin = PgPool::connect(&args.pg_url).await?;
                sqlx_exec_pg(&admin, &format!("CREATE DATABASE {name}")).await?;
                admin.close().await;
                let url = pg_url_with_db(&args.pg_url, &name);
                let pool = PgPool::connect(&url).await?;
                PostgresStorage::setup(&pool).await?;
                Ok(Store::Postgres { pool, admin_url: args.pg_url.clone(), name, url })
            }
        }
    }

    fn url(&self) -> &str {
        match self {
            Store::Sqlite { url, .. } | Store::Postgres { url, .. } => url,
        }
    }

    async fn drop_store(self) {
        match self {
            Store::Sqlite { pool, path, .. } => {
                pool.close().await;
                for ext in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
                }
            }
            Store::Postgres { pool, admin_url, name, .. } => {
                pool.close().await;
                if let Ok(admin) = PgPool::connect(&admin_url).await {
                    let _ = sqlx_exec_pg(&admin, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
                    admin.close().await;
                }
            }
        }
    }

    /// Pushes jobs through apalis's own sink (`TaskSink::push` / `push_bulk`).
    async fn push_one(&self, job: Job) -> Result<(), Err> {
        match self {
            Store::Sqlite { pool, .. } => {
                let mut s = SqliteStorage::<Job>::new(pool);
                s.push(job).await?;
            }
            Store::Postgres { pool, .. } => {
                let mut s = PostgresStorage::<Job>::new(pool);
                s.push(job).await?;
            }
        }
        Ok(())
    }

    async fn push_bulk(&self, jobs: Vec<Job>) -> Result<(), Err> {
        match self {
            Store::Sqlite { pool, .. } => {
                let mut s = SqliteStorage::<Job>::new(pool);
                s.push_bulk(jobs).await?;
            }
            Store::Postgres { pool, .. } => {
                let mut s = PostgresStorage::<Job>::new(pool);
                s.push_bulk(jobs).await?;
            }
        }
        Ok(())
    }

    /// Is any run of the phase still unfinished (neither Done, Failed nor Killed)?
    async fn any_unfinished(&self) -> Result<bool, Err> {
        Ok(match self {
            Store::Sqlite { pool, .. } => sqlx_scalar_sqlite(
                pool,
                "SELECT EXISTS(SELECT 1 FROM Jobs WHERE status NOT IN ('Done','Failed','Killed'))",
            )
            .await? != 0,
            Store::Postgres { pool, .. } => sqlx_scalar_pg(
                pool,
                "SELECT CASE WHEN EXISTS(SELECT 1 FROM apalis.jobs WHERE status NOT IN ('Done','Failed','Killed')) THEN 1::int8 ELSE 0::int8 END",
            )
            .await? != 0,
        })
    }

    async fn count_status(&self, status: &str) -> Result<i64, Err> {
        match self {
            Store::Sqlite { pool, .. } => {
                sqlx_scalar_sqlite(pool, &format!("SELECT count(*) FROM Jobs WHERE status = '{status}'")).await
            }
            Store::Postgres { pool, .. } => {
                sqlx_scalar_pg(pool, &format!("SELECT count(*) FROM apalis.jobs WHERE status = '{status}'")).await
            }
        }
    }
}

// Plain sqlx (the version apalis uses) for creating databases and for reading the store.
async fn sqlx_exec_pg(pool: &PgPool, sql: &str) -> Result<(), Err> {
    use sqlx::Executor;
    pool.execute(sqlx::AssertSqlSafe(sql.to_owned())).await?;
    Ok(())
}
async fn sqlx_scalar_pg(pool: &PgPool, sql: &str) -> Result<i64, Err> {
    use sqlx::Row;
    let row = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(pool).await?;
    Ok(row.try_get::<i64, _>(0)?)
}
async fn sqlx_scalar_sqlite(pool: &SqlitePool, sql: &str) -> Result<i64, Err> {
    use sqlx::Row;
    let row = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(pool).await?;
    Ok(row.try_get::<i64, _>(0)?)
}

// ------------------------------------------------------------------------------------------------
// The benchmark (parent) process.

struct Child {
    proc: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Child {
    async fn spawn(args: &Args, url: &str) -> Result<Child, Err> {
        let backend = match args.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        };
        let mut proc = tokio::process::Command::new(std::env::current_exe()?)
            .args(["__worker", "--backend", backend, "--url", url, "--poll-ms"])
            .arg(args.poll_ms.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = proc.stdin.take().unwrap();
        let lines = BufReader::new(proc.stdout.take().unwrap()).lines();
        let mut c = Child { proc, stdin, lines };
        c.expect_line("ready").await?;
        Ok(c)
    }
    async fn send(&mut self, line: &str) -> Result<(), Err> {
        self.stdin.write_all(format!("{line}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        Ok(())
    }
    async fn next_line(&mut self) -> Result<String, Err> {
        self.lines.next_line().await?.ok_or_else(|| "worker process exited".into())
    }
    async fn expect_line(&mut self, want: &str) -> Result<(), Err> {
        let l = self.next_line().await?;
        if l != want {
            return Err(format!("worker said {l:?}, expected {want:?}").into());
        }
        Ok(())
    }
    fn vm_hwm_mb(&self) -> Option<f64> {
        let pid = self.proc.id()?;
        read_vm_hwm_mb(pid)
    }
}

fn read_vm_hwm_mb(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    // nearest rank
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

async fn bench(args: &Args) -> Result<(), Err> {
    let label = match args.backend {
        Backend::Sqlite => "apalis-sqlite",
        Backend::Postgres => "apalis-postgres",
    };
    let n = args.tasks;

    // enqueue_single: 2,000 jobs, one call each, into a fresh store of its own.
    let store = Store::fresh(args).await?;
    let t0 = Instant::now();
    for i in 0..SINGLE_JOBS {
        store.push_one(Job { i, t: now_us() }).await?;
    }
    let single_s = t0.elapsed().as_secs_f64();
    store.drop_store().await;
    let enqueue_single = SINGLE_JOBS as f64 / single_s;
    eprintln!("[{label}] enqueue_single: {SINGLE_JOBS} jobs in {single_s:.3}s = {enqueue_single:.0}/s");

    // enqueue_bulk: N jobs, 1,000 per push_bulk call.
    let store = Store::fresh(args).await?;
    let t0 = Instant::now();
    let mut i = 0;
    while i < n {
        let end = (i + BULK_CHUNK as u64).min(n);
        let chunk: Vec<Job> = (i..end).map(|i| Job { i, t: now_us() }).collect();
        store.push_bulk(chunk).await?;
        i = end;
    }
    let bulk_s = t0.elapsed().as_secs_f64();
    let enqueue_bulk = n as f64 / bulk_s;
    eprintln!("[{label}] enqueue_bulk: {n} jobs in {bulk_s:.3}s = {enqueue_bulk:.0}/s");

    let result = drain_and_latency(args, label, &store, enqueue_single, enqueue_bulk).await;
    store.drop_store().await;
    result
}

async fn drain_and_latency(
    args: &Args,
    label: &str,
    store: &Store,
    enqueue_single: f64,
    enqueue_bulk: f64,
) -> Result<(), Err> {
    let n = args.tasks;
    // drain: the worker process is started and connected (outside the clock, like the engine
    // process of our server modes); the clock starts when it is told to build and run its worker.
    let mut child = Child::spawn(args, store.url()).await?;
    child.send(&format!("expect {n}")).await?;
    child.expect_line("ok").await?;
    let t0 = Instant::now();
    child.send("go").await?;
    let reached = child.next_line().await?;
    if reached != "reached" {
        return Err(format!("worker said {reached:?}").into());
    }
    let last_body = t0.elapsed().as_secs_f64();
    let _ = child.next_line().await?; // samples of the drain: not used
    while store.any_unfinished().await? {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let drain_s = t0.elapsed().as_secs_f64();
    let drain = n as f64 / drain_s;
    let done = store.count_status("Done").await?;
    if done as u64 != n {
        let failed = store.count_status("Failed").await?;
        return Err(format!("drain: {done} Done runs in the store, expected {n} ({failed} Failed)").into());
    }
    eprintln!(
        "[{label}] drain: {n} jobs in {drain_s:.3}s = {drain:.0}/s (last body started at {last_body:.3}s; {done} Done runs verified in the store)"
    );

    // latency: worker warm and idle; one job every 10 ms, 1,000 jobs.
    let mut latency: Option<(f64, f64, f64, f64)> = None;
    if !args.skip_latency {
        tokio::time::sleep(Duration::from_millis(500)).await;
        child.send(&format!("expect {LATENCY_JOBS}")).await?;
        child.expect_line("ok").await?;
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for k in 0..LATENCY_JOBS {
            tick.tick().await;
            store.push_one(Job { i: n + k, t: now_us() }).await?;
        }
        let reached = tokio::time::timeout(Duration::from_secs(120), child.next_line()).await??;
        if reached != "reached" {
            return Err(format!("worker said {reached:?}").into());
        }
        let samples_line = child.next_line().await?;
        let json = samples_line.strip_prefix("samples ").ok_or("no samples line")?;
        let mut v: Vec<f64> = serde_json::from_str::<Vec<i64>>(json)?
            .into_iter()
            .map(|us| us as f64 / 1000.0)
            .collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let l = (percentile(&v, 50.0), percentile(&v, 95.0), percentile(&v, 99.0), *v.last().unwrap());
        eprintln!(
            "[{label}] latency: {LATENCY_JOBS} jobs, queue-to-start p50={:.2}ms p95={:.2}ms p99={:.2}ms max={:.2}ms",
            l.0, l.1, l.2, l.3
        );
        latency = Some(l);
    }
    let rss = child.vm_hwm_mb().unwrap_or(f64::NAN);
    drop(child.stdin);
    let _ = tokio::time::timeout(Duration::from_secs(10), child.proc.wait()).await;
    let _ = child.proc.kill().await;
    eprintln!("[{label}] peak rss: worker={rss:.1}MiB (the worker process's VmHWM)");

    let poll = match args.backend {
        Backend::Sqlite => format!("poll_with_interval({} ms)", args.poll_ms),
        Backend::Postgres => "with_pubsub() (LISTEN/NOTIFY)".to_string(),
    };
    if args.json {
        let lat = latency.map(|(p50, p95, p99, max)| {
            serde_json::json!({"p50": round2(p50), "p95": round2(p95), "p99": round2(p99), "max": round2(max)})
        });
        let doc = serde_json::json!({
            "system": label,
            "apalis_version": "1.0.0",
            "tasks": n,
            "worker_concurrency": SLOTS,
            "poll_strategy": poll,
            "enqueue_bulk": enqueue_bulk.round(),
            "enqueue_bulk_chunk": BULK_CHUNK,
            "enqueue_single": enqueue_single.round(),
            "drain": drain.round(),
            "durations_s": {"drain": round3(drain_s), "drain_last_body_start": round3(last_body)},
            "latency_ms": lat,
            "peak_rss_mb": {"worker": round2(rss)},
        });
        println!("{doc}");
    } else {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{label} (apalis 1.0.0, one worker process, concurrency {SLOTS}, {poll}), {n} tasks")?;
        writeln!(out, "enqueue_bulk: {enqueue_bulk:.0}/s")?;
        writeln!(out, "enqueue_single: {enqueue_single:.0}/s")?;
        writeln!(out, "drain: {drain:.0}/s")?;
        match latency {
            Some((p50, p95, p99, _)) => writeln!(out, "latency_ms p50={p50:.2} p95={p95:.2} p99={p99:.2}")?,
            None => writeln!(out, "latency_ms p50=n/a p95=n/a p99=n/a")?,
        }
        writeln!(out, "peak_rss_mb worker={rss:.1}")?;
    }
    Ok(())
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

// ------------------------------------------------------------------------------------------------
// The worker process.

static EXPECT: AtomicU64 = AtomicU64::new(u64::MAX);
static STARTED: AtomicU64 = AtomicU64::new(0);
static SAMPLES: Mutex<Vec<i64>> = Mutex::new(Vec::new());

/// The protocol's no-op task: records queue-to-start and, at the expected count, reports.
async fn noop(job: Job) -> Result<(), BoxDynError> {
    let q2s = now_us() as i64 - job.t as i64;
    let k = {
        let mut s = SAMPLES.lock().unwrap();
        s.push(q2s);
        STARTED.fetch_add(1, Ordering::SeqCst) + 1
    };
    if k == EXPECT.load(Ordering::SeqCst) {
        let samples = std::mem::take(&mut *SAMPLES.lock().unwrap());
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "reached");
        let _ = writeln!(out, "samples {}", serde_json::to_string(&samples).unwrap());
        let _ = out.flush();
    }
    Ok(())
}

async fn worker_main(args: Args) -> Result<(), Err> {
    enum Pool {
        Sqlite(SqlitePool),
        Postgres(PgPool),
    }
    let pool = match args.backend {
        // As apalis-sqlite's README does in the worker's process: connect, then `setup` (its
        // migrations are idempotent; it also sets its PRAGMAs, e.g. synchronous = OFF, on the
        // connection that runs them).
        Backend::Sqlite => {
            let pool = SqlitePool::connect(&args.url).await?;
            SqliteStorage::setup(&pool).await?;
            Pool::Sqlite(pool)
        }
        Backend::Postgres => Pool::Postgres(PgPool::connect(&args.url).await?),
    };
    say("ready");
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut running = Vec::new();
    while let Some(line) = stdin.next_line().await? {
        let line = line.trim();
        if let Some(k) = line.strip_prefix("expect ") {
            SAMPLES.lock().unwrap().clear();
            STARTED.store(0, Ordering::SeqCst);
            EXPECT.store(k.parse()?, Ordering::SeqCst);
            say("ok");
        } else if line == "go" {
            // Defaults of apalis 1.0 except what the protocol fixes (concurrency 10) and the wake-up
            // strategy, which a worker in its own process must choose: without one, an idle
            // worker only fetches again at its heartbeat (30 s by default).
            match &pool {
                Pool::Sqlite(pool) => {
                    let backend = SqliteStorage::<Job>::new(pool)
                        .poll_with_interval(Duration::from_millis(args.poll_ms));
                    let worker = WorkerBuilder::new("owlclaw-peer-apalis-sqlite")
                        .backend(backend)
                        .concurrency(SLOTS)
                        .build(noop);
                    running.push(tokio::spawn(async move {
                        if let Err(e) = worker.run().await {
                            eprintln!("apalis worker failed: {e}");
                        }
                    }));
                }
                Pool::Postgres(pool) => {
                    let backend = PostgresStorage::<Job>::new(pool).with_pubsub();
                    let worker = WorkerBuilder::new("owlclaw-peer-apalis-postgres")
                        .backend(backend)
                        .concurrency(SLOTS)
                        .build(noop);
                    running.push(tokio::spawn(async move {
                        if let Err(e) = worker.run().await {
                            eprintln!("apalis worker failed: {e}");
                        }
                    }));
                }
            }
        }
    }
    // stdin closed: the benchmark is done with this process.
    for r in running {
        r.abort();
    }
    std::process::exit(0);
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

