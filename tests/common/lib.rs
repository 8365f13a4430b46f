//! Shared harness of the end-to-end tests: databases in temporary directories, clients with short
//! heartbeats and leases, and small waiting helpers.

use owlclaw::{Client, Config, RunId, RunSnapshot};
use std::future::Future;
use std::time::Duration;

/// Heartbeat used by test workers.
pub const HEARTBEAT: Duration = Duration::from_millis(100);
/// Lease used by test engines: short, so crash recovery is quick.
pub const LEASE: Duration = Duration::from_secs(1);

/// A test database: a SQLite file in its own temporary directory.
#[derive(Debug)]
pub struct TestDb {
    url: String,
    _dir: Option<tempfile::TempDir>,
    _pg: Option<owlclaw_engine::testing::PgDb>,
}

impl TestDb {
    /// A new, empty SQLite database.
    pub fn new() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("owlclaw.db").display());
        TestDb {
            url,
            _dir: Some(dir),
            _pg: None,
        }
    }

    /// A new, empty PostgreSQL database (dropped with this value), or `None` when
    /// `OWLCLAW_TEST_DATABASE_URL` is not set outside CI (in CI, that panics).
    pub async fn postgres() -> Option<TestDb> {
        let pg = owlclaw_engine::testing::PgDb::create().await?;
        Some(TestDb {
            url: pg.url.clone(),
            _dir: None,
            _pg: Some(pg),
        })
    }

    /// Its URL.
    pub fn url(&self) -> String {
        self.url.clone()
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
        Client::from_engine(e, self.config())
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

/// Which connection a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The engine embedded in the test process, on a SQLite file.
    Lite,
    /// A real engine HTTP server on loopback (the code of `owlclaw serve`), on a SQLite file,
    /// reached with an API token.
    Server,
    /// The engine embedded in the test process, on a PostgreSQL database of the test's own.
    LitePostgres,
    /// An engine HTTP server on loopback, on a PostgreSQL database of the test's own.
    ServerPostgres,
}

impl Backend {
    /// Whether clients reach the engine over HTTP.
    pub fn is_server(self) -> bool {
        matches!(self, Backend::Server | Backend::ServerPostgres)
    }

    /// Whether the store is PostgreSQL.
    pub fn is_postgres(self) -> bool {
        matches!(self, Backend::LitePostgres | Backend::ServerPostgres)
    }
}

struct RunningServer {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<()>,
}

/// One test's world: a database and, in server mode, an engine server in front of it (started on
/// first use). The same test body runs against both backends.
pub struct TestEnv {
    backend: Backend,
    db: TestDb,
    engine: std::sync::Mutex<owlclaw_engine::EngineConfig>,
    server: tokio::sync::Mutex<Option<RunningServer>>,
    token: std::sync::Mutex<Option<String>>,
    /// The server's address, kept across restarts so clients reconnect to the same URL.
    addr: std::sync::Mutex<Option<std::net::SocketAddr>>,
}

impl std::fmt::Debug for TestEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestEnv")
            .field("backend", &self.backend)
            .field("db", &self.db)
            .finish()
    }
}

impl TestEnv {
    /// A fresh database for `backend`.
    /// `None` for a PostgreSQL backend when `OWLCLAW_TEST_DATABASE_URL` is not set outside CI
    /// (a loud warning is printed; in CI it panics).
    pub async fn new(backend: Backend) -> Option<TestEnv> {
        init_tracing();
        let db = if backend.is_postgres() {
            TestDb::postgres().await?
        } else {
            TestDb::new()
        };
        Some(TestEnv {
            backend,
            db,
            engine: std::sync::Mutex::new(owlclaw_engine::EngineConfig {
                lease: LEASE,
                ..Default::default()
            }),
            server: tokio::sync::Mutex::new(None),
            token: std::sync::Mutex::new(None),
            addr: std::sync::Mutex::new(None),
        })
    }

    /// The database behind the environment.
    pub fn database_url(&self) -> String {
        self.db.url()
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Changes the engine's configuration (before the first client).
    pub fn set_engine(&self, f: impl FnOnce(&mut owlclaw_engine::EngineConfig)) {
        f(&mut self.engine.lock().unwrap());
    }

    fn engine_config(&self) -> owlclaw_engine::EngineConfig {
        let mut cfg = self.engine.lock().unwrap().clone();
        cfg.database_url = self.db.url();
        cfg
    }

    async fn ensure_server(&self) -> std::net::SocketAddr {
        let mut guard = self.server.lock().await;
        if let Some(s) = guard.as_ref() {
            return s.addr;
        }
        let engine = owlclaw_engine::Engine::start(self.engine_config())
            .await
            .expect("engine");
        if self.token.lock().unwrap().is_none() {
            let token = engine
                .create_token(owlclaw_engine::LITE_TENANT)
                .await
                .expect("token");
            *self.token.lock().unwrap() = Some(token);
        }
        let previous = *self.addr.lock().unwrap();
        let listener = match previous {
            // Rebinding the same port right after a shutdown may need a moment.
            Some(addr) => {
                let mut tries = 0;
                loop {
                    match tokio::net::TcpListener::bind(addr).await {
                        Ok(l) => break l,
                        Err(_) if tries < 50 => {
                            tries += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Err(e) => panic!("rebinding {addr}: {e}"),
                    }
                }
            }
            None => tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind"),
        };
        let addr = listener.local_addr().unwrap();
        *self.addr.lock().unwrap() = Some(addr);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            let cfg = owlclaw_engine::http::ServerConfig::default();
            owlclaw_engine::http::serve(listener, engine, cfg, async move {
                let _ = rx.await;
            })
            .await
            .expect("server");
        });
        *guard = Some(RunningServer {
            addr,
            stop: Some(tx),
            handle,
        });
        addr
    }

