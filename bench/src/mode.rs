//! Where the engine runs and where it stores: the benchmark's *modes*.
//!
//! - `lite`: the engine embedded in this process, on a SQLite file;
//! - `server`: the engine in a separate process (this executable re-run as `__engine`, see
//!   `server.rs`) behind its HTTP API on loopback, on a SQLite file; the worker and the enqueuing
//!   client stay in this process and reach it through the SDK's server mode;
//! - `postgres`: as `server`, on a PostgreSQL database of its own (`pg.rs`);
//! - `postgres2`: two such engine processes (replicas) on the same PostgreSQL database.
//!
//! The phases in `phases.rs` only need a [`Target`] and do not care which mode gave it.

use crate::pg::{self, PgDatabase, PgProbe};
use crate::server::EngineProcess;
use anyhow::{bail, Context as _, Result};
use owlclaw::{Client, Config, Secret};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

/// A benchmark mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Mode {
    /// Embedded engine, SQLite file: worker and engine are this one process.
    Lite,
    /// Engine server in its own process on loopback, SQLite file; worker and client here.
    Server,
    /// Engine server in its own process on loopback, PostgreSQL; worker and client here.
    Postgres,
    /// Two engine server processes on one PostgreSQL database; worker and client here.
    Postgres2,
}

/// What `--mode` asks for: one mode, or several measured in the same invocation (always in the
/// order lite, server, postgres, postgres2: the first is the reference of the ratios).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Modes(pub(crate) Vec<Mode>);

impl FromStr for Modes {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Modes> {
        let mut modes = Vec::new();
        for part in s.split(',').map(str::trim) {
            match part {
                "lite" => modes.push(Mode::Lite),
                "server" | "server-sqlite" => modes.push(Mode::Server),
                "postgres" | "server-postgres" => modes.push(Mode::Postgres),
                "postgres2" => modes.push(Mode::Postgres2),
                "both" => modes.extend([Mode::Lite, Mode::Server]),
                "all" => modes.extend(Mode::ALL),
                other => bail!(
                    "unknown mode {other:?}: expected `lite`, `server`, `postgres`, `postgres2`, \
                     `both` (lite and server), `all`, or a comma-separated list"
                ),
            }
        }
        modes.sort();
        modes.dedup();
        Ok(Modes(modes))
    }
}

impl fmt::Display for Modes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [Mode::Lite, Mode::Server] => f.write_str("both"),
            modes if modes == Mode::ALL => f.write_str("all"),
            modes => {
                let names: Vec<String> = modes.iter().map(Mode::to_string).collect();
                f.write_str(&names.join(","))
            }
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Lite => "lite",
            Mode::Server => "server",
            Mode::Postgres => "postgres",
            Mode::Postgres2 => "postgres2",
        })
    }
}

impl Mode {
    /// Every mode, in the order of `--mode all`.
    pub(crate) const ALL: [Mode; 4] = [Mode::Lite, Mode::Server, Mode::Postgres, Mode::Postgres2];

    /// Whether its store is PostgreSQL.
    pub(crate) fn is_postgres(self) -> bool {
        matches!(self, Mode::Postgres | Mode::Postgres2)
    }

    /// How many engine processes it starts per phase (0: the engine is embedded).
    pub(crate) fn engine_processes(self) -> usize {
        match self {
            Mode::Lite => 0,
            Mode::Server | Mode::Postgres => 1,
            Mode::Postgres2 => 2,
        }
    }

