//! The engine's HTTP API, called in-process through its axum router on a real SQLite file.
//!
//! Pins the contract of DESIGN.md ("Worker protocol", "HTTP resources", "Errors users see",
//! "Stable interface"): routes and the OpenAPI document, authentication, tenant isolation, the
//! error shape `{"error": {"code", "message"}}` with its status codes (and that bad input stores
//! nothing), run scheduling and listing, long polls, ownership, and the worker protocol.

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use owlclaw_engine::http::{router, AuthMode, ServerConfig, USER_HEADER};
use owlclaw_engine::{Engine, EngineConfig};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use tempfile::TempDir;
use tower::ServiceExt;

/// A dummy run id that no test schedules.
const NO_SUCH_RUN: &str = "00000000-0000-4000-8000-000000000000";

/// An engine on a fresh SQLite file, its router, and a token of tenant `acme`.
struct Harness {
    engine: Engine,
    app: Router,
    token: String,
    _dir: TempDir,
}

/// An answer: status, headers and body text.
struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("answer is not JSON ({e}): {:?}", self.text))
    }

    /// Asserts the answer is the API error `code` with `status`, in exactly the error shape, and
    /// returns the `error` object.
    #[track_caller]
    fn error(&self, status: StatusCode, code: &str) -> Value {
        assert_eq!(self.status, status, "answer: {}", self.text);
        let body = self.json();
        let obj = body.as_object().expect("error body is an object");
        assert_eq!(
            obj.keys().collect::<Vec<_>>(),
            ["error"],
            "error body has only `error`: {body}"
        );
        let err = &body["error"];
        assert_eq!(err["code"], code, "answer: {body}");
        let message = err["message"].as_str().expect("error.message is a string");
        assert!(!message.is_empty(), "empty error message: {body}");
        err.clone()
    }

    fn is_fallback(&self) -> bool {
        self.status == StatusCode::NOT_FOUND
            && serde_json::from_str::<Value>(&self.text).ok()
                == Some(json!({"error": {"code": "not_found", "message": "no such endpoint"}}))
    }
}

async fn harness() -> Harness {
    harness_with(ServerConfig::default()).await
}

async fn harness_with(cfg: ServerConfig) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::start(EngineConfig {
        database_url: format!("sqlite://{}/db.sqlite", dir.path().display()),
        ..EngineConfig::default()
    })
    .await
    .unwrap();
    let token = engine.create_token("acme").await.unwrap();
    let app = router(engine.clone(), &cfg);
    Harness {
        engine,
        app,
        token,
        _dir: dir,
    }
}

fn request(
    method: Method,
    uri: &str,
    token: Option<&str>,
    user: Option<&str>,
    body: Option<&Value>,
) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    if let Some(u) = user {
        b = b.header(USER_HEADER, u);
    }
    match body {
        Some(v) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    }
}

async fn send_to(app: Router, req: Request<Body>) -> Resp {
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    Resp {
        status,
        headers,
        text: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

fn task_def(name: &str) -> Value {
    json!({
        "name": name,
        "retries": 0,
        "timeout": "30s",
        "priority": 5,
        "backoff": {"initial": "1s", "factor": 2.0, "max": "5m"}
    })
}

impl Harness {
    async fn send(&self, req: Request<Body>) -> Resp {
        send_to(self.app.clone(), req).await
    }

    /// A request with this harness' token.
    async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> Resp {
        self.send(request(method, uri, Some(&self.token), None, body.as_ref()))
            .await
    }

    /// A request with `token` (none when `None`) and the acting user `user`.
    async fn call_as(
        &self,
        token: Option<&str>,
        user: Option<&str>,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> Resp {
        self.send(request(method, uri, token, user, body.as_ref()))
            .await
    }

    /// A raw body with a content type.
    async fn call_raw(
        &self,
        method: Method,
        uri: &str,
        content_type: Option<&str>,
        body: String,
    ) -> Resp {
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token));
        if let Some(ct) = content_type {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        self.send(b.body(Body::from(body)).unwrap()).await
    }

    /// Registers a worker serving `tasks` with `token`; returns its id.
    async fn register_worker_as(&self, token: &str, name: &str, tasks: &[&str]) -> String {
        let body = json!({
            "name": name,
            "slots": 4,
            "tasks": tasks.iter().map(|t| task_def(t)).collect::<Vec<_>>(),
            "labels": {"zone": "test"}
        });
        let r = self
            .call_as(Some(token), None, Method::POST, "/v1/workers", Some(body))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "register: {}", r.text);
        let session = r.json();
        assert!(session["lease_ms"].as_u64().unwrap() > 0, "{session}");
        session["worker_id"].as_str().unwrap().to_string()
    }

    async fn register_worker(&self, tasks: &[&str]) -> String {
        let token = self.token.clone();
        self.register_worker_as(&token, "mailer", tasks).await
    }

    /// Schedules a run, expecting 201; returns its snapshot.
    async fn schedule(&self, body: Value) -> Value {
        let r = self.call(Method::POST, "/v1/runs", Some(body)).await;
        assert_eq!(r.status, StatusCode::CREATED, "schedule: {}", r.text);
        r.json()
    }

    async fn get_run(&self, id: &str) -> Value {
        let r = self
            .call(Method::GET, &format!("/v1/runs/{id}"), None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "get: {}", r.text);
        r.json()
    }

    /// `GET /v1/runs?{query}`: the page.
    async fn list(&self, query: &str) -> Value {
        let r = self
            .call(Method::GET, &format!("/v1/runs?{query}"), None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "list: {}", r.text);
        r.json()
    }

    async fn list_ids(&self, query: &str) -> Vec<String> {
        ids(&self.list(query).await["runs"])
    }

    async fn assert_nothing_stored(&self) {
        let page = self.list("").await;
        assert_eq!(page["runs"], json!([]), "bad input stored a run: {page}");
        let all = self
            .engine
            .list_runs("acme", Default::default())
            .await
            .unwrap();
        assert!(all.runs.is_empty());
    }

    async fn exchange(&self, worker: &str, body: Value) -> Value {
        let r = self
            .call(
                Method::POST,
                &format!("/v1/workers/{worker}/exchange"),
                Some(body),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "exchange: {}", r.text);
        r.json()
    }
}

fn ids(runs: &Value) -> Vec<String> {
    runs.as_array()
        .expect("an array of runs")
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

fn id_of(run: &Value) -> String {
    run["id"].as_str().expect("run id").to_string()
}

/// The routes of DESIGN.md's table.
const DESIGNED_ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/runs"),
    ("get", "/v1/runs"),
    ("post", "/v1/runs/bulk"),
    ("get", "/v1/runs/{id}"),
    ("get", "/v1/runs/{id}/events"),
    ("get", "/v1/runs/{id}/result"),
    ("post", "/v1/runs/{id}/cancel"),
    ("post", "/v1/runs/{id}/retry"),
    ("post", "/v1/runs/{id}/replay"),
    ("get", "/v1/runs/count"),
    ("get", "/v1/overview"),
    ("post", "/v1/runs/cancel"),
    ("post", "/v1/runs/retry"),
    ("get", "/v1/runs/{id}/tasks"),
    ("get", "/v1/workflows/{name}/plan"),
    ("get", "/v1/crons"),
    ("post", "/v1/crons"),
    ("delete", "/v1/crons/{id}"),
    ("post", "/v1/crons/{id}/pause"),
    ("post", "/v1/crons/{id}/resume"),
    ("post", "/v1/crons/{id}/trigger"),
    ("post", "/v1/workers"),
    ("get", "/v1/workers"),
    ("post", "/v1/workers/{id}/exchange"),
    ("delete", "/v1/workers/{id}"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/v1/openapi.json"),
];

const HTTP_METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

async fn openapi_doc(h: &Harness) -> Value {
    let r = h
        .call_as(None, None, Method::GET, "/v1/openapi.json", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()
}

/// Every (method, path) of the document.
fn documented_operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (key, _) in item.as_object().unwrap() {
            if HTTP_METHODS.contains(&key.as_str()) {
                ops.insert((key.clone(), path.clone()));
            }
        }
    }
    ops
}

/// Follows `$ref`s into `components`.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("unexpected $ref {r}"));
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => schema,
    }
}

// =============================================================================================
// OpenAPI

#[tokio::test]
async fn openapi_document_is_served_without_auth_and_has_every_designed_route() {
    let h = harness().await;
    let r = h
        .call_as(None, None, Method::GET, "/v1/openapi.json", None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "{:?}",
        r.headers
    );
    let doc = r.json();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with('3'),
        "{}",
        doc["openapi"]
    );
    let ops = documented_operations(&doc);
    for (method, path) in DESIGNED_ROUTES {
        assert!(
            ops.contains(&(method.to_string(), path.to_string())),
            "{} {path} is missing from the OpenAPI document; it has {ops:?}",
            method.to_uppercase()
        );
    }
    // The same document as the library function.
    let lib = serde_json::to_value(owlclaw_engine::http::openapi()).unwrap();
    assert_eq!(documented_operations(&lib), ops);
}

#[tokio::test]
async fn every_documented_operation_is_served() {
    let h = harness().await;
    let worker = h.register_worker(&["send-email"]).await;
    let run = id_of(&h.schedule(json!({"task": "send-email", "input": {}})).await);
    let doc = openapi_doc(&h).await;
    let ops = documented_operations(&doc);
    assert!(ops.len() >= DESIGNED_ROUTES.len());
    for (method, path) in &ops {
        // Fill path parameters with a real id (runs, workers) or a dummy one (crons).
        let uri = path
            .replace("/v1/runs/{id}", &format!("/v1/runs/{run}"))
            .replace("/v1/workers/{id}", &format!("/v1/workers/{worker}"))
            .replace("{id}", NO_SUCH_RUN)
            .replace("{name}", "no-such-workflow");
        let uri = if uri.ends_with("/result") {
            format!("{uri}?timeout=10ms")
        } else {
            uri
        };
        assert!(!uri.contains('{'), "unfilled parameter in {uri}");
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let body = (m == Method::POST).then(|| json!({}));
        let r = h.call(m.clone(), &uri, body).await;
        assert_ne!(
            r.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{m} {uri} is documented but not allowed"
        );
        assert!(!r.is_fallback(), "{m} {uri} is documented but not served");
    }
}

