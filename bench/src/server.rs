//! Server mode's engine process: this executable re-run as `owlclaw-bench __engine --database URL
//! --listen ADDR`, which starts the engine on the store behind its HTTP API (token
//! authentication, as `owlclaw serve` does by default), creates a token and prints `ADDR TOKEN`
//! on stdout once it listens. It serves until SIGTERM or SIGINT, or until its standard input
//! closes (so that it never outlives the benchmark, even one that crashed).

use crate::mode::peak_rss_mb_of;
use anyhow::{bail, Context as _, Result};
use owlclaw_engine::http::{self, AuthMode, ServerConfig, DEFAULT_BODY_LIMIT};
use owlclaw_engine::{Engine, EngineConfig};
use std::io::Write as _;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// The hidden subcommand that runs the engine process.
pub(crate) const SUBCOMMAND: &str = "__engine";
/// The tenant of the benchmark's token.
const TENANT: &str = "bench";
/// How long the engine process may take to listen, and to stop.
const PATIENCE: Duration = Duration::from_secs(60);

/// The engine process of one phase, started by [`EngineProcess::spawn`].
#[derive(Debug)]
pub(crate) struct EngineProcess {
    child: Child,
    pid: u32,
    /// Held open: the engine stops when it closes.
    stdin: Option<ChildStdin>,
    /// Held open, so that the engine never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
}

impl EngineProcess {
    /// Starts an engine process on `database_url`, listening on a free loopback port; returns it
    /// with its address and a token once it listens.
    pub(crate) async fn spawn(database_url: &str) -> Result<(EngineProcess, String, String)> {
        let exe = std::env::current_exe().context("finding this executable")?;
        let mut child = Command::new(&exe)
            .arg(SUBCOMMAND)
            .arg("--database")
            .arg(database_url)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("running {} {SUBCOMMAND}", exe.display()))?;
        let pid = child.id().context("the engine process has no id")?;
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().context("no stdout")?);
        let mut line = String::new();
        let read = tokio::time::timeout(PATIENCE, stdout.read_line(&mut line)).await;
        let engine = EngineProcess {
            child,
            pid,
            stdin,
            _stdout: stdout,
        };
        match read {
            Err(_) => bail!(
                "the engine process did not listen within {}s",
                PATIENCE.as_secs()
            ),
            Ok(Err(e)) => return Err(e).context("reading the engine process's address"),
            Ok(Ok(_)) => {}
        }
        let Some((addr, token)) = line.trim().split_once(' ') else {
            let mut engine = engine;
            let status = engine.child.wait().await;
            bail!("the engine process stopped before listening ({status:?})");
        };
        let (addr, token) = (addr.to_string(), token.to_string());
        Ok((engine, addr, token))
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Reads the engine process's peak RSS (MiB), then stops it with SIGTERM (a graceful
    /// shutdown) and checks that it exited cleanly.
    pub(crate) async fn stop(mut self) -> Result<Option<f64>> {
        let rss = peak_rss_mb_of(self.pid);
        let term = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        if !matches!(term, Ok(s) if s.success()) {
            // No `kill` command: closing its standard input stops it gracefully too.
            drop(self.stdin.take());
        }
        match tokio::time::timeout(PATIENCE, self.child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(rss),
            Ok(Ok(status)) => bail!("the engine process exited with {status}"),
            Ok(Err(e)) => Err(e).context("waiting for the engine process"),
            Err(_) => {
                let _ = self.child.start_kill();
                bail!(
                    "the engine process did not stop within {}s of SIGTERM; killed",
                    PATIENCE.as_secs()
                )
            }
        }
    }
}

/// `owlclaw-bench __engine --database URL --listen ADDR`: the engine process.
pub(crate) async fn engine_main(mut argv: impl Iterator<Item = String>) -> Result<()> {
    let (mut database, mut listen) = (None, "127.0.0.1:0".to_string());
    while let Some(arg) = argv.next() {
        match arg.as_str() {
            "--database" => database = Some(argv.next().context("--database needs a value")?),
            "--listen" => listen = argv.next().context("--listen needs a value")?,
            other => bail!("{SUBCOMMAND}: unknown argument {other:?}"),
        }
    }
    let database = database.context("--database is required")?;

    // Installed before the address is announced, so that a SIGTERM sent as soon as it is read
    // stops the server gracefully rather than killing the process.
    let mut signal = Box::pin(http::shutdown_signal());
    tokio::select! {
        biased;
        () = &mut signal => return Ok(()),
        () = std::future::ready(()) => {}
    }
    let (stdin_tx, stdin_closed) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        let _ = stdin_tx.send(());
    });

    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr().context("local address")?;
    let engine = Engine::start(EngineConfig {
        database_url: database.clone(),
        ..EngineConfig::default()
    })
    .await
    .with_context(|| format!("starting the engine on {database}"))?;
    let token = engine
        .create_token(TENANT)
        .await
        .context("creating a token")?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{addr} {token}")?;
        out.flush()?;
    }
    http::serve(
        listener,
        engine,
        ServerConfig {
            auth: AuthMode::Tokens,
            body_limit: DEFAULT_BODY_LIMIT,
            ..ServerConfig::default()
        },
        async move {
            tokio::select! {
                () = signal => {}
                _ = stdin_closed => {}
            }
        },
    )
    .await
    .context("serving")?;
    Ok(())
}
