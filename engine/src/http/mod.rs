//! The HTTP/JSON API of `owlclaw serve`: runs, crons and the worker protocol under `/v1`,
//! health and metrics beside it, and the OpenAPI document at `/v1/openapi.json`, generated from the
//! handlers themselves so it can't drift from what the server does.
//!
//! Every `/v1` request needs `Authorization: Bearer <token>`; each token belongs to a tenant, and a
//! tenant never sees another's runs (they answer 404, as if absent). An optional `OwlClaw-User`
//! header names the acting user for ownership checks. Every failure answers
//! `{"error": {"code": "...", "message": "..."}}` ([`ErrorBody`], with the fields of its error)
//! with one status code per code.
//!
//! Split by concern: `errors` (the error answer and its status codes), `extract` (the caller,
//! JSON bodies, queries and path ids, all rejected with [`ApiError`]), one module per resource
//! (`runs`, `crons`, `workers`, `health`), `openapi` (the document), `router` (the routes and the
//! body rules) and `listen` (connections, timeouts, TLS).

mod crons;
mod dashboard;
mod errors;
mod events;
mod extract;
mod health;
mod listen;
mod openapi;
mod ratelimits;
mod router;
mod runs;
mod workers;

pub use errors::{status_of, ApiError, ErrorBody, ErrorDetail};
pub use health::Health;
pub use openapi::openapi;
pub use router::router;
pub use runs::{BulkRequest, BulkResponse};

use crate::Engine;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Default largest request body: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
/// The header naming the acting user.
pub const USER_HEADER: &str = "owlclaw-user";

/// How the server authenticates callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Bearer tokens created with `owlclaw token create`.
    Tokens,
    /// No authentication: every caller is the `default` tenant. Development only.
    InsecureDev,
}

/// Default time a client has to send a whole request (headers, then body): 30 s.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time a keep-alive connection may stay open with no request: 60 s.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default bound on open connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// The server's settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// How callers authenticate.
    pub auth: AuthMode,
    /// Largest accepted request body, in bytes. The worker routes (exchange, steps) accept at least
    /// one stored output's worth ([`MIN_WORKER_BODY_LIMIT`]).
    pub body_limit: usize,
    /// Time a client has to send a request's headers, and then its body: past it the connection is
    /// closed (headers) or the request is answered `408` (body).
    pub read_timeout: Duration,
    /// A keep-alive connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// Most connections open at once; more wait to be accepted.
    pub max_connections: usize,
    /// Serve HTTPS with this certificate chain and private key (PEM files).
    pub tls: Option<TlsFiles>,
}

/// The PEM files of an HTTPS server.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            auth: AuthMode::Tokens,
            body_limit: DEFAULT_BODY_LIMIT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            tls: None,
        }
    }
}

/// The smallest body limit of the worker routes: a report carrying one output of the largest
/// stored size, with room for its envelope and error.
pub const MIN_WORKER_BODY_LIMIT: usize =
    owlclaw_core::limits::MAX_OUTPUT_BYTES + owlclaw_core::limits::MAX_ERROR_BYTES + 64 * 1024;

#[derive(Clone)]
struct AppState {
    engine: Engine,
    auth: AuthMode,
    /// Token hash lookups already answered by the store.
    tokens: Arc<Mutex<HashMap<String, String>>>,
}

/// Checks that the certificate and key of `files` load, as [`serve`] will load them.
pub fn check_tls_files(files: &TlsFiles) -> owlclaw_core::Result<()> {
    listen::tls_acceptor(&files.cert, &files.key).map(|_| ())
}

/// Serves the API on `listener` until `shutdown` resolves, then shuts down gracefully: long polls
/// end at once, in-flight requests finish, and the engine stops.
pub async fn serve(
    listener: tokio::net::TcpListener,
    engine: Engine,
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> owlclaw_core::Result<()> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    let tls = match &cfg.tls {
        Some(files) => Some(listen::tls_acceptor(&files.cert, &files.key)?),
        None => None,
    };
    let app = router(engine.clone(), &cfg);
    let token = engine.shutdown_token();
    tracing::info!(addr = ?addr, auth = ?cfg.auth, https = tls.is_some(), "engine server listening");
    let stop = tokio_util::sync::CancellationToken::new();
    let stopper = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        token.cancel(); // long polls end at once
        stopper.cancel();
    });
    listen::accept_loop(listener, app, &cfg, tls, stop).await;
    engine.shutdown().await;
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = ctrl_c.await;
}
