//! Error paths of the SDK's HTTP connection, against a mock server (the happy paths run against a
//! real engine server in the end-to-end suite).

use owlclaw::{Client, Config, Error, Mode, RunId, RunStatus, Secret};
use serde_json::json;
use std::time::Duration;
use wiremock::matchers::{header, method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

fn server_config(url: &str, token: &str) -> Config {
    let mut c = Config::lite();
    c.mode = Mode::Server;
    c.server_url = Some(url.to_string());
    c.api_token = Some(Secret::new(token));
    c
}

async fn connected(server: &MockServer) -> Client {
    Mock::given(method("GET"))
        .and(path("/v1/workers"))
        .and(header("authorization", "Bearer tok"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(server)
        .await;
    Client::connect(server_config(&server.uri(), "tok"))
        .await
        .expect("connect")
}

fn error_body(code: &str, message: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut e = json!({ "code": code, "message": message });
    if let (Some(obj), Some(more)) = (e.as_object_mut(), extra.as_object()) {
        obj.extend(more.clone());
    }
    json!({ "error": e })
}

#[tokio::test]
async fn connect_to_an_unreachable_server_is_a_connection_error_naming_the_url() {
    // Bind then drop a listener: nothing listens on that port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    match Client::connect(server_config(&url, "tok")).await {
        Err(Error::Connection { url: u, message }) => {
            assert_eq!(u, url);
            assert!(!message.is_empty());
        }
        other => panic!("expected a connection error, got {other:?}"),
    }
}

#[tokio::test]
async fn connect_with_a_rejected_token_is_unauthorized() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/workers"))
        .respond_with(ResponseTemplate::new(401).set_body_json(error_body(
            "unauthorized",
            "unauthorized: invalid API token",
            json!({ "reason": "invalid API token" }),
        )))
        .mount(&server)
        .await;
    match Client::connect(server_config(&server.uri(), "wrong")).await {
        Err(Error::Unauthorized(m)) => assert_eq!(m, "invalid API token"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn api_errors_map_back_to_the_same_error_variants() {
    let server = MockServer::start().await;
    let client = connected(&server).await;
    let id = RunId::new();
    Mock::given(method("GET"))
        .and(path(format!("/v1/runs/{id}")))
        .respond_with(ResponseTemplate::new(404).set_body_json(error_body(
            "not_found",
            &format!("run not found: {id}"),
            json!({ "what": "run", "id": id }),
        )))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/v1/runs/{id}/cancel")))
        .respond_with(ResponseTemplate::new(409).set_body_json(error_body(
            "invalid_transition",
            &format!("cannot cancel run {id}: it is succeeded"),
            json!({ "run_id": id, "status": "succeeded", "action": "cancel", "detail": "cancel" }),
        )))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/runs"))
        .respond_with(ResponseTemplate::new(409).set_body_json(error_body(
            "idempotency_conflict",
            "idempotency key \"k\" was already used",
            json!({ "run_id": id, "key": "k", "existing": id, "detail": "k" }),
        )))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/v1/runs/{id}/retry")))
        .respond_with(ResponseTemplate::new(400).set_body_json(error_body(
            "invalid_input",
            "invalid priority: priority must be between 1 and 10 (higher runs first), got 11",
            json!({
                "field": "priority",
                "reason": "priority must be between 1 and 10 (higher runs first), got 11"
            }),
        )))
        .mount(&server)
        .await;

    match client.status(id).await {
        Err(Error::NotFound {
            what: "run",
            id: missing,
        }) => assert_eq!(missing, id.to_string()),
        other => panic!("{other:?}"),
    }
    match client.cancel(id).await {
        Err(Error::InvalidTransition {
            run_id,
            status: RunStatus::Succeeded,
            action: "cancel",
        }) => {
            assert_eq!(run_id, id)
        }
        other => panic!("{other:?}"),
    }
    let req = owlclaw::ScheduleRequest {
        task: "t".into(),
        idempotency_key: Some("k".into()),
        ..Default::default()
    };
    match client.submit(req).await {
        Err(Error::IdempotencyConflict { key, existing }) => {
            assert_eq!((key.as_str(), existing), ("k", id))
        }
        other => panic!("{other:?}"),
    }
    match client.retry(id).await {
        Err(Error::InvalidInput { field, message }) => {
            assert_eq!(field, "priority");
            assert!(message.starts_with("priority must be"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

/// Every error variant, as the engine writes it (core's `ErrorBody`), comes back from the HTTP
/// connection as the same variant with the same fields.
#[tokio::test]
async fn every_error_body_decodes_to_the_variant_it_was_written_from() {
    let server = MockServer::start().await;
    let client = connected(&server).await;
    let run = RunId::new();
    let errors = vec![
        Error::config("worker.slots", "\"0\": at least 1"),
        Error::Connection {
            url: "http://10.0.0.9:7070".into(),
            message: "connection refused".into(),
        },
        Error::Unauthorized("invalid API token".into()),
        Error::Forbidden("run belongs to another user than \"bob\"".into()),
        Error::NotFound {
            what: "worker",
            id: "w-1".into(),
        },
        Error::NotFound {
            what: "task",
            id: "send-email (no worker serving it has registered yet)".into(),
        },
        Error::invalid_input("runs[1].priority", "11: at most 10"),
        Error::IdempotencyConflict {
            key: "order-7".into(),
            existing: run,
        },
        Error::InvalidTransition {
            run_id: run,
            status: RunStatus::Queued,
            action: "retry",
        },
        Error::InvalidTransition {
            run_id: run,
            status: RunStatus::Cancelled,
            action: "checkpoint",
        },
        Error::Timeout("no answer within 2s".into()),
        Error::Task {
            run_id: run,
            message: "invalid priority: not mine".into(),
        },
        Error::Cancelled { run_id: run },
        Error::OutputTruncated {
            run_id: run,
            bytes: 2_000_000,
        },
        Error::Step {
            step: "charge".into(),
            message: "card declined".into(),
        },
        Error::NonDeterministic("step \"a\" where \"b\" ran before".into()),
        Error::Internal("disk full".into()),
    ];
    for e in errors {
        let id = RunId::new();
        let body = owlclaw_core::wire::ErrorBody::from(&e);
        Mock::given(method("GET"))
            .and(path(format!("/v1/runs/{id}")))
            .respond_with(ResponseTemplate::new(409).set_body_json(&body))
            .mount(&server)
            .await;
        let got = client.status(id).await.unwrap_err();
        assert_eq!(format!("{got:?}"), format!("{e:?}"), "{body:?}");
    }
    // The engine's opaque answers: `unavailable` is a connection error naming this server.
    let id = RunId::new();
    Mock::given(method("GET"))
        .and(path(format!("/v1/runs/{id}")))
        .respond_with(ResponseTemplate::new(503).set_body_json(error_body(
            "unavailable",
            "the engine's database is unavailable; try again (incident 0123456789ab)",
            json!({}),
        )))
        .mount(&server)
        .await;
    match client.status(id).await {
        Err(Error::Connection { url, message }) => {
            assert_eq!(url, server.uri());
            assert!(message.contains("incident 0123456789ab"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // A 404 of no resource (an unknown endpoint) names no `what`.
    let id = RunId::new();
    Mock::given(method("GET"))
        .and(path(format!("/v1/runs/{id}")))
        .respond_with(ResponseTemplate::new(404).set_body_json(error_body(
            "not_found",
            "no such endpoint",
            json!({}),
        )))
        .mount(&server)
        .await;
    match client.status(id).await {
        Err(Error::NotFound { what, id }) => {
            assert_eq!((what, id.as_str()), ("resource", "no such endpoint"))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn gateway_failures_are_transient_connection_errors_and_garbage_is_internal() {
    let server = MockServer::start().await;
    let client = connected(&server).await;
    Mock::given(method("GET"))
        .and(path("/v1/crons"))
        .respond_with(
            ResponseTemplate::new(503).set_body_string("<html>upstream unavailable</html>"),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/runs"))
        .respond_with(ResponseTemplate::new(200).set_body_string("not json"))
        .mount(&server)
        .await;
    let e = client.crons().await.unwrap_err();
    assert!(matches!(e, Error::Connection { .. }), "{e:?}");
    assert!(e.is_transient());
    let e = client.list(Default::default()).await.unwrap_err();
    assert!(
        matches!(e, Error::Internal(ref m) if m.contains("unexpected answer")),
        "{e:?}"
    );
}

/// Answers 503 to the first `failures` calls, then an empty exchange.
struct FlakyExchange {
    failures: usize,
    calls: std::sync::atomic::AtomicUsize,
}

impl Respond for FlakyExchange {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if n < self.failures {
            ResponseTemplate::new(503).set_body_string("restarting")
        } else {
            ResponseTemplate::new(200)
                .set_body_json(json!({ "assignments": [], "cancellations": [] }))
        }
    }
}

#[owlclaw::task]
async fn noop(_ctx: owlclaw::Context) -> anyhow::Result<()> {
    Ok(())
}

#[tokio::test]
async fn the_worker_loop_retries_transient_failures_and_keeps_running() {
    let server = MockServer::start().await;
    let client = connected(&server).await;
    Mock::given(method("POST"))
        .and(path("/v1/workers"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({ "worker_id": "w-1", "lease_ms": 15000 })),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex("^/v1/workers/w-1/exchange$"))
        .respond_with(FlakyExchange {
            failures: 4,
            calls: Default::default(),
        })
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/v1/workers/w-1"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let worker = client
        .worker("flaky")
        .task::<noop>()
        .heartbeat(Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    // Long enough for the failures and some successful exchanges after them.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let exchanges = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().ends_with("/exchange"))
        .count();
    assert!(
        exchanges > 4,
        "the worker kept exchanging after the failures ({exchanges} exchanges)"
    );
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn with_several_server_urls_a_client_fails_over_to_the_one_that_answers() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("http://127.0.0.1:{port}");
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/workers"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/crons"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .expect(1)
        .mount(&server)
        .await;
    let urls = format!("{dead},{}", server.uri());
    let client = Client::connect(server_config(&urls, "tok"))
        .await
        .expect("fails over at connect");
    assert!(client.crons().await.unwrap().is_empty());
    // Both servers down: the error names what was tried.
    let urls = format!("{dead},{dead}");
    match Client::connect(server_config(&urls, "tok")).await {
        Err(Error::Connection { url, .. }) => assert_eq!(url, dead),
        other => panic!("{other:?}"),
    }
}
