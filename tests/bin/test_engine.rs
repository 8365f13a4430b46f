//! An engine server in its own process: the code path of `owlclaw serve` (`Engine::start` +
//! `http::serve` with token auth), for the scale-out tests, which start several replicas on one
//! PostgreSQL database and kill them with SIGKILL. (The tests crate can't run the cli crate's
//! `owlclaw` binary.)
//!
//! Usage: `owlclaw-test-engine DATABASE_URL [--listen 127.0.0.1:0] [--token-tenant TENANT]
//! [--lease-ms MS]`. Starts the engine with the test lease (1 s, or MS milliseconds), creates an
//! API token for TENANT when asked, prints one line `ready http://ADDR [TOKEN]` on stdout, and
//! serves until SIGTERM/SIGINT (or SIGKILL). Logs go to stderr when `RUST_LOG` is set.

use std::io::Write;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let usage = "usage: owlclaw-test-engine DATABASE_URL [--listen ADDR] [--token-tenant TENANT] [--lease-ms MS]";
    let mut args = std::env::args().skip(1);
    let database_url = args.next().ok_or_else(|| anyhow::anyhow!(usage))?;
    let mut listen = "127.0.0.1:0".to_string();
    let mut token_tenant = None;
    let mut lease = owlclaw_tests::LEASE;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().ok_or_else(|| anyhow::anyhow!(usage))?,
            "--token-tenant" => {
                token_tenant = Some(args.next().ok_or_else(|| anyhow::anyhow!(usage))?)
            }
            "--lease-ms" => {
                let ms = args.next().ok_or_else(|| anyhow::anyhow!(usage))?;
                lease = std::time::Duration::from_millis(ms.parse()?);
            }
            other => anyhow::bail!("unexpected argument {other:?}; {usage}"),
        }
    }
    let engine = owlclaw_engine::Engine::start(owlclaw_engine::EngineConfig {
        database_url,
        lease,
        ..Default::default()
    })
    .await?;
    let token = match token_tenant {
        Some(t) => Some(engine.create_token(&t).await?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        match &token {
            Some(t) => writeln!(out, "ready http://{addr} {t}")?,
            None => writeln!(out, "ready http://{addr}")?,
        }
        out.flush()?;
    }
    owlclaw_engine::http::serve(
        listener,
        engine,
        owlclaw_engine::http::ServerConfig::default(),
        owlclaw_engine::http::shutdown_signal(),
    )
    .await?;
    Ok(())
}
