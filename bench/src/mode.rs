//! Where the engine runs and where it stores: the benchmark's *modes*.
//!
//! Only `lite` exists for now: the engine embedded in this process, on a SQLite file. Server mode
//! (over HTTP to `owlclaw serve`, on SQLite or PostgreSQL) will add variants here; the phases in
//! `phases.rs` only need a [`Client`] and do not care which mode gave it.

use anyhow::{bail, Context as _, Result};
use owlclaw::{Client, Config};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

/// A benchmark mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Embedded engine, SQLite file: worker and engine are this one process.
    Lite,
}

impl FromStr for Mode {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Mode> {
        match s {
            "lite" => Ok(Mode::Lite),
            "server" | "server-sqlite" | "server-postgres" | "postgres" => bail!(
                "mode {s:?} is not implemented yet: only `--mode lite` (embedded engine on SQLite) is \
                 available in this version of owlclaw-bench"
            ),
            other => bail!("unknown mode {other:?}: expected `lite`"),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Lite => "lite",
        })
    }
}

impl Mode {
    /// One line on what the mode measures.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Mode::Lite => "embedded engine on SQLite; worker and engine share this process",
        }
    }

    /// Connects to a store for one phase: `database` when given, else a fresh, empty database
    /// that is deleted when the returned [`Target`] is dropped.
    pub(crate) async fn open(self, database: Option<&str>, label: &str) -> Result<Target> {
        match self {
            Mode::Lite => {
                let (url, files) = match database {
                    Some(url) => (url.to_string(), Vec::new()),
                    None => {
                        let path = fresh_sqlite_path(label)?;
                        let files = ["", "-wal", "-shm", "-journal"]
                            .iter()
                            .map(|suffix| PathBuf::from(format!("{}{suffix}", path.display())))
                            .collect();
                        (format!("sqlite://{}", path.display()), files)
                    }
                };
                let mut config = Config::lite();
                config.database_url = url.clone();
                let client = Client::connect(config)
                    .await
                    .with_context(|| format!("starting the embedded engine on {url}"))?;
                Ok(Target { client, url, files })
            }
        }
    }

    /// Peak resident set size of the worker and of the engine, in MiB. In lite mode both are
    /// this process, so both figures are the same `VmHWM`.
    pub(crate) fn peak_rss_mb(self) -> Option<(f64, f64)> {
        match self {
            Mode::Lite => peak_rss_mb().map(|m| (m, m)),
        }
    }
}

/// A connected client and the files to delete afterwards.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) client: Client,
    pub(crate) url: String,
    files: Vec<PathBuf>,
}

impl Target {
    /// Disconnects (stopping the embedded engine) and deletes the temporary database, if any.
    pub(crate) async fn close(self) -> Result<()> {
        self.client
            .disconnect()
            .await
            .context("stopping the engine")?;
        Ok(())
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
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
