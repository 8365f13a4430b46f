//! Where the engine runs and where it stores: the benchmark's *modes*.
//!
//! - `lite`: the engine embedded in this process, on a SQLite file;
//! - `server`: the engine in a separate process (this executable re-run as `__engine`, see
//!   `server.rs`) behind its HTTP API on loopback, on a SQLite file; the worker and the enqueuing
//!   client stay in this process and reach it through the SDK's server mode.
//!
//! The phases in `phases.rs` only need a [`Client`] and do not care which mode gave it.

use crate::server::EngineProcess;
use anyhow::{bail, Context as _, Result};
use owlclaw::{Client, Config, Secret};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

/// A benchmark mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Embedded engine, SQLite file: worker and engine are this one process.
    Lite,
    /// Engine server in its own process on loopback, SQLite file; worker and client here.
    Server,
}

/// What `--mode` asks for: one mode, or several measured in the same invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Modes(pub(crate) Vec<Mode>);

impl FromStr for Modes {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Modes> {
        match s {
            "lite" => Ok(Modes(vec![Mode::Lite])),
            "server" | "server-sqlite" => Ok(Modes(vec![Mode::Server])),
            "both" => Ok(Modes(vec![Mode::Lite, Mode::Server])),
            "server-postgres" | "postgres" => bail!(
                "mode {s:?} is not implemented yet: owlclaw-bench measures `lite`, `server` \
                 (engine server on SQLite) and `both`"
            ),
            other => bail!("unknown mode {other:?}: expected `lite`, `server` or `both`"),
        }
    }
}

impl fmt::Display for Modes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [Mode::Lite, Mode::Server] => f.write_str("both"),
            modes => {
                let names: Vec<String> = modes.iter().map(Mode::to_string).collect();
                f.write_str(&names.join("+"))
            }
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Lite => "lite",
            Mode::Server => "server",
        })
    }
}

impl Mode {
    /// One line on what the mode measures.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Mode::Lite => "embedded engine on SQLite; worker and engine share this process",
            Mode::Server => {
                "engine server in its own process on loopback HTTP, SQLite; worker and client in \
                 this process"
            }
        }
    }

    /// Connects to a store for one phase: `database` when given, else a fresh, empty database
    /// that is deleted when the returned [`Target`] is dropped. In server mode this also starts
    /// an engine process of its own for the phase.
    pub(crate) async fn open(self, database: Option<&str>, label: &str) -> Result<Target> {
        let (url, files) = match database {
            Some(url) => (url.to_string(), Vec::new()),
            None => {
                let path = fresh_sqlite_path(&format!("{self}-{label}"))?;
                let files = ["", "-wal", "-shm", "-journal"]
                    .iter()
                    .map(|suffix| PathBuf::from(format!("{}{suffix}", path.display())))
                    .collect();
                (format!("sqlite://{}", path.display()), files)
            }
        };
        // From here on, `files` are deleted on every path out (`Target` or `Scratch`'s drop).
        let scratch = Scratch(files);
        match self {
            Mode::Lite => {
                let mut config = Config::lite();
                config.database_url = url.clone();
                let client = Client::connect(config)
                    .await
                    .with_context(|| format!("starting the embedded engine on {url}"))?;
                Ok(Target {
                    client,
                    url,
                    engine: None,
                    files: scratch,
                })
            }
            Mode::Server => {
                let (engine, addr, token) = EngineProcess::spawn(&url)
                    .await
                    .with_context(|| format!("starting an engine server on {url}"))?;
                let server_url = format!("http://{addr}");
                let config = Config {
                    mode: owlclaw::Mode::Server,
                    server_url: Some(server_url.clone()),
                    api_token: Some(Secret::new(token)),
                    ..Config::default()
                };
                let client = Client::connect(config)
                    .await
                    .with_context(|| format!("connecting to the engine server at {server_url}"))?;
                Ok(Target {
                    client,
                    url,
                    engine: Some(engine),
                    files: scratch,
                })
            }
        }
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

/// A connected client, the engine process behind it (server mode) and the files to delete
/// afterwards.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) client: Client,
    pub(crate) url: String,
    engine: Option<EngineProcess>,
    // Declared after `engine`: the engine process is killed (if still alive) before its files go.
    files: Scratch,
}

impl Target {
    /// The engine's process (server mode).
    pub(crate) fn engine_pid(&self) -> Option<u32> {
        self.engine.as_ref().map(EngineProcess::pid)
    }

    /// Disconnects, stops the engine (embedded, or the server process: its peak RSS is read just
    /// before it is stopped) and deletes the temporary database, if any. Returns the engine
    /// process's peak RSS in MiB (server mode; `None` in lite mode, where it is this process).
    pub(crate) async fn close(self) -> Result<Option<f64>> {
        self.client
            .disconnect()
            .await
            .context("stopping the engine")?;
        let Target { engine, files, .. } = self;
        let rss = match engine {
            Some(engine) => engine.stop().await.context("stopping the engine server")?,
            None => None,
        };
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
