//! Hardening found by using the system as strangers would: oversized outputs, ownership through
//! every path of the SDK, worker labels in listings (on every backend); slow and broken HTTP
//! clients, HTTPS with a CA of the test's own, and PostgreSQL over TLS.

use owlclaw::{task, Client, Config, Context, Error, ListFilter, Mode, RunStatus, Secret};
use owlclaw_engine::http::{self, ServerConfig, TlsFiles};
use owlclaw_engine::{Engine, EngineConfig};
use owlclaw_tests::{both_backends, eventually, finished, TestEnv};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An output of `bytes` bytes (over the 1 MiB that is stored when `bytes` is larger).
#[task]
async fn big_output(_ctx: Context, bytes: usize) -> anyhow::Result<String> {
    Ok("x".repeat(bytes))
}

async fn an_output_over_the_limit_is_stored_truncated_and_the_worker_goes_on(env: TestEnv) {
    let client = env.client().await;
    let worker = client
        .worker("big")
        .task::<big_output>()
        .slots(2)
        .start()
        .await
        .unwrap();
    let huge = big_output::enqueue(&client, 1_100_000).await.unwrap();
    let err = huge
        .result_timeout(Duration::from_secs(60))
        .await
        .unwrap_err();
    match &err {
        Error::OutputTruncated { run_id, bytes } => {
            assert_eq!(*run_id, huge.id());
            assert_eq!(*bytes, 1_100_002, "the JSON string with its quotes");
        }
        other => panic!("expected OutputTruncated, got {other:?}"),
    }
    assert!(err.to_string().contains("truncated"), "{err}");
    let snap = huge.snapshot().await.unwrap();
    assert_eq!(snap.status, RunStatus::Succeeded);
    let output = snap.output.unwrap();
    assert_eq!(
        output["owlclaw_truncated"],
        true,
        "{}",
        &output.to_string()[..200]
    );
    // The worker is not jammed: the next runs finish, and nothing stays running.
    let small = big_output::run(&client, 3).await.unwrap();
    assert_eq!(small, "xxx");
    let page = client
        .list(ListFilter {
            status: Some(RunStatus::Running),
            ..ListFilter::default()
        })
        .await
        .unwrap();
    assert!(page.runs.is_empty(), "{:?}", page.runs);
    worker.shutdown().await.unwrap();
}

async fn a_user_client_lists_only_its_own_runs_and_cannot_name_another_owner(env: TestEnv) {
    let client = env.client().await;
    let alice = client.for_user("alice");
    let bob = client.for_user("bob");
    let a = big_output::enqueue(&alice, 1).await.unwrap();
    let b = big_output::enqueue(&bob, 1).await.unwrap();
    let ids = |page: owlclaw::RunPage| page.runs.iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(bob.list(ListFilter::default()).await.unwrap()),
        vec![b.id()]
    );
    assert_eq!(
        ids(alice.list(ListFilter::default()).await.unwrap()),
        vec![a.id()]
    );
    let other = bob
        .list(ListFilter {
            owner: Some("alice".into()),
            ..ListFilter::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(other, Error::Forbidden(_)), "{other:?}");
    let named = big_output::enqueue(&bob, 1)
        .owner("alice")
        .await
        .unwrap_err();
    assert!(matches!(named, Error::Forbidden(_)), "{named:?}");
    let waited = bob
        .wait(a.id(), Duration::from_millis(10))
        .await
        .unwrap_err();
    assert!(matches!(waited, Error::Forbidden(_)), "{waited:?}");
    assert_eq!(
        client.list(ListFilter::default()).await.unwrap().runs.len(),
        2
    );
}

async fn listed_workers_show_their_labels(env: TestEnv) {
    let client = env.client().await;
    let worker = client
        .worker("labelled")
        .task::<big_output>()
        .label("region", "eu")
        .label("gpu", "none")
        .start()
        .await
        .unwrap();
    let listed = eventually("the worker listed", Duration::from_secs(30), || async {
        client
            .workers()
            .await
            .unwrap()
            .into_iter()
            .find(|w| w.name == "labelled")
    })
    .await;
    assert_eq!(listed.labels.get("region").map(String::as_str), Some("eu"));
    assert_eq!(listed.labels.get("gpu").map(String::as_str), Some("none"));
    worker.shutdown().await.unwrap();
}

both_backends!(
    an_output_over_the_limit_is_stored_truncated_and_the_worker_goes_on,
    a_user_client_lists_only_its_own_runs_and_cannot_name_another_owner,
    listed_workers_show_their_labels,
);

// ---------------------------------------------------------------------------------------------
// Slow and broken clients, HTTPS

/// An engine server on loopback with `cfg`, on a fresh SQLite file; returns its address and a
/// token of the `default` tenant. The server stops when the returned sender is dropped.
async fn server(
    cfg: ServerConfig,
) -> (
    std::net::SocketAddr,
    String,
    tokio::sync::oneshot::Sender<()>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::start(EngineConfig {
        database_url: format!("sqlite://{}/db.sqlite", dir.path().display()),
        ..EngineConfig::default()
    })
    .await
    .unwrap();
    let token = engine.create_token("default").await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(http::serve(listener, engine, cfg, async move {
        let _ = rx.await;
    }));
    (addr, token, tx, dir)
}

fn short_timeouts() -> ServerConfig {
    ServerConfig {
        read_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        ..ServerConfig::default()
    }
}