#[tokio::test]
async fn openapi_run_snapshot_schema_has_the_contract_fields() {
    let h = harness().await;
    let doc = openapi_doc(&h).await;
    let contract = [
        "id",
        "task",
        "status",
        "attempt",
        "max_attempts",
        "priority",
        "input",
        "output",
        "error",
        "owner",
        "idempotency_key",
        "parent_id",
        "run_at",
        "created_at",
        "started_at",
        "finished_at",
        "steps",
    ];
    // The snapshot answered by GET /v1/runs/{id}, by POST /v1/runs, and listed by GET /v1/runs.
    let get = &doc["paths"]["/v1/runs/{id}"]["get"]["responses"]["200"]["content"]
        ["application/json"]["schema"];
    let post = &doc["paths"]["/v1/runs"]["post"]["responses"]["201"]["content"]["application/json"]
        ["schema"];
    let page = resolve(
        &doc,
        &doc["paths"]["/v1/runs"]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"],
    );
    let listed = &page["properties"]["runs"]["items"];
    for schema in [get, post, listed] {
        assert!(schema.is_object(), "no schema in {doc}");
        let snapshot = resolve(&doc, schema);
        let props = snapshot["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("RunSnapshot has no properties: {snapshot}"));
        for field in contract {
            assert!(
                props.contains_key(field),
                "RunSnapshot lacks {field}: {snapshot}"
            );
        }
        let steps = resolve(&doc, &props["steps"]["items"]);
        for field in ["name", "status", "output"] {
            assert!(
                steps["properties"].get(field).is_some(),
                "step lacks {field}: {steps}"
            );
        }
    }
    // Errors are documented in their shape.
    let err = resolve(&doc, &doc["components"]["schemas"]["ErrorBody"]);
    assert!(err["properties"].get("error").is_some(), "{err}");
    let detail = resolve(&doc, &doc["components"]["schemas"]["ErrorDetail"]);
    for field in ["code", "message"] {
        assert!(detail["properties"].get(field).is_some(), "{detail}");
    }
}

#[tokio::test]
async fn unknown_endpoint_answers_not_found_in_the_error_shape() {
    let h = harness().await;
    let r = h.call(Method::GET, "/v1/nope", None).await;
    r.error(StatusCode::NOT_FOUND, "not_found");
    assert!(r.is_fallback());
}

// =============================================================================================
// Auth

#[tokio::test]
async fn v1_requests_without_a_valid_bearer_token_are_unauthorized() {
    let h = harness().await;
    for (what, auth) in [
        ("no header", None),
        ("wrong token", Some("Bearer wrong")),
        ("basic auth", Some("Basic x")),
        ("empty bearer", Some("Bearer ")),
        ("no scheme", Some(h.token.as_str())),
    ] {
        for (method, uri, body) in [
            (Method::GET, "/v1/runs", None),
            (
                Method::POST,
                "/v1/runs",
                Some(json!({"task": "t", "retries": 0, "timeout": "1s"})),
            ),
            (Method::GET, "/v1/workers", None),
            (Method::GET, "/v1/crons", None),
        ] {
            let mut b = Request::builder().method(method.clone()).uri(uri);
            if let Some(a) = auth {
                b = b.header(header::AUTHORIZATION, a);
            }
            let req = match &body {
                Some(v) => b
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(v.to_string()))
                    .unwrap(),
                None => b.body(Body::empty()).unwrap(),
            };
            let r = h.send(req).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {method} {uri}");
            r.error(StatusCode::UNAUTHORIZED, "unauthorized");
        }
    }
    h.assert_nothing_stored().await;
}

#[tokio::test]
async fn token_created_by_the_engine_authenticates_as_its_tenant() {
    let h = harness().await;
    let r = h.call(Method::GET, "/v1/runs", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json(), json!({"runs": [], "next_cursor": null}));
    // A run scheduled with the token belongs to its tenant.
    let run = h
        .schedule(json!({"task": "adhoc", "retries": 0, "timeout": "5s"}))
        .await;
    let acme = h
        .engine
        .list_runs("acme", Default::default())
        .await
        .unwrap();
    assert_eq!(acme.runs.len(), 1);
    assert_eq!(acme.runs[0].id.to_string(), id_of(&run));
    // A second request with the same token (cached) still works.
    assert_eq!(h.list_ids("").await, vec![id_of(&run)]);
}

#[tokio::test]
async fn health_readiness_metrics_and_document_need_no_auth() {
    let h = harness().await;
    for uri in ["/healthz", "/readyz", "/metrics", "/v1/openapi.json"] {
        let r = h.call_as(None, None, Method::GET, uri, None).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.text);
    }
    let r = h.call_as(None, None, Method::GET, "/healthz", None).await;
    assert_eq!(r.json(), json!({"status": "ok"}));
}