    /// Where a child process connects: the database URL (lite) or the server URL (server), and
    /// the API token to use, if any.
    pub async fn target(&self) -> (String, Option<String>) {
        if self.backend.is_server() {
            let addr = self.ensure_server().await;
            (format!("http://{addr}"), self.token.lock().unwrap().clone())
        } else {
            (self.db.url(), None)
        }
    }

    /// The configuration of a client of this environment.
    pub async fn config(&self) -> Config {
        let (target, token) = self.target().await;
        config_for(&target, token.as_deref())
    }

    /// A client of this environment.
    pub async fn client(&self) -> Client {
        self.client_with(|_| {}).await
    }

    /// A client of this environment, its configuration changed by `f` (e.g. a namespace).
    pub async fn client_with(&self, f: impl FnOnce(&mut Config)) -> Client {
        if self.backend.is_server() {
            let mut config = self.config().await;
            f(&mut config);
            Client::connect(config).await.expect("connect")
        } else {
            let e = owlclaw_engine::Engine::start(self.engine_config())
                .await
                .expect("engine");
            let mut config = self.db.config();
            f(&mut config);
            Client::from_engine(e, config)
        }
    }

    /// Restarts the engine server on the same database and address (server mode; lite clients
    /// each embed their own engine, so there is nothing to restart).
    pub async fn restart(&self) {
        self.restart_after(Duration::ZERO).await
    }

    /// Stops the engine server, waits `down`, and starts it again on the same database and
    /// address.
    pub async fn restart_after(&self, down: Duration) {
        if !self.backend.is_server() {
            return;
        }
        let running = self.server.lock().await.take();
        if let Some(mut s) = running {
            let _ = s.stop.take().map(|tx| tx.send(()));
            let _ = s.handle.await;
        }
        tokio::time::sleep(down).await;
        self.ensure_server().await;
    }
}

/// The configuration of a test client reaching `target`: a `sqlite://` URL (lite mode) or an
/// `http://` server URL with its token (server mode).
pub fn config_for(target: &str, token: Option<&str>) -> Config {
    let mut c = test_config(target);
    if target.starts_with("http") {
        c.mode = owlclaw::Mode::Server;
        c.server_url = Some(target.to_string());
        c.api_token = token.map(owlclaw::Secret::new);
        c.database_url = "sqlite::memory:".into();
    }
    c
}

/// How time passes in a test: the system's, or the clock of a
/// [`TestEngine`](owlclaw::testing::TestEngine), which the test moves.
#[derive(Debug, Clone, Copy)]
pub enum Time<'a> {
    /// The system's clock: time passes by itself.
    Real,
    /// A test engine's clock: time passes when the test moves it.
    Test(&'a owlclaw::testing::TestEngine),
}

impl Time<'_> {
    /// Lets `d` pass (a real clock is waited out).
    pub async fn pass(&self, d: Duration) {
        match self {
            Time::Real => tokio::time::sleep(d).await,
            Time::Test(t) => t.advance(d).await.unwrap(),
        }
    }

    /// Brings what is due within `d`: a test clock is moved; a real one brings it by itself
    /// while the test waits for what it expects.
    pub async fn bring(&self, d: Duration) {
        if let Time::Test(t) = self {
            t.advance(d).await.unwrap();
        }
    }

    /// Lets a few ticks of a per-second schedule come.
    pub async fn let_ticks_come(&self) {
        self.bring(Duration::from_secs(3)).await
    }
}

/// Runs each named `async fn name(env: TestEnv)` against every backend: `lite::name` and
/// `server::name` on SQLite, `lite_postgres::name` and `server_postgres::name` on PostgreSQL
/// (which pass with a loud warning when `OWLCLAW_TEST_DATABASE_URL` is not set outside CI, and
/// fail in CI).
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $crate::both_backends!(@mod lite, Lite; $($name),*);
        $crate::both_backends!(@mod server, Server; $($name),*);
        $crate::both_backends!(@mod lite_postgres, LitePostgres; $($name),*);
        $crate::both_backends!(@mod server_postgres, ServerPostgres; $($name),*);
    };
    (@mod $module:ident, $backend:ident; $($name:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(env) = $crate::TestEnv::new($crate::Backend::$backend).await {
                        super::$name(env).await
                    }
                }
            )*
        }
    };
}

/// Runs each named `async fn name(env: TestEnv)` in real time through a server only, on SQLite
/// (module `$sqlite`) and PostgreSQL (`$postgres`): for tests whose lite-engine variant runs on
/// a [`TestEngine`](owlclaw::testing::TestEngine)'s clock instead.
#[macro_export]
macro_rules! server_backends {
    ($sqlite:ident, $postgres:ident; $($name:ident),* $(,)?) => {
        $crate::both_backends!(@mod $sqlite, Server; $($name),*);
        $crate::both_backends!(@mod $postgres, ServerPostgres; $($name),*);
    };
}