/// Reads what the server sends until it closes the connection (or 60 s pass: a failure).
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the connection open");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_request_whose_body_never_arrives_is_answered_408_and_closed() {
    let (addr, token, _stop, _dir) = server(short_timeouts()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "POST /v1/runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"task\":"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let answer = read_until_closed(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
}

#[tokio::test]
async fn a_large_content_length_with_no_body_is_answered_not_left_hanging() {
    let (addr, token, _stop, _dir) = server(short_timeouts()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "POST /v1/runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: 2097152\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let answer = read_until_closed(&mut s).await;
    assert!(
        answer.starts_with("HTTP/1.1 408") || answer.starts_with("HTTP/1.1 413"),
        "{answer}"
    );
}

#[tokio::test]
async fn half_sent_headers_and_idle_keep_alive_connections_are_closed() {
    let (addr, _token, _stop, _dir) = server(short_timeouts()).await;
    // Headers that never end.
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let answer = read_until_closed(&mut half).await;
    assert!(!answer.contains("200 OK"), "{answer}");
    // A keep-alive connection that answered once and then idles.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut idle).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // A connection that never sends anything.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    read_until_closed(&mut silent).await;
}

#[tokio::test]
async fn connections_past_the_limit_wait_until_one_closes() {
    let (addr, _token, _stop, _dir) = server(ServerConfig {
        max_connections: 1,
        ..ServerConfig::default()
    })
    .await;
    let mut first = TcpStream::connect(addr).await.unwrap();
    first
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = first.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // The first connection is open (keep-alive): the second is not served meanwhile.
    let mut second = TcpStream::connect(addr).await.unwrap();
    second
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let early = tokio::time::timeout(Duration::from_millis(300), second.read(&mut buf)).await;
    assert!(early.is_err(), "served past the connection limit");
    drop(first);
    let answer = read_until_closed(&mut second).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// A CA and a server certificate for `localhost` and 127.0.0.1, written as PEM files.
fn certificates(dir: &std::path::Path) -> (TlsFiles, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let files = TlsFiles {
        cert: dir.join("server.pem"),
        key: dir.join("server-key.pem"),
    };
    std::fs::write(&files.cert, cert.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    (files, ca_file)
}

fn server_config(url: &str, token: &str, ca_file: Option<std::path::PathBuf>) -> Config {
    let mut c = Config::lite();
    c.mode = Mode::Server;
    c.server_url = Some(url.to_string());
    c.api_token = Some(Secret::new(token));
    c.tls_ca_file = ca_file;
    c
}

#[tokio::test]
async fn the_sdk_speaks_https_to_a_server_whose_ca_it_trusts_and_refuses_others() {
    let certs = tempfile::tempdir().unwrap();
    let (files, ca_file) = certificates(certs.path());
    let (addr, token, _stop, _dir) = server(ServerConfig {
        tls: Some(files),
        ..ServerConfig::default()
    })
    .await;
    let url = format!("https://localhost:{}", addr.port());
    let trusting = Client::connect(server_config(&url, &token, Some(ca_file)))
        .await
        .unwrap();
    let worker = trusting
        .worker("tls")
        .task::<big_output>()
        .start()
        .await
        .unwrap();
    let run = big_output::enqueue(&trusting, 2).await.unwrap();
    assert_eq!(
        finished(&trusting, run.id()).await.status,
        RunStatus::Succeeded
    );
    worker.shutdown().await.unwrap();

    let stranger = Client::connect(server_config(&url, &token, None)).await;
    let err = match stranger {
        Ok(c) => c.list(ListFilter::default()).await.unwrap_err(),
        Err(e) => e,
    };
    assert!(matches!(err, Error::Connection { .. }), "{err:?}");
    assert!(err.to_string().contains("certificate"), "says why: {err}");

    // Plain HTTP to the HTTPS port gets no answer as HTTP.
    let plain = Client::connect(server_config(
        &format!("http://127.0.0.1:{}", addr.port()),
        &token,
        None,
    ))
    .await;
    let err = match plain {
        Ok(c) => c.list(ListFilter::default()).await.unwrap_err(),
        Err(e) => e,
    };
    assert!(!matches!(err, Error::Unauthorized(_)), "{err:?}");
}

#[tokio::test]
async fn a_bad_ca_file_is_a_config_error_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.pem");
    let mut config = server_config("https://localhost:1", "t", Some(missing));
    let err = config.validate().unwrap_err();
    assert!(err.to_string().contains("tls.ca_file"), "{err}");
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    config.tls_ca_file = Some(not_pem);
    let err = config.validate().unwrap_err();
    assert!(
        err.to_string().contains("tls.ca_file") && err.to_string().contains("PEM"),
        "{err}"
    );
}

#[tokio::test]
async fn the_engine_reaches_postgresql_over_tls_with_sslmode_require() {
    let Some(db) = owlclaw_engine::testing::PgDb::create().await else {
        return;
    };
    let sep = if db.url.contains('?') { '&' } else { '?' };
    let url = format!("{}{sep}sslmode=require", db.url);
    let engine = Engine::start(EngineConfig {
        database_url: url.clone(),
        ..EngineConfig::default()
    })
    .await
    .unwrap();
    engine.ping().await.unwrap();
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(ssl, "the connection is encrypted");
    // And the engine's own connections too.
    let encrypted: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a ON a.pid = s.pid \
         WHERE a.datname = current_database() AND s.ssl AND s.pid <> pg_backend_pid()",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(encrypted >= 1, "the engine's pool is encrypted");
    engine.shutdown().await;
}
