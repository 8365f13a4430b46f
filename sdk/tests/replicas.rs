//! Several engine replicas in `server_url`: a replica that fails a request in a way another may
//! not (its database is unavailable: `503`) sends the next requests to another replica. (Killed
//! replicas and dropped database connections under a running task are in the end-to-end suite,
//! `tests/faults.rs`.)

use owlclaw::{Client, Config, Mode, Secret};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn server_config(url: &str) -> Config {
    let mut c = Config::lite();
    c.mode = Mode::Server;
    c.server_url = Some(url.to_string());
    c.api_token = Some(Secret::new("tok"));
    c
}

async fn answering_workers(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/v1/workers"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(server)
        .await;
}

#[tokio::test]
async fn a_replica_whose_database_is_unavailable_sends_the_next_requests_to_another() {
    let sick = MockServer::start().await;
    let healthy = MockServer::start().await;
    answering_workers(&sick).await;
    answering_workers(&healthy).await;
    Mock::given(method("GET"))
        .and(path("/v1/crons"))
        .respond_with(ResponseTemplate::new(503).set_body_json(json!({
            "error": { "code": "unavailable", "message": "the engine's database is unavailable; try again" }
        })))
        .expect(1)
        .mount(&sick)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/crons"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .expect(1)
        .mount(&healthy)
        .await;
    let client = Client::connect(server_config(&format!("{},{}", sick.uri(), healthy.uri())))
        .await
        .expect("connect");
    let err = client.crons().await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(
        client.crons().await.unwrap().is_empty(),
        "answered by the other replica"
    );
}

#[tokio::test]
async fn with_one_replica_a_failure_keeps_it() {
    let server = MockServer::start().await;
    answering_workers(&server).await;
    Mock::given(method("GET"))
        .and(path("/v1/crons"))
        .respond_with(ResponseTemplate::new(503).set_body_json(json!({
            "error": { "code": "unavailable", "message": "try again" }
        })))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/crons"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&server)
        .await;
    let client = Client::connect(server_config(&server.uri()))
        .await
        .expect("connect");
    assert!(client.crons().await.unwrap_err().is_transient());
    assert!(client.crons().await.unwrap().is_empty());
}
