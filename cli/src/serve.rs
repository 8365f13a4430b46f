//! `owlclaw serve`: the engine behind its HTTP API, until SIGINT or SIGTERM.

use crate::args::{Dashboard, Serve};
use crate::emit_stderr;
use crate::failure::Failure;
use owlclaw::config::redact_url;
use owlclaw::Config;
use owlclaw_engine::http::{self, AuthMode, ServerConfig, TlsFiles, DEFAULT_BODY_LIMIT};
use owlclaw_engine::{Engine, EngineConfig};
use std::net::SocketAddr;

/// `owlclaw dashboard`: the API and the dashboard without sign-in, on a loopback address only
/// (a non-loopback one is refused before anything is bound or opened).
pub(crate) async fn dashboard(config: &Config, args: &Dashboard) -> Result<(), Failure> {
    let loopback = args
        .listen
        .parse::<SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback());
    if !loopback {
        return Err(Failure::usage(format!(
            "--listen {}: the dashboard has no sign-in, so it listens on a loopback address only \
             (127.0.0.1:PORT or [::1]:PORT); to share it, run `owlclaw serve` with tokens",
            args.listen
        )));
    }
    let serve_args = Serve {
        listen: args.listen.clone(),
        insecure_dev: true,
        body_limit: None,
        lease: None,
        tls_cert: None,
        tls_key: None,
        read_timeout: None,
        idle_timeout: None,
        max_connections: None,
    };
    run(config, &serve_args, true).await
}

/// Binds `--listen`, opens the engine on the store of `config`, announces the address on stderr
/// and serves until a signal; then shuts down gracefully (a second signal stops at once).
pub(crate) async fn serve(config: &Config, args: &Serve) -> Result<(), Failure> {
    run(config, args, false).await
}

async fn run(config: &Config, args: &Serve, dashboard: bool) -> Result<(), Failure> {
    let auth = if args.insecure_dev {
        AuthMode::InsecureDev
    } else {
        AuthMode::Tokens
    };
    let body_limit = match args.body_limit {
        Some(bytes) => usize::try_from(bytes).map_err(|_| {
            Failure::usage(format!(
                "--body-limit {bytes} is too large for this machine"
            ))
        })?,
        None => DEFAULT_BODY_LIMIT,
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    };
    let defaults = ServerConfig::default();
    let server_config = ServerConfig {
        auth,
        body_limit,
        read_timeout: args.read_timeout.unwrap_or(defaults.read_timeout),
        idle_timeout: args.idle_timeout.unwrap_or(defaults.idle_timeout),
        max_connections: args
            .max_connections
            .map_or(defaults.max_connections, |n| n as usize),
        tls,
    };
    // Load the certificate first: a bad file is refused before anything is bound or created.
    if let Some(files) = &server_config.tls {
        http::check_tls_files(files)?;
    }
    // Installed before the address is announced, so that a signal sent as soon as it is printed
    // stops the server gracefully rather than killing the process.
    let mut signal = Box::pin(http::shutdown_signal());
    tokio::select! {
        biased;
        () = &mut signal => return Ok(()),
        () = std::future::ready(()) => {}
    }
    // Bound first: a busy port must not leave a new database behind.
    let listener = tokio::net::TcpListener::bind(args.listen.as_str())
        .await
        .map_err(|e| Failure::new("listen", format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Failure::new("listen", format!("cannot listen on {}: {e}", args.listen)))?;
    let engine = Engine::start(EngineConfig {
        database_url: config.database_url.clone(),
        lease: args.lease.unwrap_or(config.worker.lease),
        ..EngineConfig::default()
    })
    .await?;

    if dashboard {
        emit_stderr(&format!(
            "owlclaw dashboard at http://{addr}/ (database: {}; no sign-in: this machine only)\n",
            redact_url(&config.database_url)
        ));
    }
    emit_stderr(&format!(
        "owlclaw engine listening on {}://{} (database: {})\n",
        if server_config.tls.is_some() {
            "https"
        } else {
            "http"
        },
        addr,
        redact_url(&config.database_url)
    ));
    if auth == AuthMode::InsecureDev && !dashboard {
        emit_stderr(&insecure_banner(addr));
    }

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(http::serve(listener, engine, server_config, async move {
        let _ = stopped.await;
    }));
    tokio::pin!(server);
    let result = tokio::select! {
        result = &mut server => result,
        () = &mut signal => {
            emit_stderr(
                "owlclaw engine shutting down (finishing requests in flight; signal again to \
                 stop at once)\n",
            );
            let _ = stop.send(());
            tokio::select! {
                result = &mut server => result,
                () = http::shutdown_signal() => {
                    return Err(Failure::new("interrupted", "stopped at once by a second signal"));
                }
            }
        }
    };
    match result {
        Ok(Ok(())) => {
            emit_stderr("owlclaw engine stopped\n");
            Ok(())
        }
        Ok(Err(error)) => Err(error.into()),
        Err(join) => Err(Failure::new(
            "internal",
            format!("the server failed: {join}"),
        )),
    }
}

fn insecure_banner(addr: SocketAddr) -> String {
    let reach = if addr.ip().is_loopback() {
        "any program on this machine"
    } else {
        "OTHER MACHINES TOO: this is not a loopback address"
    };
    let rule = "!".repeat(78);
    format!(
        "{rule}\n\
         !! WARNING: --insecure-dev: AUTHENTICATION IS OFF.\n\
         !! Every request is accepted without a token, as the `default` tenant. Anyone who can\n\
         !! reach http://{addr} ({reach}) can read every run, inputs and\n\
         !! outputs included, submit, cancel and retry runs, and register workers that receive\n\
         !! them. For development only: never expose this port. In production, drop\n\
         !! --insecure-dev and give clients tokens made by `owlclaw token create --tenant NAME`.\n\
         {rule}\n"
    )
}