    /// One line on what the mode measures.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Mode::Lite => "embedded engine on SQLite; worker and engine share this process",
            Mode::Server => {
                "engine server in its own process on loopback HTTP, SQLite; worker and client in \
                 this process"
            }
            Mode::Postgres => {
                "engine server in its own process on loopback HTTP, PostgreSQL (a fresh database \
                 per phase); worker and client in this process"
            }
            Mode::Postgres2 => {
                "two engine server processes (replicas A and B) on one PostgreSQL database; \
                 client on A; this process's 10 slots split into two workers of 5, one on each \
                 replica"
            }
        }
    }

    /// Checks that `--database URL` suits this mode (SQLite for lite and server, PostgreSQL for
    /// the postgres modes).
    pub(crate) fn check_database(self, url: &str) -> Result<()> {
        if self.is_postgres() != pg::is_postgres_url(url) {
            bail!(
                "--database {}: mode {self} needs a {} URL (give --database with the modes of one \
                 store only)",
                pg::redact(url),
                if self.is_postgres() {
                    "postgres://"
                } else {
                    "sqlite://"
                }
            );
        }
        Ok(())
    }

    /// Connects to a store for one phase: `database` when given, else a fresh, empty database
    /// (a SQLite file, or for the postgres modes a database created on the server of `pg_url`)
    /// that is deleted when the returned [`Target`] is closed or dropped. The server modes also
    /// start the engine process(es) of the phase.
    pub(crate) async fn open(
        self,
        database: Option<&str>,
        label: &str,
        pg_url: &str,
    ) -> Result<Target> {
        let mut pgdb = None;
        let (url, files) = match database {
            Some(url) => (url.to_string(), Vec::new()),
            None if self.is_postgres() => {
                let db = PgDatabase::create(pg_url).await?;
                let url = db.url.clone();
                pgdb = Some(db);
                (url, Vec::new())
            }
            None => {
                let path = fresh_sqlite_path(&format!("{self}-{label}"))?;
                let files = ["", "-wal", "-shm", "-journal"]
                    .iter()
                    .map(|suffix| PathBuf::from(format!("{}{suffix}", path.display())))
                    .collect();
                (format!("sqlite://{}", path.display()), files)
            }
        };
        let probe = if self.is_postgres() {
            pg::database_name(&url).map(|database| PgProbe {
                admin_url: if pgdb.is_some() {
                    pg_url.to_string()
                } else {
                    url.clone()
                },
                database,
            })
        } else {
            None
        };
        // From here on, `files` and `pgdb` are deleted on every path out (`Target::close`, or
        // the drop of `Target` or of these locals).
        let scratch = Scratch(files);
        let shown = pg::redact(&url);
        if self == Mode::Lite {
            let mut config = Config::lite();
            config.database_url = url.clone();
            let client = Client::connect(config)
                .await
                .with_context(|| format!("starting the embedded engine on {shown}"))?;
            return Ok(Target {
                worker_clients: vec![client.clone()],
                client,
                url,
                engines: Vec::new(),
                probe,
                pgdb,
                files: scratch,
            });
        }
        // Replicas start one after the other: the first migrates the fresh database.
        let mut engines = Vec::new();
        let mut addrs = Vec::new();
        let mut token = None;
        for _ in 0..self.engine_processes() {
            let (engine, addr, t) = EngineProcess::spawn(&url)
                .await
                .with_context(|| format!("starting an engine server on {shown}"))?;
            engines.push(engine);
            addrs.push(format!("http://{addr}"));
            // The tokens live in the shared store: the first replica's is valid on both.
            token.get_or_insert(t);
        }
        let token = token.context("no engine process")?;
        let connect = |server_url: String| {
            let token = token.clone();
            async move {
                let config = Config {
                    mode: owlclaw::Mode::Server,
                    server_url: Some(server_url.clone()),
                    api_token: Some(Secret::new(token)),
                    ..Config::default()
                };
                Client::connect(config)
                    .await
                    .with_context(|| format!("connecting to the engine server at {server_url}"))
            }
        };
        // The client (enqueues, listing) talks to replica A first; with two replicas, the second
        // worker client talks to B first. Each lists the other replica too, for fail-over.
        let client = connect(addrs.join(",")).await?;
        let mut worker_clients = vec![client.clone()];
        if addrs.len() > 1 {
            let mut others = addrs.clone();
            others.rotate_left(1);
            worker_clients.push(connect(others.join(",")).await?);
        }
        Ok(Target {
            client,
            worker_clients,
            url,
            engines,
            probe,
            pgdb,
            files: scratch,
        })
    }
}

