//! Shared harness of the end-to-end tests: databases in temporary directories, clients with short
//! heartbeats and leases, and small waiting helpers.

use owlclaw::{Client, Config, RunId, RunSnapshot};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Heartbeat used by test workers.
pub const HEARTBEAT: Duration = Duration::from_millis(100);
/// Lease used by test engines: short, so crash recovery is quick.
pub const LEASE: Duration = Duration::from_secs(1);

/// A test database: a SQLite file in its own temporary directory.
#[derive(Debug)]
pub struct TestDb {
    dir: tempfile::TempDir,
}

impl TestDb {
    /// A new, empty database.
    pub fn new() -> TestDb {
        TestDb {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("owlclaw.db").display())
    }

    /// The configuration test clients use.
    pub fn config(&self) -> Config {
        test_config(&self.url())
    }

    /// A lite client on it.
    pub async fn client(&self) -> Client {
        Client::connect(self.config()).await.expect("connect")
    }

    /// A lite client whose embedded engine uses `engine` (e.g. a very long poll interval).
    pub async fn client_with_engine(&self, mut engine: owlclaw_engine::EngineConfig) -> Client {
        engine.database_url = self.url();
        let e = owlclaw_engine::Engine::start(engine).await.expect("engine");
        Client::from_orchestrator(
            Arc::new(e.embedded(owlclaw_engine::LITE_TENANT)),
            self.config(),
        )
    }
}

impl Default for TestDb {
    fn default() -> Self {
        TestDb::new()
    }
}

/// Lite mode on `url` with the test heartbeat and lease.
pub fn test_config(url: &str) -> Config {
    let mut c = Config::lite();
    c.database_url = url.to_string();
    c.worker.heartbeat = HEARTBEAT;
    c.worker.lease = LEASE;
    c.worker.shutdown_grace = Duration::from_secs(5);
    c
}

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// Polls `check` every 10 ms until it returns `Some`, failing the test after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the run is terminal.
pub async fn finished(client: &Client, id: RunId) -> RunSnapshot {
    let run = client
        .wait(id, Duration::from_secs(30))
        .await
        .expect("wait");
    assert!(
        run.status.is_terminal(),
        "run {id} still {} after 30 s",
        run.status
    );
    run
}