#[tokio::test]
async fn insecure_dev_mode_accepts_requests_without_a_token() {
    let h = harness_with(ServerConfig {
        auth: AuthMode::InsecureDev,
        ..ServerConfig::default()
    })
    .await;
    let r = h.call_as(None, None, Method::GET, "/v1/runs", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let reg = json!({"name": "w", "slots": 1, "tasks": [task_def("dev-task")]});
    let r = h
        .call_as(None, None, Method::POST, "/v1/workers", Some(reg))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = h
        .call_as(
            None,
            None,
            Method::POST,
            "/v1/runs",
            Some(json!({"task": "dev-task"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    // Every caller is the `default` tenant.
    let default = h
        .engine
        .list_runs(owlclaw_engine::LITE_TENANT, Default::default())
        .await
        .unwrap();
    assert_eq!(default.runs.len(), 1);
    assert_eq!(default.runs[0].id.to_string(), id_of(&r.json()));
}

// =============================================================================================
// Tenants

#[tokio::test]
async fn runs_of_another_tenant_are_not_found_and_not_listed() {
    let h = harness().await;
    let other = h.engine.create_token("globex").await.unwrap();
    h.register_worker(&["send-email"]).await;
    let run = id_of(
        &h.schedule(json!({"task": "send-email", "input": {"to": "a"}}))
            .await,
    );
    for (method, uri) in [
        (Method::GET, format!("/v1/runs/{run}")),
        (Method::GET, format!("/v1/runs/{run}/events")),
        (Method::GET, format!("/v1/runs/{run}/result?timeout=10ms")),
        (Method::POST, format!("/v1/runs/{run}/cancel")),
        (Method::POST, format!("/v1/runs/{run}/retry")),
    ] {
        let r = h
            .call_as(Some(&other), None, method.clone(), &uri, None)
            .await;
        let err = r.error(StatusCode::NOT_FOUND, "not_found");
        assert!(!r.is_fallback(), "{method} {uri}");
        assert!(err["message"].as_str().unwrap().contains(&run), "{err}");
    }
    let r = h
        .call_as(Some(&other), None, Method::GET, "/v1/runs", None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["runs"], json!([]));
    // Tenant B's cancel did nothing.
    assert_eq!(h.get_run(&run).await["status"], "queued");
    // Task definitions are per tenant too: B can't schedule A's task without its policies.
    let r = h
        .call_as(
            Some(&other),
            None,
            Method::POST,
            "/v1/runs",
            Some(json!({"task": "send-email"})),
        )
        .await;
    r.error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn workers_and_crons_are_per_tenant() {
    let h = harness().await;
    let other = h.engine.create_token("globex").await.unwrap();
    let worker = h.register_worker(&["send-email"]).await;
    let r = h
        .call(
            Method::POST,
            "/v1/crons",
            Some(json!({"task": "send-email", "expr": "0 0 1 1 *"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let cron = r.json()["id"].as_str().unwrap().to_string();

    // B sees none of them and can't touch them.
    let r = h
        .call_as(Some(&other), None, Method::GET, "/v1/workers", None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!([]));
    let r = h
        .call_as(Some(&other), None, Method::GET, "/v1/crons", None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!([]));
    let r = h
        .call_as(
            Some(&other),
            None,
            Method::POST,
            &format!("/v1/workers/{worker}/exchange"),
            Some(json!({"heartbeat": true})),
        )
        .await;
    r.error(StatusCode::NOT_FOUND, "not_found");
    let r = h
        .call_as(
            Some(&other),
            None,
            Method::DELETE,
            &format!("/v1/workers/{worker}"),
            None,
        )
        .await;
    r.error(StatusCode::NOT_FOUND, "not_found");
    let r = h
        .call_as(
            Some(&other),
            None,
            Method::DELETE,
            &format!("/v1/crons/{cron}"),
            None,
        )
        .await;
    r.error(StatusCode::NOT_FOUND, "not_found");

    // A still has both.
    let r = h.call(Method::GET, "/v1/workers", None).await;
    let workers = r.json();
    assert_eq!(workers.as_array().unwrap().len(), 1, "{workers}");
    assert_eq!(workers[0]["id"], worker.as_str());
    let crons = h.call(Method::GET, "/v1/crons", None).await.json();
    assert_eq!(crons.as_array().unwrap().len(), 1, "{crons}");
    assert_eq!(crons[0]["id"], cron.as_str());
    assert_eq!(crons[0]["timezone"], "UTC");
    assert!(crons[0]["next_tick"].is_string(), "{crons}");

    // A deletes its cron: 204, gone.
    let r = h
        .call(Method::DELETE, &format!("/v1/crons/{cron}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert_eq!(
        h.call(Method::GET, "/v1/crons", None).await.json(),
        json!([])
    );
}

// =============================================================================================
// Errors

#[tokio::test]
async fn malformed_json_is_invalid_json_and_stores_nothing() {
    let h = harness().await;
    h.register_worker(&["send-email"]).await;
    for body in [r#"{"task": "send-email","#, "not json", ""] {
        let r = h
            .call_raw(
                Method::POST,
                "/v1/runs",
                Some("application/json"),
                body.into(),
            )
            .await;
        r.error(StatusCode::BAD_REQUEST, "invalid_json");
    }
    let r = h
        .call_raw(
            Method::POST,
            "/v1/runs/bulk",
            Some("application/json"),
            "[".into(),
        )
        .await;
    r.error(StatusCode::BAD_REQUEST, "invalid_json");
    h.assert_nothing_stored().await;
}

#[tokio::test]
async fn field_of_the_wrong_type_is_invalid_input_and_stores_nothing() {
    let h = harness().await;
    h.register_worker(&["send-email"]).await;
    for body in [
        json!({"task": 5}),
        json!({"task": "send-email", "priority": "high"}),
        json!({"input": {}}),
    ] {
        let r = h.call(Method::POST, "/v1/runs", Some(body.clone())).await;
        r.error(StatusCode::BAD_REQUEST, "invalid_input");
    }
    h.assert_nothing_stored().await;
}

#[tokio::test]
async fn unknown_field_is_refused_and_stores_nothing() {
    let h = harness().await;
    h.register_worker(&["send-email"]).await;
    let r = h
        .call(
            Method::POST,
            "/v1/runs",
            Some(json!({"task": "send-email", "prio": 3})),
        )
        .await;
    let err = r.error(StatusCode::BAD_REQUEST, "invalid_input");
    assert!(err["message"].as_str().unwrap().contains("prio"), "{err}");
    let r = h
        .call(
            Method::POST,
            "/v1/crons",
            Some(json!({"task": "send-email", "expr": "0 0 1 1 *", "tz": "UTC"})),
        )
        .await;
    r.error(StatusCode::BAD_REQUEST, "invalid_input");
    h.assert_nothing_stored().await;
    assert_eq!(
        h.call(Method::GET, "/v1/crons", None).await.json(),
        json!([])
    );
}

#[tokio::test]
async fn unknown_task_without_retries_and_timeout_is_not_found_naming_the_task() {
    let h = harness().await;
    let r = h
        .call(
            Method::POST,
            "/v1/runs",
            Some(json!({"task": "never-registered"})),
        )
        .await;
    let err = r.error(StatusCode::NOT_FOUND, "not_found");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("never-registered"),
        "{err}"
    );
    h.assert_nothing_stored().await;
    // With both retries and timeout given, an unregistered task may be scheduled.
    let run = h
        .schedule(json!({"task": "never-registered", "retries": 2, "timeout": "10s"}))
        .await;
    assert_eq!(run["max_attempts"], 3);
    assert_eq!(run["timeout_ms"], 10_000);
}

#[tokio::test]
async fn priority_out_of_range_is_invalid_input_on_priority() {
    let h = harness().await;
    h.register_worker(&["send-email"]).await;
    for p in [0, 11, -1] {
        let r = h
            .call(
                Method::POST,
                "/v1/runs",
                Some(json!({"task": "send-email", "priority": p})),
            )
            .await;
        let err = r.error(StatusCode::BAD_REQUEST, "invalid_input");
        assert_eq!(err["field"], "priority", "{err}");
        assert!(
            err["message"].as_str().unwrap().contains(&p.to_string()),
            "{err}"
        );
    }
    h.assert_nothing_stored().await;
    for p in [1, 10] {
        let run = h
            .schedule(json!({"task": "send-email", "priority": p}))
            .await;
        assert_eq!(run["priority"], p);
    }
}

#[tokio::test]
async fn negative_or_unitless_delay_is_refused_naming_delay() {
    let h = harness().await;
    h.register_worker(&["send-email"]).await;
    for delay in ["-5s", "5", "5x", ""] {
        let r = h
            .call(
                Method::POST,
                "/v1/runs",
                Some(json!({"task": "send-email", "delay": delay})),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "delay {delay:?}: {}",
            r.text
        );
        let err = r.error(StatusCode::BAD_REQUEST, "invalid_input");
        assert!(err["message"].as_str().unwrap().contains("delay"), "{err}");
    }
    h.assert_nothing_stored().await;
}

#[tokio::test]
async fn delay_and_run_at_together_are_refused() {
    let h = harness().await;
    h.register_worker(&["send-email"]).await;
    let r = h
        .call(
            Method::POST,
            "/v1/runs",
            Some(json!({"task": "send-email", "delay": "10s", "run_at": "2099-01-01T00:00:00Z"})),
        )
        .await;
    let err = r.error(StatusCode::BAD_REQUEST, "invalid_input");
    let message = err["message"].as_str().unwrap();
    assert!(
        message.contains("delay") && message.contains("run_at"),
        "{err}"
    );
    h.assert_nothing_stored().await;
}

#[tokio::test]
async fn invalid_cron_expression_is_refused_naming_expr() {
    let h = harness().await;
    for expr in ["not a cron", "61 * * * *", "* * *"] {
        let r = h
            .call(
                Method::POST,
                "/v1/crons",
                Some(json!({"task": "cleanup", "expr": expr})),
            )
            .await;
        let err = r.error(StatusCode::BAD_REQUEST, "invalid_input");
        assert_eq!(err["field"], "expr", "{err}");
    }
    assert_eq!(
        h.call(Method::GET, "/v1/crons", None).await.json(),
        json!([])
    );
}

#[tokio::test]
async fn unknown_time_zone_is_refused() {
    let h = harness().await;
    // A cron needs a task some worker serves.
    h.register_worker(&["cleanup"]).await;
    let r = h
        .call(
            Method::POST,
            "/v1/crons",
            Some(json!({"task": "cleanup", "expr": "0 3 * * *", "timezone": "Mars/Olympus"})),
        )
        .await;
    let err = r.error(StatusCode::BAD_REQUEST, "invalid_input");
    assert_eq!(err["field"], "timezone", "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("Mars/Olympus"),
        "{err}"
    );
    assert_eq!(
        h.call(Method::GET, "/v1/crons", None).await.json(),
        json!([])
    );
    // A known one is accepted and kept.
    let r = h
        .call(
            Method::POST,
            "/v1/crons",
            Some(json!({"task": "cleanup", "expr": "0 3 * * *", "timezone": "Europe/Paris"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json()["timezone"], "Europe/Paris");
}

#[tokio::test]
async fn body_over_the_limit_is_payload_too_large() {
    let h = harness_with(ServerConfig {
        body_limit: 1024,
        ..ServerConfig::default()
    })
    .await;
    h.register_worker(&["send-email"]).await;
    let big = json!({"task": "send-email", "input": {"blob": "x".repeat(2048)}});
    let r = h.call(Method::POST, "/v1/runs", Some(big.clone())).await;
    r.error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let r = h
        .call(Method::POST, "/v1/runs/bulk", Some(json!({"runs": [big]})))
        .await;
    r.error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    h.assert_nothing_stored().await;
    // Under the limit is fine.
    h.schedule(json!({"task": "send-email", "input": {"blob": "x".repeat(100)}}))
        .await;
}

#[tokio::test]
async fn wrong_content_type_is_unsupported_media_type() {
    let h = harness().await;
    h.register_worker(&["send-email"]).await;
    let body = json!({"task": "send-email"}).to_string();
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let r = h.call_raw(Method::POST, "/v1/runs", ct, body.clone()).await;
        r.error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    }
    h.assert_nothing_stored().await;
}

#[tokio::test]
async fn unknown_run_is_not_found() {
    let h = harness().await;
    for (method, uri) in [
        (Method::GET, format!("/v1/runs/{NO_SUCH_RUN}")),
        (Method::GET, format!("/v1/runs/{NO_SUCH_RUN}/events")),
        (
            Method::GET,
            format!("/v1/runs/{NO_SUCH_RUN}/result?timeout=10ms"),
        ),
        (Method::POST, format!("/v1/runs/{NO_SUCH_RUN}/cancel")),
        (Method::POST, format!("/v1/runs/{NO_SUCH_RUN}/retry")),
    ] {
        let r = h.call(method.clone(), &uri, None).await;
        let err = r.error(StatusCode::NOT_FOUND, "not_found");
        assert!(!r.is_fallback(), "{method} {uri}");
        assert!(
            err["message"].as_str().unwrap().contains(NO_SUCH_RUN),
            "{err}"
        );
    }
}

#[tokio::test]
async fn malformed_run_id_is_bad_request() {
    let h = harness().await;
    for (method, uri) in [
        (Method::GET, "/v1/runs/not-a-uuid"),
        (Method::GET, "/v1/runs/not-a-uuid/events"),
        (Method::GET, "/v1/runs/not-a-uuid/result?timeout=10ms"),
        (Method::POST, "/v1/runs/not-a-uuid/cancel"),
        (Method::POST, "/v1/runs/not-a-uuid/retry"),
    ] {
        let r = h.call(method.clone(), uri, None).await;
        let err = r.error(StatusCode::BAD_REQUEST, "invalid_input");
        assert!(
            err["message"].as_str().unwrap().contains("not-a-uuid"),
            "{method} {uri}: {err}"
        );
    }
}

#[tokio::test]
async fn bad_list_and_result_parameters_are_invalid_input() {
    let h = harness().await;
    let r = h.call(Method::GET, "/v1/runs?status=done", None).await;
    let err = r.error(StatusCode::BAD_REQUEST, "invalid_input");
    assert_eq!(err["field"], "status", "{err}");
    let r = h.call(Method::GET, "/v1/runs?limit=lots", None).await;
    r.error(StatusCode::BAD_REQUEST, "invalid_input");
    let r = h.call(Method::GET, "/v1/runs?cursor=xyz", None).await;
    r.error(StatusCode::BAD_REQUEST, "invalid_input");
    h.register_worker(&["send-email"]).await;
    let run = id_of(&h.schedule(json!({"task": "send-email"})).await);
    for t in ["10", "6m"] {
        let r = h
            .call(
                Method::GET,
                &format!("/v1/runs/{run}/result?timeout={t}"),
                None,
            )
            .await;
        let err = r.error(StatusCode::BAD_REQUEST, "invalid_input");
        assert_eq!(err["field"], "timeout", "{err}");
    }
}

#[tokio::test]
async fn cancel_of_a_finished_run_is_invalid_transition() {
    let h = harness().await;
    h.register_worker(&["send-email"]).await;
    let run = id_of(&h.schedule(json!({"task": "send-email"})).await);
    let r = h
        .call(Method::POST, &format!("/v1/runs/{run}/cancel"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["status"], "cancelled");
    assert!(r.json()["finished_at"].is_string());
    let r = h
        .call(Method::POST, &format!("/v1/runs/{run}/cancel"), None)
        .await;
    let err = r.error(StatusCode::CONFLICT, "invalid_transition");
    assert_eq!(err["status"], "cancelled", "{err}");
    assert_eq!(err["run_id"], run.as_str(), "{err}");
    assert_eq!(err["detail"], "cancel", "{err}");
    assert_eq!(h.get_run(&run).await["status"], "cancelled");
}

/// Error bodies carry the fields of their error (core's `ErrorBody`), so that a client rebuilds
/// the error without reading its message.
#[tokio::test]
async fn error_bodies_carry_the_fields_of_their_error() {
    let h = harness().await;
    let r = h
        .call(Method::GET, &format!("/v1/runs/{NO_SUCH_RUN}"), None)
        .await;
    let err = r.error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(err["what"], "run", "{err}");
    assert_eq!(err["id"], NO_SUCH_RUN, "{err}");
    h.register_worker(&["send-email"]).await;
    let run = id_of(&h.schedule(json!({"task": "send-email"})).await);
    let r = h
        .call(Method::POST, &format!("/v1/runs/{run}/retry"), None)
        .await;
    let err = r.error(StatusCode::CONFLICT, "invalid_transition");
    assert_eq!(err["action"], "retry", "{err}");
    assert_eq!(err["status"], "queued", "{err}");
    assert_eq!(err["run_id"], run.as_str(), "{err}");
    let body = json!({"task": "send-email", "input": 1, "idempotency_key": "k-1"});
    let first = h.schedule(body).await;
    let r = h
        .call(
            Method::POST,
            "/v1/runs",
            Some(json!({"task": "send-email", "input": 2, "idempotency_key": "k-1"})),
        )
        .await;
    let err = r.error(StatusCode::CONFLICT, "idempotency_conflict");
    assert_eq!(err["key"], "k-1", "{err}");
    assert_eq!(err["existing"], first["id"], "{err}");
    let r = h
        .call(
            Method::POST,
            "/v1/runs",
            Some(json!({"task": "send-email", "priority": 11})),
        )
        .await;
    let err = r.error(StatusCode::BAD_REQUEST, "invalid_input");
    assert_eq!(err["field"], "priority", "{err}");
    assert!(err["reason"].as_str().unwrap().contains("11"), "{err}");
    // The whole body decodes into core's type, and back into the error it was written from.
    let body: owlclaw_core::wire::ErrorBody = serde_json::from_str(&r.text).unwrap();
    assert!(
        matches!(body.error.into_error(), owlclaw_core::Error::InvalidInput { field, .. } if field == "priority"),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn retry_of_a_queued_run_is_invalid_transition() {
    let h = harness().await;
    h.register_worker(&["send-email"]).await;
    let run = id_of(&h.schedule(json!({"task": "send-email"})).await);
    let r = h
        .call(Method::POST, &format!("/v1/runs/{run}/retry"), None)
        .await;
    let err = r.error(StatusCode::CONFLICT, "invalid_transition");
    assert_eq!(err["status"], "queued", "{err}");
    assert_eq!(err["run_id"], run.as_str(), "{err}");
    assert_eq!(err["detail"], "retry", "{err}");
    // Retry of a cancelled run is allowed: it is queued again.
    h.call(Method::POST, &format!("/v1/runs/{run}/cancel"), None)
        .await;
    let r = h
        .call(Method::POST, &format!("/v1/runs/{run}/retry"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["status"], "queued");
    assert_eq!(r.json()["id"], run.as_str());
}

#[tokio::test]
async fn idempotency_key_reused_with_another_input_conflicts() {
    let h = harness().await;
    h.register_worker(&["send-email"]).await;
    let body = json!({"task": "send-email", "input": {"to": "a"}, "idempotency_key": "order-1"});
    let first = h.schedule(body).await;
    assert_eq!(first["idempotency_key"], "order-1");
    let r = h
        .call(
            Method::POST,
            "/v1/runs",
            Some(json!({"task": "send-email", "input": {"to": "b"}, "idempotency_key": "order-1"})),
        )
        .await;
    let err = r.error(StatusCode::CONFLICT, "idempotency_conflict");
    assert_eq!(err["run_id"], first["id"], "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("order-1"),
        "{err}"
    );
    assert_eq!(h.list_ids("").await, vec![id_of(&first)]);
    assert_eq!(h.get_run(&id_of(&first)).await["input"], json!({"to": "a"}));
}

#[tokio::test]
async fn idempotency_key_reused_with_the_same_input_returns_the_same_run() {
    let h = harness().await;
    h.register_worker(&["send-email"]).await;
    let body = json!({"task": "send-email", "input": {"to": "a"}, "idempotency_key": "order-2"});
    let r1 = h.call(Method::POST, "/v1/runs", Some(body.clone())).await;
    assert_eq!(r1.status, StatusCode::CREATED, "{}", r1.text);
    let r2 = h.call(Method::POST, "/v1/runs", Some(body)).await;
    assert_eq!(r2.status, StatusCode::OK, "{}", r2.text);
    assert_eq!(r1.json()["id"], r2.json()["id"]);
    assert_eq!(r1.json()["created_at"], r2.json()["created_at"]);
    assert_eq!(h.list_ids("").await.len(), 1);
}

#[tokio::test]
async fn bulk_with_one_bad_item_names_the_item_and_stores_nothing() {
    let h = harness().await;
    h.register_worker(&["send-email"]).await;
    let r = h
        .call(
            Method::POST,
            "/v1/runs/bulk",
            Some(json!({"runs": [
                {"task": "send-email", "input": 1},
                {"task": "send-email", "input": 2, "priority": 0},
                {"task": "send-email", "input": 3}
            ]})),
        )
        .await;
    let err = r.error(StatusCode::BAD_REQUEST, "invalid_input");
    assert_eq!(err["field"], "runs[1].priority", "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("runs[1].priority"),
        "{err}"
    );
    h.assert_nothing_stored().await;
}

#[tokio::test]
async fn bulk_with_a_bad_first_item_names_runs_0() {
    let h = harness().await;
    h.register_worker(&["send-email"]).await;
    let r = h
        .call(
            Method::POST,
            "/v1/runs/bulk",
            Some(json!({"runs": [
                {"task": "send-email", "input": 1, "priority": 11},
                {"task": "send-email", "input": 2}
            ]})),
        )
        .await;
    let err = r.error(StatusCode::BAD_REQUEST, "invalid_input");
    h.assert_nothing_stored().await;
    assert_eq!(err["field"], "runs[0].priority", "{err}");
}

#[tokio::test]
async fn bulk_with_an_unknown_task_stores_nothing() {
    let h = harness().await;
    h.register_worker(&["send-email"]).await;
    let r = h
        .call(
            Method::POST,
            "/v1/runs/bulk",
            Some(json!({"runs": [{"task": "send-email"}, {"task": "nope"}]})),
        )
        .await;
    let err = r.error(StatusCode::NOT_FOUND, "not_found");
    assert!(err["message"].as_str().unwrap().contains("nope"), "{err}");
    h.assert_nothing_stored().await;
}

#[tokio::test]
async fn exchange_for_an_unknown_worker_is_not_found() {
    let h = harness().await;
    let r = h
        .call(
            Method::POST,
            "/v1/workers/ghost-123/exchange",
            Some(json!({"want": 1})),
        )
        .await;
    let err = r.error(StatusCode::NOT_FOUND, "not_found");
    assert!(!r.is_fallback());
    assert!(
        err["message"].as_str().unwrap().contains("ghost-123"),
        "{err}"
    );
    let r = h.call(Method::DELETE, "/v1/workers/ghost-123", None).await;
    r.error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn invalid_worker_registration_is_invalid_input() {
    let h = harness().await;
    let r = h
        .call(
            Method::POST,
            "/v1/workers",
            Some(json!({"name": "w", "slots": 0, "tasks": [task_def("t")]})),
        )
        .await;
    let err = r.error(StatusCode::BAD_REQUEST, "invalid_input");
    assert_eq!(err["field"], "slots", "{err}");
    let mut bad = task_def("t");
    bad["priority"] = json!(11);
    let r = h
        .call(
            Method::POST,
            "/v1/workers",
            Some(json!({"name": "w", "slots": 1, "tasks": [bad]})),
        )
        .await;
    let err = r.error(StatusCode::BAD_REQUEST, "invalid_input");
    assert_eq!(err["field"], "priority", "{err}");
    assert_eq!(
        h.call(Method::GET, "/v1/workers", None).await.json(),
        json!([])
    );
}

#[tokio::test]
async fn delay_too_large_is_invalid_input_not_a_panic() {
    let h = harness().await;
    h.register_worker(&["send-email"]).await;
    // About 273,000 years: fits a `chrono::Duration` but not a date.
    let req = request(
        Method::POST,
        "/v1/runs",
        Some(&h.token),
        None,
        Some(&json!({"task": "send-email", "delay": "100000000d"})),
    );
    let r = tokio::spawn(send_to(h.app.clone(), req))
        .await
        .unwrap_or_else(|e| panic!("the handler panicked on a huge delay: {e}"));
    let err = r.error(StatusCode::BAD_REQUEST, "invalid_input");
    assert_eq!(err["field"], "delay", "{err}");
    h.assert_nothing_stored().await;
}

#[tokio::test]
async fn wrong_method_answers_405_in_the_error_shape() {
    let h = harness().await;
    for (method, uri) in [
        (Method::PUT, "/v1/runs"),
        (Method::DELETE, "/v1/runs/bulk"),
        (Method::PATCH, "/healthz"),
    ] {
        let r = h.call(method.clone(), uri, None).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        assert!(
            r.headers.contains_key(header::ALLOW),
            "{method} {uri}: {:?}",
            r.headers
        );
        r.error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    }
}

// =============================================================================================
// Runs

#[tokio::test]
async fn schedule_answers_201_with_the_snapshot() {
    let h = harness().await;
    h.register_worker(&["send-email"]).await;
    let r = h
        .call(
            Method::POST,
            "/v1/runs",
            Some(json!({
                "task": "send-email",
                "input": {"to": "a@b.c"},
                "priority": 7,
                "metadata": {"source": "test"}
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let run = r.json();
    for field in [
        "id",
        "task",
        "status",
        "attempt",
        "max_attempts",
        "priority",
        "input",
        "output",
        "error",
        "owner",
        "idempotency_key",
        "parent_id",
        "run_at",
        "created_at",
        "started_at",
        "finished_at",
        "steps",
    ] {
        assert!(run.get(field).is_some(), "snapshot lacks {field}: {run}");
    }
    assert!(id_of(&run).parse::<uuid::Uuid>().is_ok(), "{run}");
    assert_eq!(run["task"], "send-email");
    assert_eq!(run["status"], "queued");
    assert_eq!(run["attempt"], 0);
    assert_eq!(run["max_attempts"], 1);
    assert_eq!(run["priority"], 7);
    assert_eq!(run["input"], json!({"to": "a@b.c"}));
    assert_eq!(run["output"], Value::Null);
    assert_eq!(run["error"], Value::Null);
    assert_eq!(run["owner"], Value::Null);
    assert_eq!(run["idempotency_key"], Value::Null);
    assert_eq!(run["parent_id"], Value::Null);
    assert_eq!(run["started_at"], Value::Null);
    assert_eq!(run["finished_at"], Value::Null);
    assert_eq!(run["steps"], json!([]));
    assert_eq!(run["metadata"], json!({"source": "test"}));
    for t in ["run_at", "created_at"] {
        let s = run[t].as_str().unwrap();
        assert!(s.ends_with('Z'), "{t} is not RFC 3339 UTC: {s}");
        chrono::DateTime::parse_from_rfc3339(s).unwrap();
    }
    // The same snapshot is read back.
    assert_eq!(h.get_run(&id_of(&run)).await, run);
    // Defaults from the registered task: priority 5.
    let plain = h.schedule(json!({"task": "send-email"})).await;
    assert_eq!(plain["priority"], 5);
    assert_eq!(plain["input"], Value::Null);
}

#[tokio::test]
async fn schedule_with_a_delay_or_a_future_run_at_is_scheduled() {
    let h = harness().await;
    h.register_worker(&["send-email"]).await;
    let run = h
        .schedule(json!({"task": "send-email", "delay": "1h"}))
        .await;
    assert_eq!(run["status"], "scheduled");
    let at = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    assert_eq!(
        at(&run["run_at"]) - at(&run["created_at"]),
        chrono::Duration::hours(1),
        "{run}"
    );
    let run = h
        .schedule(json!({"task": "send-email", "run_at": "2099-01-01T00:00:00Z"}))
        .await;
    assert_eq!(run["status"], "scheduled");
    assert_eq!(at(&run["run_at"]), at(&json!("2099-01-01T00:00:00Z")));
    // A bare number is not a delay: its unit would be a guess (it used to be read as
    // milliseconds). Refused, naming the field; see
    // `a_number_where_a_duration_is_expected_is_refused_naming_the_field`.
    let r = h
        .call(
            Method::POST,
            "/v1/runs",
            Some(json!({"task": "send-email", "delay": 3_600_000})),
        )
        .await;
    assert_eq!(
        r.error(StatusCode::BAD_REQUEST, "invalid_input")["field"],
        "delay"
    );
    assert_eq!(h.list_ids("").await.len(), 2);
}

#[tokio::test]
async fn bulk_schedules_every_run_in_order() {
    let h = harness().await;
    h.register_worker(&["send-email", "resize"]).await;
    let r = h
        .call(
            Method::POST,
            "/v1/runs/bulk",
            Some(json!({"runs": [
                {"task": "send-email", "input": 0},
                {"task": "resize", "input": 1, "delay": "1h"},
                {"task": "send-email", "input": 2, "priority": 9}
            ]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let body = r.json();
    let runs = body["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    for (i, run) in runs.iter().enumerate() {
        assert_eq!(run["input"], i);
    }
    assert_eq!(runs[1]["task"], "resize");
    assert_eq!(runs[1]["status"], "scheduled");
    assert_eq!(runs[2]["priority"], 9);
    let listed: BTreeSet<String> = h.list_ids("").await.into_iter().collect();
    let answered: BTreeSet<String> = ids(&body["runs"]).into_iter().collect();
    assert_eq!(listed, answered);
    // An empty bulk is fine and stores nothing.
    let r = h
        .call(Method::POST, "/v1/runs/bulk", Some(json!({"runs": []})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json(), json!({"runs": []}));
}

#[tokio::test]
async fn list_filters_by_status_task_and_owner() {
    let h = harness().await;
    h.register_worker(&["send-email", "resize"]).await;
    let a = id_of(
        &h.schedule(json!({"task": "send-email", "owner": "alice"}))
            .await,
    );
    let b = id_of(&h.schedule(json!({"task": "resize", "owner": "bob"})).await);
    let c = id_of(
        &h.schedule(json!({"task": "send-email", "delay": "1h"}))
            .await,
    );
    h.call(Method::POST, &format!("/v1/runs/{b}/cancel"), None)
        .await;

    assert_eq!(h.list_ids("").await, vec![c.clone(), b.clone(), a.clone()]);
    assert_eq!(h.list_ids("status=queued").await, vec![a.clone()]);
    assert_eq!(h.list_ids("status=cancelled").await, vec![b.clone()]);
    assert_eq!(h.list_ids("status=scheduled").await, vec![c.clone()]);
    assert_eq!(h.list_ids("status=succeeded").await, Vec::<String>::new());
    assert_eq!(
        h.list_ids("task=send-email").await,
        vec![c.clone(), a.clone()]
    );
    assert_eq!(h.list_ids("task=resize").await, vec![b.clone()]);
    assert_eq!(h.list_ids("owner=alice").await, vec![a.clone()]);
    assert_eq!(h.list_ids("owner=bob").await, vec![b.clone()]);
    assert_eq!(h.list_ids("owner=carol").await, Vec::<String>::new());
    assert_eq!(
        h.list_ids("task=send-email&status=scheduled").await,
        vec![c]
    );
    assert_eq!(
        h.list_ids("task=send-email&owner=bob").await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn list_pages_newest_first_with_limit_and_cursor() {
    let h = harness().await;
    h.register_worker(&["send-email"]).await;
    let mut scheduled = Vec::new();
    for i in 0..5 {
        scheduled.push(id_of(
            &h.schedule(json!({"task": "send-email", "input": i})).await,
        ));
    }
    let newest_first: Vec<String> = scheduled.iter().rev().cloned().collect();

    let page = h.list("limit=2").await;
    assert_eq!(ids(&page["runs"]), newest_first[0..2]);
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let page = h.list(&format!("limit=2&cursor={cursor}")).await;
    assert_eq!(ids(&page["runs"]), newest_first[2..4]);
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let page = h.list(&format!("limit=2&cursor={cursor}")).await;
    assert_eq!(ids(&page["runs"]), newest_first[4..5]);
    assert_eq!(page["next_cursor"], Value::Null);

    let page = h.list("limit=5").await;
    assert_eq!(ids(&page["runs"]), newest_first);
    assert_eq!(page["next_cursor"], Value::Null);
    let page = h.list("").await;
    assert_eq!(ids(&page["runs"]), newest_first);
    assert_eq!(page["next_cursor"], Value::Null);
}

#[tokio::test]
async fn events_record_every_transition_oldest_first() {
    let h = harness().await;
    h.register_worker(&["send-email"]).await;
    let run = id_of(&h.schedule(json!({"task": "send-email"})).await);
    let r = h
        .call(Method::GET, &format!("/v1/runs/{run}/events"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let events = r.json();
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    for field in ["run_id", "at", "from", "to", "attempt", "worker", "reason"] {
        assert!(e.get(field).is_some(), "event lacks {field}: {e}");
    }
    assert_eq!(e["run_id"], run.as_str());
    assert_eq!(e["from"], Value::Null);
    assert_eq!(e["to"], "queued");
    assert!(e["at"].as_str().unwrap().ends_with('Z'), "{e}");

    h.call(Method::POST, &format!("/v1/runs/{run}/cancel"), None)
        .await;
    let events = h
        .call(Method::GET, &format!("/v1/runs/{run}/events"), None)
        .await
        .json();
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[1]["from"], "queued");
    assert_eq!(events[1]["to"], "cancelled");
}

#[tokio::test]
async fn result_of_a_queued_run_returns_its_snapshot_after_the_timeout() {
    let h = harness().await;
    h.register_worker(&["send-email"]).await;
    let run = h.schedule(json!({"task": "send-email"})).await;
    let id = id_of(&run);
    let r = h
        .call(
            Method::GET,
            &format!("/v1/runs/{id}/result?timeout=200ms"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let snap = r.json();
    assert_eq!(snap["id"], id.as_str());
    assert_eq!(snap["status"], "queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_of_a_run_completed_by_a_worker_is_the_succeeded_snapshot() {
    let h = harness().await;
    let worker = h.register_worker(&["send-email"]).await;
    let id = id_of(
        &h.schedule(json!({"task": "send-email", "input": {"to": "x"}}))
            .await,
    );

    // A long poll started before the run finishes ...
    let waiting = tokio::spawn(send_to(
        h.app.clone(),
        request(
            Method::GET,
            &format!("/v1/runs/{id}/result?timeout=30s"),
            Some(&h.token),
            None,
            None,
        ),
    ));
    let got = h.exchange(&worker, json!({"want": 1, "wait_ms": 0})).await;
    assert_eq!(got["assignments"][0]["run_id"], id.as_str(), "{got}");
    h.exchange(
        &worker,
        json!({"completions": [{"run_id": id, "attempt": 1, "outcome": "succeeded", "output": "sent"}]}),
    )
    .await;
    // ... answers the succeeded snapshot.
    let r = tokio::time::timeout(std::time::Duration::from_secs(20), waiting)
        .await
        .expect("the long poll ends when the run finishes")
        .unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let snap = r.json();
    assert_eq!(snap["status"], "succeeded", "{snap}");
    assert_eq!(snap["output"], "sent");
    // And a poll after the fact answers at once.
    let r = h
        .call(
            Method::GET,
            &format!("/v1/runs/{id}/result?timeout=30s"),
            None,
        )
        .await;
    assert_eq!(r.json()["status"], "succeeded");
    assert!(r.json()["finished_at"].is_string());
}

#[tokio::test]
async fn owner_header_sets_the_owner_and_other_users_are_forbidden() {
    let h = harness().await;
    h.register_worker(&["send-email"]).await;
    let r = h
        .call_as(
            Some(&h.token),
            Some("alice"),
            Method::POST,
            "/v1/runs",
            Some(json!({"task": "send-email"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let run = r.json();
    assert_eq!(run["owner"], "alice");
    let id = id_of(&run);

    for (method, uri) in [
        (Method::GET, format!("/v1/runs/{id}")),
        (Method::GET, format!("/v1/runs/{id}/events")),
        (Method::GET, format!("/v1/runs/{id}/result?timeout=10ms")),
        (Method::POST, format!("/v1/runs/{id}/cancel")),
        (Method::POST, format!("/v1/runs/{id}/retry")),
    ] {
        let r = h
            .call_as(Some(&h.token), Some("bob"), method.clone(), &uri, None)
            .await;
        r.error(StatusCode::FORBIDDEN, "forbidden");
    }
    // Bob's cancel did nothing; alice (and a caller naming no user) can read it.
    let r = h
        .call_as(
            Some(&h.token),
            Some("alice"),
            Method::GET,
            &format!("/v1/runs/{id}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "queued");
    assert_eq!(h.get_run(&id).await["owner"], "alice");
    assert_eq!(h.list_ids("owner=alice").await, vec![id.clone()]);
    // Acting as alice, a body naming another owner is refused (it used to win over the header,
    // which let any user create runs in another's name), and nothing is stored.
    let r = h
        .call_as(
            Some(&h.token),
            Some("alice"),
            Method::POST,
            "/v1/runs",
            Some(json!({"task": "send-email", "owner": "carol"})),
        )
        .await;
    r.error(StatusCode::FORBIDDEN, "forbidden");
    assert!(h.list_ids("owner=carol").await.is_empty());
    // Naming oneself is fine.
    let r = h
        .call_as(
            Some(&h.token),
            Some("alice"),
            Method::POST,
            "/v1/runs",
            Some(json!({"task": "send-email", "owner": "alice"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json()["owner"], "alice");
    // Bulk takes the header too.
    let r = h
        .call_as(
            Some(&h.token),
            Some("dave"),
            Method::POST,
            "/v1/runs/bulk",
            Some(json!({"runs": [{"task": "send-email"}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json()["runs"][0]["owner"], "dave");
}

// =============================================================================================
// Worker protocol

#[tokio::test]
async fn worker_claims_runs_and_completes_them() {
    let h = harness().await;
    let worker = h.register_worker(&["send-email"]).await;
    let a = id_of(
        &h.schedule(json!({"task": "send-email", "input": {"n": 1}}))
            .await,
    );
    let b = id_of(
        &h.schedule(json!({"task": "send-email", "input": {"n": 2}}))
            .await,
    );
    let c = id_of(
        &h.schedule(json!({"task": "send-email", "input": {"n": 3}}))
            .await,
    );

    let got = h.exchange(&worker, json!({"want": 2, "wait_ms": 0})).await;
    let assignments = got["assignments"].as_array().unwrap();
    assert_eq!(assignments.len(), 2, "{got}");
    assert_eq!(got["cancellations"], json!([]));
    // FIFO within one priority.
    let claimed: Vec<&str> = assignments
        .iter()
        .map(|x| x["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(claimed, [a.as_str(), b.as_str()]);
    let first = &assignments[0];
    assert_eq!(first["task"], "send-email");
    assert_eq!(first["input"], json!({"n": 1}));
    assert_eq!(first["attempt"], 1);
    assert_eq!(first["max_attempts"], 1);
    assert_eq!(first["timeout_ms"], 30_000);
    for id in [&a, &b] {
        let snap = h.get_run(id).await;
        assert_eq!(snap["status"], "running");
        assert_eq!(snap["attempt"], 1);
        assert!(snap["started_at"].is_string());
    }
    assert_eq!(h.get_run(&c).await["status"], "queued");

    let got = h
        .exchange(
            &worker,
            json!({"completions": [
                {"run_id": a, "attempt": 1, "outcome": "succeeded", "output": {"sent": true}},
                {"run_id": b, "attempt": 1, "outcome": "failed", "error": "smtp down", "retryable": true}
            ]}),
        )
        .await;
    assert_eq!(got["assignments"], json!([]));
    let snap = h.get_run(&a).await;
    assert_eq!(snap["status"], "succeeded", "{snap}");
    assert_eq!(snap["output"], json!({"sent": true}));
    assert!(snap["finished_at"].is_string());
    // No retries left: failed with the error.
    let snap = h.get_run(&b).await;
    assert_eq!(snap["status"], "failed", "{snap}");
    assert!(
        snap["error"].as_str().unwrap().contains("smtp down"),
        "{snap}"
    );
    let r = h
        .call(Method::POST, &format!("/v1/runs/{a}/cancel"), None)
        .await;
    let err = r.error(StatusCode::CONFLICT, "invalid_transition");
    assert_eq!(err["status"], "succeeded");
    assert_eq!(h.list_ids("status=succeeded").await, vec![a.clone()]);

    // The last one is claimed next.
    let got = h.exchange(&worker, json!({"want": 2, "wait_ms": 0})).await;
    let assignments = got["assignments"].as_array().unwrap();
    assert_eq!(assignments.len(), 1, "{got}");
    assert_eq!(assignments[0]["run_id"], c.as_str());
}

#[tokio::test]
async fn heartbeat_returns_cancellations_for_runs_cancelled_meanwhile() {
    let h = harness().await;
    let worker = h.register_worker(&["send-email"]).await;
    let a = id_of(&h.schedule(json!({"task": "send-email"})).await);
    let b = id_of(&h.schedule(json!({"task": "send-email"})).await);
    let got = h.exchange(&worker, json!({"want": 2, "wait_ms": 0})).await;
    assert_eq!(got["assignments"].as_array().unwrap().len(), 2, "{got}");

    let r = h
        .call(Method::POST, &format!("/v1/runs/{b}/cancel"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["status"], "cancelled");

    let got = h
        .exchange(&worker, json!({"heartbeat": true, "held": [a, b]}))
        .await;
    assert_eq!(got["cancellations"], json!([b]), "{got}");
    assert_eq!(got["assignments"], json!([]));
    assert_eq!(h.get_run(&a).await["status"], "running");
    assert_eq!(h.get_run(&b).await["status"], "cancelled");
    // The worker reports the stopped run: it stays cancelled.
    h.exchange(
        &worker,
        json!({"completions": [{"run_id": b, "attempt": 1, "outcome": "cancelled"}], "held": [a]}),
    )
    .await;
    assert_eq!(h.get_run(&b).await["status"], "cancelled");
}

#[tokio::test]
async fn listed_workers_show_the_runs_they_hold() {
    let h = harness().await;
    let worker = h.register_worker(&["send-email", "resize"]).await;
    let a = id_of(&h.schedule(json!({"task": "send-email"})).await);
    let b = id_of(&h.schedule(json!({"task": "resize"})).await);
    let r = h.call(Method::GET, "/v1/workers", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let listed = r.json();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let w = &listed[0];
    assert_eq!(w["id"], worker.as_str());
    assert_eq!(w["name"], "mailer");
    assert_eq!(w["slots"], 4);
    assert_eq!(w["tasks"], json!(["send-email", "resize"]));
    assert_eq!(w["held_runs"], json!([]));
    assert!(
        w["started_at"].is_string() && w["last_heartbeat"].is_string(),
        "{w}"
    );

    h.exchange(&worker, json!({"want": 2, "wait_ms": 0})).await;
    let listed = h.call(Method::GET, "/v1/workers", None).await.json();
    let held: BTreeSet<String> = listed[0]["held_runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(held, BTreeSet::from([a, b]));
}

#[tokio::test]
async fn deregistering_a_worker_hands_its_runs_back() {
    let h = harness().await;
    let worker = h.register_worker(&["send-email"]).await;
    let a = id_of(&h.schedule(json!({"task": "send-email"})).await);
    let got = h.exchange(&worker, json!({"want": 1, "wait_ms": 0})).await;
    assert_eq!(got["assignments"][0]["run_id"], a.as_str());
    assert_eq!(h.get_run(&a).await["status"], "running");

    let r = h
        .call(Method::DELETE, &format!("/v1/workers/{worker}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert_eq!(h.get_run(&a).await["status"], "queued");
    assert_eq!(
        h.call(Method::GET, "/v1/workers", None).await.json(),
        json!([])
    );
    // The deregistered worker is gone ...
    let r = h
        .call(
            Method::POST,
            &format!("/v1/workers/{worker}/exchange"),
            Some(json!({"heartbeat": true})),
        )
        .await;
    r.error(StatusCode::NOT_FOUND, "not_found");
    let r = h
        .call(Method::DELETE, &format!("/v1/workers/{worker}"), None)
        .await;
    r.error(StatusCode::NOT_FOUND, "not_found");
    // ... and another one picks the run up at once.
    let other = h.register_worker(&["send-email"]).await;
    let got = h.exchange(&other, json!({"want": 1, "wait_ms": 0})).await;
    assert_eq!(got["assignments"][0]["run_id"], a.as_str(), "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_long_polls_until_work_arrives() {
    let h = harness().await;
    let worker = h.register_worker(&["send-email"]).await;
    let poll = tokio::spawn(send_to(
        h.app.clone(),
        request(
            Method::POST,
            &format!("/v1/workers/{worker}/exchange"),
            Some(&h.token),
            None,
            Some(&json!({"want": 1, "wait_ms": 20_000})),
        ),
    ));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let id = id_of(&h.schedule(json!({"task": "send-email"})).await);
    let r = tokio::time::timeout(std::time::Duration::from_secs(15), poll)
        .await
        .expect("the long poll ends when work arrives")
        .unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["assignments"][0]["run_id"], id.as_str());
}

// =============================================================================================
// Health and metrics

#[tokio::test]
async fn metrics_are_prometheus_text_with_queue_depth_and_scheduled_total() {
    let h = harness().await;
    h.register_worker(&["send-email"]).await;
    h.schedule(json!({"task": "send-email"})).await;
    h.schedule(json!({"task": "send-email"})).await;
    let r = h.call_as(None, None, Method::GET, "/metrics", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
        "{:?}",
        r.headers
    );
    assert!(
        r.text.contains("# TYPE owlclaw_queue_depth gauge"),
        "{}",
        r.text
    );
    assert!(
        r.text.lines().any(|l| l.starts_with("owlclaw_queue_depth{")
            && l.contains("task=\"send-email\"")
            && l.ends_with(" 2")),
        "{}",
        r.text
    );
    assert!(
        r.text
            .contains("# TYPE owlclaw_runs_scheduled_total counter"),
        "{}",
        r.text
    );
    assert!(
        r.text
            .lines()
            .any(|l| l == "owlclaw_runs_scheduled_total 2"),
        "{}",
        r.text
    );
}

/// The value of the sample `name` (the whole name with its labels) in a metrics text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map(|v| v.trim().parse().expect("a sample value"))
}

#[tokio::test]
async fn metrics_have_per_task_queue_wait_and_run_duration_histograms_and_outcome_counters() {
    let h = harness().await;
    let worker = h.register_worker(&["send-email"]).await;
    let id = id_of(&h.schedule(json!({"task": "send-email"})).await);
    let got = h.exchange(&worker, json!({"want": 1, "wait_ms": 0})).await;
    assert_eq!(got["assignments"][0]["run_id"], id.as_str(), "{got}");
    h.exchange(
        &worker,
        json!({"completions": [{"run_id": id, "attempt": 1, "outcome": "failed", "error": "smtp down", "retryable": false}]}),
    )
    .await;
    let labels = r#"{tenant="acme",task="send-email"}"#;
    // The queue wait is read from the store after the claim: wait for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let text = loop {
        let r = h.call_as(None, None, Method::GET, "/metrics", None).await;
        assert_eq!(r.status, StatusCode::OK);
        let name = format!("owlclaw_queue_wait_seconds_count{labels}");
        if sample(&r.text, &name) == Some(1.0) || std::time::Instant::now() > deadline {
            break r.text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    for (name, value) in [
        (format!("owlclaw_queue_wait_seconds_count{labels}"), 1.0),
        (format!("owlclaw_run_duration_seconds_count{labels}"), 1.0),
        (
            r#"owlclaw_attempt_outcomes_total{tenant="acme",task="send-email",outcome="failed"}"#
                .to_string(),
            1.0,
        ),
        ("owlclaw_runs_claimed_total".to_string(), 1.0),
        ("owlclaw_attempts_failed_total".to_string(), 1.0),
        ("owlclaw_runs_succeeded_total".to_string(), 0.0),
        ("owlclaw_lease_expiries_total".to_string(), 0.0),
        ("owlclaw_cron_ticks_total".to_string(), 0.0),
        ("owlclaw_runs_handed_back_total".to_string(), 0.0),
        ("owlclaw_attempts_timed_out_total".to_string(), 0.0),
    ] {
        assert_eq!(sample(&text, &name), Some(value), "{name} in:\n{text}");
    }
    for kind in [
        "# TYPE owlclaw_queue_wait_seconds histogram",
        "# TYPE owlclaw_run_duration_seconds histogram",
        "# TYPE owlclaw_attempt_outcomes_total counter",
        "# TYPE owlclaw_lease_expiries_total counter",
    ] {
        assert!(text.contains(kind), "{kind} in:\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("owlclaw_queue_wait_seconds_bucket{")
                && l.contains(r#"task="send-email""#)
                && l.contains(r#"le="+Inf""#)),
        "{text}"
    );
}

#[tokio::test]
async fn readyz_answers_ok_when_the_database_answers() {
    let h = harness().await;
    let r = h.call_as(None, None, Method::GET, "/readyz", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json(), json!({"status": "ok"}));
}

// =============================================================================================
// Hardening: ownership through every path, strict input, opaque internal errors

#[tokio::test]
async fn acting_as_a_user_lists_only_that_users_runs() {
    let h = harness().await;
    h.register_worker(&["send-email"]).await;
    let mut by_user = Vec::new();
    for user in ["alice", "bob"] {
        let r = h
            .call_as(
                Some(&h.token),
                Some(user),
                Method::POST,
                "/v1/runs",
                Some(json!({"task": "send-email", "input": {"secret": user}})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        by_user.push(id_of(&r.json()));
    }
    // Bob naming alice as the owner filter is refused; bob's own listing holds only his run.
    let r = h
        .call_as(
            Some(&h.token),
            Some("bob"),
            Method::GET,
            "/v1/runs?owner=alice",
            None,
        )
        .await;
    let err = r.error(StatusCode::FORBIDDEN, "forbidden");
    assert!(!r.text.contains("\"secret\""), "{err}");
    for query in ["", "?owner=bob", "?status=queued", "?task=send-email"] {
        let r = h
            .call_as(
                Some(&h.token),
                Some("bob"),
                Method::GET,
                &format!("/v1/runs{query}"),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(ids(&r.json()["runs"]), vec![by_user[1].clone()], "{query}");
    }
    // A caller naming no user sees the tenant's runs.
    assert_eq!(h.list_ids("").await.len(), 2);
    // Bulk: one item naming another owner refuses the whole request, naming the item.
    let r = h
        .call_as(
            Some(&h.token),
            Some("bob"),
            Method::POST,
            "/v1/runs/bulk",
            Some(
                json!({"runs": [{"task": "send-email"}, {"task": "send-email", "owner": "alice"}]}),
            ),
        )
        .await;
    let err = r.error(StatusCode::FORBIDDEN, "forbidden");
    assert!(
        err["message"].as_str().unwrap().contains("runs[1]"),
        "{err}"
    );
    assert_eq!(
        h.list_ids("").await.len(),
        2,
        "the refused bulk stored nothing"
    );
}

#[tokio::test]
async fn acting_as_a_user_crons_can_be_listed_but_not_changed() {
    let h = harness().await;
    h.register_worker(&["report"]).await;
    let r = h
        .call_as(
            Some(&h.token),
            Some("bob"),
            Method::POST,
            "/v1/crons",
            Some(json!({"task": "report", "expr": "0 * * * *"})),
        )
        .await;
    r.error(StatusCode::FORBIDDEN, "forbidden");
    let r = h
        .call_as(Some(&h.token), Some("bob"), Method::GET, "/v1/crons", None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!([]), "the refused cron was not stored");
    let r = h
        .call(
            Method::POST,
            "/v1/crons",
            Some(json!({"task": "report", "expr": "0 * * * *"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.json()["id"].as_str().unwrap().to_string();
    let r = h
        .call_as(
            Some(&h.token),
            Some("bob"),
            Method::DELETE,
            &format!("/v1/crons/{id}"),
            None,
        )
        .await;
    r.error(StatusCode::FORBIDDEN, "forbidden");
    let r = h.call(Method::GET, "/v1/crons", None).await;
    assert_eq!(r.json().as_array().unwrap().len(), 1, "still there");
}

#[tokio::test]
async fn parent_must_be_a_run_of_the_same_tenant_and_owner() {
    let h = harness().await;
    h.register_worker(&["send-email"]).await;
    let other = h.engine.create_token("globex").await.unwrap();
    h.register_worker_as(&other, "g", &["send-email"]).await;
    let r = h
        .call_as(
            Some(&other),
            None,
            Method::POST,
            "/v1/runs",
            Some(json!({"task": "send-email"})),
        )
        .await;
    let foreign = id_of(&r.json());
    for parent in [foreign.as_str(), NO_SUCH_RUN] {
        let r = h
            .call(
                Method::POST,
                "/v1/runs",
                Some(json!({"task": "send-email", "parent_id": parent})),
            )
            .await;
        let err = r.error(StatusCode::BAD_REQUEST, "invalid_input");
        assert_eq!(err["field"], "parent_id", "{err}");
    }
    h.assert_nothing_stored().await;
    // A parent of another user is forbidden to a caller acting as a user; its own works.
    let alices = h
        .call_as(
            Some(&h.token),
            Some("alice"),
            Method::POST,
            "/v1/runs",
            Some(json!({"task": "send-email"})),
        )
        .await
        .json();
    let r = h
        .call_as(
            Some(&h.token),
            Some("bob"),
            Method::POST,
            "/v1/runs",
            Some(json!({"task": "send-email", "parent_id": id_of(&alices)})),
        )
        .await;
    r.error(StatusCode::FORBIDDEN, "forbidden");
    let r = h
        .call_as(
            Some(&h.token),
            Some("alice"),
            Method::POST,
            "/v1/runs",
            Some(json!({"task": "send-email", "parent_id": id_of(&alices)})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json()["parent_id"], alices["id"]);
}

#[tokio::test]
async fn a_number_where_a_duration_is_expected_is_refused_naming_the_field() {
    let h = harness().await;
    h.register_worker(&["send-email"]).await;
    for (body, field) in [
        (json!({"task": "send-email", "delay": 10}), "delay"),
        (json!({"task": "send-email", "timeout": 30}), "timeout"),
        (json!({"task": "send-email", "delay": 1.5}), "delay"),
    ] {
        let r = h.call(Method::POST, "/v1/runs", Some(body)).await;
        let err = r.error(StatusCode::BAD_REQUEST, "invalid_input");
        assert_eq!(err["field"], field, "{err}");
        assert!(
            err["message"].as_str().unwrap().contains("unit"),
            "says why: {err}"
        );
    }
    h.assert_nothing_stored().await;
}

#[tokio::test]
async fn list_limits_and_cursors_out_of_range_are_refused() {
    let h = harness().await;
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("cursor=0", "cursor"),
        ("cursor=-4", "cursor"),
        ("cursor=abc", "cursor"),
    ] {
        let r = h
            .call(Method::GET, &format!("/v1/runs?{query}"), None)
            .await;
        let err = r.error(StatusCode::BAD_REQUEST, "invalid_input");
        assert_eq!(err["field"], field, "{query}: {err}");
    }
    assert_eq!(h.list("limit=1000").await["runs"], json!([]));
}

#[tokio::test]
async fn integers_written_as_floats_are_read_when_whole_and_refused_otherwise() {
    let h = harness().await;
    h.register_worker(&["send-email"]).await;
    let run = h
        .schedule(json!({"task": "send-email", "priority": 7.0, "retries": 2.0}))
        .await;
    assert_eq!(run["priority"], 7);
    assert_eq!(run["max_attempts"], 3);
    for (body, field) in [
        (json!({"task": "send-email", "priority": 7.5}), "priority"),
        (json!({"task": "send-email", "retries": 0.5}), "retries"),
    ] {
        let r = h.call(Method::POST, "/v1/runs", Some(body)).await;
        let err = r.error(StatusCode::BAD_REQUEST, "invalid_input");
        assert_eq!(err["field"], field, "{err}");
    }
    assert_eq!(h.list_ids("").await.len(), 1);
    // The document says integers are integers, and how floats are read.
    let doc = openapi_doc(&h).await;
    let description = doc["info"]["description"].as_str().unwrap();
    assert!(
        description.contains("5.0") && description.contains("5.5"),
        "{description}"
    );
}

#[tokio::test]
async fn worker_names_and_slots_out_of_range_are_refused() {
    let h = harness().await;
    for (body, field) in [
        (
            json!({"name": "", "slots": 1, "tasks": [task_def("t")]}),
            "name",
        ),
        (
            json!({"name": "a b", "slots": 1, "tasks": [task_def("t")]}),
            "name",
        ),
        (
            json!({"name": "w", "slots": 10001, "tasks": [task_def("t")]}),
            "slots",
        ),
        (
            json!({"name": "w", "slots": 0, "tasks": [task_def("t")]}),
            "slots",
        ),
    ] {
        let r = h.call(Method::POST, "/v1/workers", Some(body)).await;
        let err = r.error(StatusCode::BAD_REQUEST, "invalid_input");
        assert_eq!(err["field"], field, "{err}");
    }
    let r = h.call(Method::GET, "/v1/workers", None).await;
    assert_eq!(r.json(), json!([]), "no worker was registered");
}

#[tokio::test]
async fn crons_of_unregistered_tasks_or_that_never_fire_are_refused() {
    let h = harness().await;
    let r = h
        .call(
            Method::POST,
            "/v1/crons",
            Some(json!({"task": "nobody-serves-this", "expr": "* * * * *"})),
        )
        .await;
    let err = r.error(StatusCode::NOT_FOUND, "not_found");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("nobody-serves-this"),
        "{err}"
    );
    h.register_worker(&["report"]).await;
    let r = h
        .call(
            Method::POST,
            "/v1/crons",
            Some(json!({"task": "report", "expr": "0 0 30 2 *"})),
        )
        .await;
    let err = r.error(StatusCode::BAD_REQUEST, "invalid_input");
    assert_eq!(err["field"], "expr", "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("never fires"),
        "{err}"
    );
    let r = h.call(Method::GET, "/v1/crons", None).await;
    assert_eq!(r.json(), json!([]), "nothing stored");
}

#[tokio::test]
async fn text_with_nul_is_refused_as_bad_input() {
    let h = harness().await;
    h.register_worker(&["send-email"]).await;
    for (query, field) in [("task=a%00b", "task"), ("owner=a%00b", "owner")] {
        let r = h
            .call(Method::GET, &format!("/v1/runs?{query}"), None)
            .await;
        let err = r.error(StatusCode::BAD_REQUEST, "invalid_input");
        assert_eq!(err["field"], field, "{err}");
    }
    for (body, field) in [
        (
            json!({"task": "send-email", "input": {"k": "a\u{0}b"}}),
            "input",
        ),
        (json!({"task": "send-email", "owner": "a\u{0}"}), "owner"),
        (
            json!({"task": "send-email", "idempotency_key": "k\u{0}"}),
            "idempotency_key",
        ),
        (
            json!({"task": "send-email", "metadata": {"\u{0}": 1}}),
            "metadata",
        ),
    ] {
        let r = h.call(Method::POST, "/v1/runs", Some(body)).await;
        let err = r.error(StatusCode::BAD_REQUEST, "invalid_input");
        assert_eq!(err["field"], field, "{err}");
    }
    h.assert_nothing_stored().await;
}

#[tokio::test]
async fn listed_workers_show_their_labels() {
    let h = harness().await;
    h.register_worker(&["send-email"]).await;
    let r = h.call(Method::GET, "/v1/workers", None).await;
    assert_eq!(r.json()[0]["labels"], json!({"zone": "test"}), "{}", r.text);
}

#[tokio::test]
async fn every_status_the_server_answers_is_documented_for_its_operation() {
    let h = harness().await;
    let doc = openapi_doc(&h).await;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let codes: BTreeSet<&str> = op["responses"]
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert!(codes.contains("405"), "{method} {path}: {codes:?}");
            if !path.starts_with("/v1/") || path == "/v1/openapi.json" {
                continue;
            }
            for code in ["400", "401", "500", "503"] {
                assert!(
                    codes.contains(code),
                    "{method} {path} lacks {code}: {codes:?}"
                );
            }
            if op.get("requestBody").is_some() {
                for code in ["408", "413", "415"] {
                    assert!(
                        codes.contains(code),
                        "{method} {path} lacks {code}: {codes:?}"
                    );
                }
            }
        }
    }
    // Request bodies that refuse unknown fields say so.
    for name in [
        "ScheduleRequest",
        "BulkRequest",
        "CronRequest",
        "WorkerRegistration",
        "ExchangeRequest",
        "StepCheckpoint",
        "TaskDef",
        "Backoff",
    ] {
        let schema = &doc["components"]["schemas"][name];
        assert_eq!(
            schema["additionalProperties"],
            json!(false),
            "{name}: {schema}"
        );
    }
}

/// A database that went away (dropped with its connections) makes the engine answer 503
/// `unavailable` with an incident id, and nothing of the database: no URL, host, port, user or
/// database name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_went_away_answers_503_unavailable_naming_nothing_of_it() {
    let Some(db) = owlclaw_engine::testing::PgDb::create().await else {
        return;
    };
    let url = db.url.clone();
    let name = url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string();
    let engine = Engine::start(EngineConfig {
        database_url: url.clone(),
        ..EngineConfig::default()
    })
    .await
    .unwrap();
    let token = engine.create_token("acme").await.unwrap();
    let app = router(engine.clone(), &ServerConfig::default());
    let ok = send_to(
        app.clone(),
        request(Method::GET, "/v1/runs", Some(&token), None, None),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    drop(db); // DROP DATABASE ... WITH (FORCE): connections closed, reconnecting fails
    let gone = send_to(
        app,
        request(Method::GET, "/v1/runs", Some(&token), None, None),
    )
    .await;
    let err = gone.error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    let message = err["message"].as_str().unwrap();
    assert!(message.contains("incident "), "{message}");
    for leak in [name.as_str(), "postgres", "127.0.0.1", "5432", "owlclaw_t_"] {
        assert!(!gone.text.contains(leak), "{leak:?} in {}", gone.text);
    }
    engine.shutdown().await;
}

/// A bulk action's body is a filter object: an array of its fields (which serde would read as
/// the struct) or an empty filter is refused and changes nothing.
#[tokio::test]
async fn bulk_actions_take_a_filter_object_and_refuse_an_array_or_an_empty_one() {
    let h = harness().await;
    h.register_worker(&["send-email"]).await;
    let run = id_of(&h.schedule(json!({"task": "send-email", "input": {}})).await);
    for body in [json!([null, null]), json!({})] {
        let r = h
            .call(Method::POST, "/v1/runs/cancel", Some(body.clone()))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
    }
    let r = h.call(Method::GET, &format!("/v1/runs/{run}"), None).await;
    assert_eq!(r.json()["status"], "queued", "nothing was cancelled");
    let r = h
        .call(
            Method::POST,
            "/v1/runs/cancel",
            Some(json!({"task": "send-email"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["changed"], 1);
    // A run that is not a workflow run has no tasks: 404.
    let r = h
        .call(Method::GET, &format!("/v1/runs/{run}/tasks"), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
}