/// Temporary database files, deleted when dropped.
#[derive(Debug)]
struct Scratch(Vec<PathBuf>);

impl Drop for Scratch {
    fn drop(&mut self) {
        for f in &self.0 {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// A connected client, the engine process(es) behind it (server modes) and the database to
/// delete afterwards.
#[derive(Debug)]
pub(crate) struct Target {
    /// Enqueues, lists, and polls the store (replica A in `postgres2`).
    pub(crate) client: Client,
    /// The clients that the draining workers use, one worker each: `client` itself, or in
    /// `postgres2` one per replica (A first, then B).
    pub(crate) worker_clients: Vec<Client>,
    pub(crate) url: String,
    engines: Vec<EngineProcess>,
    /// The PostgreSQL server's processes of this database (postgres modes).
    pub(crate) probe: Option<PgProbe>,
    // Declared after `engines`: the engine processes are killed (if still alive) before their
    // database goes.
    pgdb: Option<PgDatabase>,
    files: Scratch,
}

impl Target {
    /// The engine processes (server modes).
    pub(crate) fn engine_pids(&self) -> Vec<u32> {
        self.engines.iter().map(EngineProcess::pid).collect()
    }

    /// The client of the timer phase's workers: the last replica's (B in `postgres2`, so that
    /// timers scheduled through A reach a worker on B), else the only one.
    pub(crate) fn timer_worker_client(&self) -> &Client {
        self.worker_clients.last().unwrap_or(&self.client)
    }

    /// Disconnects, stops the engine (embedded, or the server processes: the peak RSS of each is
    /// read just before it is stopped) and deletes the temporary database, if any. Returns the
    /// engine processes' peak RSS in MiB (empty in lite mode, where the engine is this process).
    pub(crate) async fn close(self) -> Result<Vec<f64>> {
        for client in self.worker_clients.iter().skip(1) {
            client.disconnect().await.context("disconnecting")?;
        }
        self.client
            .disconnect()
            .await
            .context("stopping the engine")?;
        let Target {
            engines,
            pgdb,
            files,
            ..
        } = self;
        let mut rss = Vec::new();
        for engine in engines {
            if let Some(mb) = engine.stop().await.context("stopping the engine server")? {
                rss.push(mb);
            }
        }
        if let Some(db) = pgdb {
            db.drop_now().await?;
        }
        drop(files);
        Ok(rss)
    }
}

/// The folder for temporary databases: next to the benchmark's executable (so under `target/`,
/// on the same disk as the workspace rather than a possibly memory-backed `/tmp`), else the
/// system's temporary folder.
fn scratch_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("owlclaw-bench-tmp")))
        .filter(|d| std::fs::create_dir_all(d).is_ok())
        .unwrap_or_else(std::env::temp_dir)
}

fn fresh_sqlite_path(label: &str) -> Result<PathBuf> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let dir = scratch_dir();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!(
        "bench-{}-{nanos}-{n}-{label}.db",
        std::process::id()
    ));
    if path.exists() {
        bail!("{} exists already", path.display());
    }
    Ok(path)
}

/// `VmHWM` of this process, in MiB.
pub(crate) fn peak_rss_mb() -> Option<f64> {
    status_kb(Path::new("/proc/self/status"), "VmHWM:").map(|kb| kb as f64 / 1024.0)
}

/// `VmHWM` of process `pid`, in MiB.
pub(crate) fn peak_rss_mb_of(pid: u32) -> Option<f64> {
    status_kb(Path::new(&format!("/proc/{pid}/status")), "VmHWM:").map(|kb| kb as f64 / 1024.0)
}

fn status_kb(path: &Path, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Resets this process's peak RSS to its current RSS (Linux ≥ 4.0), so that each run reports its
/// own peak. Returns false when the kernel refused.
pub(crate) fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}
