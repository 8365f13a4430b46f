//! The HTTP connection to an `owlclaw serve` engine server (server mode).

use crate::config::Secret;
use async_trait::async_trait;
use owlclaw_core::duration::format_duration;
use owlclaw_core::ratelimit::RateLimit;
use owlclaw_core::wire::*;
use owlclaw_core::{Error, Orchestrator, Result, RunId};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Header naming the acting user (ownership checks).
const USER_HEADER: &str = "owlclaw-user";
/// Time allowed to a request beyond the wait it asks the server for.
const SLACK: Duration = Duration::from_secs(30);

/// An [`Orchestrator`] over the engine server's HTTP API. With several server URLs (engine
/// replicas on one database), a request that can't connect goes to the next one, and later
/// requests stay there.
pub(crate) struct HttpOrchestrator {
    bases: Vec<String>,
    current: AtomicUsize,
    token: Option<Secret>,
    http: reqwest::Client,
}

impl fmt::Debug for HttpOrchestrator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpOrchestrator")
            .field("bases", &self.bases)
            .field("token", &self.token)
            .finish()
    }
}

#[derive(Serialize)]
struct BulkRequest {
    runs: Vec<ScheduleRequest>,
}

#[derive(Deserialize)]
struct BulkResponse {
    runs: Vec<RunSnapshot>,
}

impl HttpOrchestrator {
    /// A connection to `base_url` (e.g. `http://127.0.0.1:7070`), not checked yet.
    /// `ca_file`: a PEM file of CA certificates trusted beside the system's and the bundled web
    /// roots (`tls.ca_file`).
    pub(crate) fn new(
        base_url: &str,
        token: Option<Secret>,
        ca_file: Option<&std::path::Path>,
    ) -> Result<HttpOrchestrator> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("owlclaw-sdk/", env!("CARGO_PKG_VERSION")))
            .use_rustls_tls();
        if let Some(path) = ca_file {
            let bad = |m: String| Error::config("tls.ca_file", format!("{}: {m}", path.display()));
            let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?;
            if certs.is_empty() {
                return Err(bad("no PEM certificate in the file".into()));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| Error::Internal(format!("building the HTTP client: {e}")))?;
        let bases: Vec<String> = base_url
            .split(',')
            .map(|b| b.trim().trim_end_matches('/').to_string())
            .filter(|b| !b.is_empty())
            .collect();
        if bases.is_empty() {
            return Err(Error::config("server_url", "no server URL"));
        }
        Ok(HttpOrchestrator {
            bases,
            current: AtomicUsize::new(0),
            token,
            http,
        })
    }

    /// The server in use.
    fn base(&self) -> &str {
        &self.bases[self.current.load(Ordering::Relaxed) % self.bases.len()]
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        timeout: Duration,
        user: Option<&str>,
    ) -> RequestBuilder {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base()))
            .timeout(timeout);
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t.expose());
        }
        if let Some(u) = user {
            rb = rb.header(USER_HEADER, u);
        }
        rb
    }

    fn transport_error(&self, e: reqwest::Error) -> Error {
        if e.is_timeout() {
            return Error::Connection {
                url: self.base().to_string(),
                message: "the request timed out".into(),
            };
        }
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message = format!("{message}: {s}");
            source = s.source();
        }
        Error::Connection {
            url: self.base().to_string(),
            message,
        }
    }

    fn api_error(&self, status: StatusCode, body: &[u8]) -> Error {
        let Ok(ErrorBody { error: d }) = serde_json::from_slice::<ErrorBody>(body) else {
            let text = String::from_utf8_lossy(body);
            let text = text.chars().take(200).collect::<String>();
            return match status {
                StatusCode::BAD_GATEWAY
                | StatusCode::SERVICE_UNAVAILABLE
                | StatusCode::GATEWAY_TIMEOUT => Error::Connection {
                    url: self.base().to_string(),
                    message: format!("{status}: {text}"),
                },
                StatusCode::UNAUTHORIZED => Error::Unauthorized(format!("{status}: {text}")),
                _ => Error::Internal(format!(
                    "unexpected answer from {}: {status}: {text}",
                    self.base()
                )),
            };
        };
        // The body names the variant and its fields: no message text is read.
        match d.into_error() {
            Error::Connection { url, message } if url.is_empty() => Error::Connection {
                url: self.base().to_string(),
                message,
            },
            e => e,
        }
    }

    /// After a failure at server `from` that another server may not have (its connection was
    /// reset or closed, it timed out, or it answered `503`): later requests go to the next
    /// server. The failed request itself is not sent again here: only its caller knows whether
    /// it is safe to send twice.
    fn fail_over(&self, from: usize) {
        if self.bases.len() > 1
            && self
                .current
                .compare_exchange(from, from + 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(next = %self.base(), "engine server failing; the next requests go to another one");
        }
    }

    /// Sends the request built by `build`; when it can't connect and another server is
    /// configured, moves to the next server and sends it there (the request never reached the
    /// first one, so this can't duplicate it). Returns the answer and the server it came from.
    async fn dispatch(
        &self,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<(reqwest::Response, usize)> {
        let mut tries = 0;
        loop {
            let from = self.current.load(Ordering::Relaxed);
            match build().send().await {
                Ok(resp) => return Ok((resp, from)),
                Err(e) if e.is_connect() && tries + 1 < self.bases.len() => {
                    tries += 1;
                    let err = self.transport_error(e);
                    let _ = self.current.compare_exchange(
                        from,
                        from + 1,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                    tracing::warn!(error = %err, next = %self.base(), "engine server unreachable; failing over");
                }
                Err(e) => {
                    let err = self.transport_error(e);
                    self.fail_over(from);
                    return Err(err);
                }
            }
        }
    }

    /// The body of an answer from server `from`, or the error it stands for.
    async fn body(&self, resp: reqwest::Response, from: usize) -> Result<impl AsRef<[u8]>> {
        let status = resp.status();
        let body = match resp.bytes().await {
            Ok(body) => body,
            Err(e) => {
                let err = self.transport_error(e);
                self.fail_over(from);
                return Err(err);
            }
        };
        if !status.is_success() {
            let err = self.api_error(status, &body);
            if status == StatusCode::SERVICE_UNAVAILABLE {
                self.fail_over(from);
            }
            return Err(err);
        }
        Ok(body)
    }

    async fn send<T: DeserializeOwned>(&self, build: impl Fn() -> RequestBuilder) -> Result<T> {
        let (resp, from) = self.dispatch(build).await?;
        let body = self.body(resp, from).await?;
        let body: &[u8] = match body.as_ref() {
            b"" => b"null",
            b => b,
        };
        serde_json::from_slice(body)
            .map_err(|e| Error::Internal(format!("unexpected answer from {}: {e}", self.base())))
    }

    fn get(&self, path: &str, user: Option<&str>) -> RequestBuilder {
        self.request(Method::GET, path, SLACK, user)
    }

    fn post<B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
        user: Option<&str>,
    ) -> RequestBuilder {
        self.request(Method::POST, path, SLACK, user).json(body)
    }
}

#[async_trait]
impl Orchestrator for HttpOrchestrator {
    async fn schedule(&self, req: ScheduleRequest) -> Result<Scheduled> {
        let (resp, from) = self.dispatch(|| self.post("/v1/runs", &req, None)).await?;
        let created = resp.status() == StatusCode::CREATED;
        let body = self.body(resp, from).await?;
        let run = serde_json::from_slice(body.as_ref())
            .map_err(|e| Error::Internal(format!("unexpected answer from {}: {e}", self.base())))?;
        Ok(Scheduled { run, created })
    }

    async fn schedule_bulk(&self, reqs: Vec<ScheduleRequest>) -> Result<Vec<Scheduled>> {
        let body = BulkRequest { runs: reqs };
        let done: BulkResponse = self
            .send(|| self.post("/v1/runs/bulk", &body, None))
            .await?;
        Ok(done
            .runs
            .into_iter()
            .map(|run| Scheduled { run, created: true })
            .collect())
    }

    async fn get_run(&self, id: RunId, user: Option<&str>) -> Result<RunSnapshot> {
        self.send(|| self.get(&format!("/v1/runs/{id}"), user))
            .await
    }

    async fn list_runs(&self, filter: ListFilter) -> Result<RunPage> {
        let q = list_query(&filter);
        self.send(|| self.get("/v1/runs", None).query(&q)).await
    }

    async fn run_events(&self, id: RunId, user: Option<&str>) -> Result<Vec<RunEvent>> {
        self.send(|| self.get(&format!("/v1/runs/{id}/events"), user))
            .await
    }

    async fn cancel_run(&self, id: RunId, user: Option<&str>) -> Result<RunSnapshot> {
        self.send(|| self.request(Method::POST, &format!("/v1/runs/{id}/cancel"), SLACK, user))
            .await
    }

    async fn replay_run(
        &self,
        id: RunId,
        from_step: &str,
        user: Option<&str>,
    ) -> Result<RunSnapshot> {
        let body = owlclaw_core::wire::ReplayRequest {
            from_step: from_step.to_string(),
        };
        self.send(|| self.post(&format!("/v1/runs/{id}/replay"), &body, user))
            .await
    }

    async fn overview(&self) -> Result<owlclaw_core::wire::Overview> {
        self.send(|| self.get("/v1/overview", None)).await
    }

    async fn count_runs(
        &self,
        filter: ListFilter,
        max: Option<u64>,
    ) -> Result<owlclaw_core::wire::RunCount> {
        let mut q = list_query(&filter);
        if let Some(m) = max {
            q.push(("max", m.to_string()));
        }
        self.send(|| self.get("/v1/runs/count", None).query(&q))
            .await
    }

    async fn bulk_runs(
        &self,
        filter: ListFilter,
        retry: bool,
    ) -> Result<owlclaw_core::wire::BulkOutcome> {
        let path = if retry {
            "/v1/runs/retry"
        } else {
            "/v1/runs/cancel"
        };
        self.send(|| self.post(path, &filter, None)).await
    }

    async fn workflow_tasks(
        &self,
        id: RunId,
        user: Option<&str>,
    ) -> Result<owlclaw_core::workflow::WorkflowRunTasks> {
        self.send(|| self.get(&format!("/v1/runs/{id}/tasks"), user))
            .await
    }

    async fn workflow_plan(&self, name: &str) -> Result<owlclaw_core::workflow::WorkflowPlan> {
        let name = path_segment(name);
        self.send(|| self.get(&format!("/v1/workflows/{name}/plan"), None))
            .await
    }

    async fn retry_run(&self, id: RunId, user: Option<&str>) -> Result<RunSnapshot> {
        self.send(|| self.request(Method::POST, &format!("/v1/runs/{id}/retry"), SLACK, user))
            .await
    }

    async fn wait_run(&self, id: RunId, timeout: Duration) -> Result<RunSnapshot> {
        let timeout = timeout.min(Duration::from_secs(300));
        let path = format!("/v1/runs/{id}/result");
        let wait = [("timeout", format_duration(timeout))];
        self.send(|| {
            self.request(Method::GET, &path, timeout + SLACK, None)
                .query(&wait)
        })
        .await
    }

    async fn list_crons(&self) -> Result<Vec<CronSchedule>> {
        self.send(|| self.get("/v1/crons", None)).await
    }

    async fn create_cron(&self, req: CronRequest) -> Result<CronSchedule> {
        self.send(|| self.post("/v1/crons", &req, None)).await
    }

    async fn delete_cron(&self, id: &str) -> Result<()> {
        self.send(|| self.request(Method::DELETE, &format!("/v1/crons/{id}"), SLACK, None))
            .await
    }

    async fn set_cron_paused(&self, id: &str, paused: bool) -> Result<CronSchedule> {
        let action = if paused { "pause" } else { "resume" };
        let path = format!("/v1/crons/{}/{action}", path_segment(id));
        self.send(|| self.request(Method::POST, &path, SLACK, None))
            .await
    }

    async fn trigger_cron(&self, id: &str) -> Result<RunSnapshot> {
        let path = format!("/v1/crons/{}/trigger", path_segment(id));
        self.send(|| self.request(Method::POST, &path, SLACK, None))
            .await
    }

    async fn push_event(&self, event: PushEvent) -> Result<PushedEvent> {
        self.send(|| self.post("/v1/events", &event, None)).await
    }

    async fn set_rate_limit(&self, limit: RateLimit) -> Result<RateLimit> {
        self.send(|| self.post("/v1/rate-limits", &limit, None))
            .await
    }

    async fn rate_limits(&self) -> Result<Vec<RateLimit>> {
        self.send(|| self.get("/v1/rate-limits", None)).await
    }

    async fn register_worker(&self, reg: WorkerRegistration) -> Result<WorkerSession> {
        self.send(|| self.post("/v1/workers", &reg, None)).await
    }

    async fn exchange(&self, worker_id: &str, req: ExchangeRequest) -> Result<ExchangeResponse> {
        let timeout = Duration::from_millis(req.wait_ms) + SLACK;
        let path = format!("/v1/workers/{worker_id}/exchange");
        self.send(|| self.request(Method::POST, &path, timeout, None).json(&req))
            .await
    }

    async fn checkpoint_step(&self, worker_id: &str, checkpoint: StepCheckpoint) -> Result<()> {
        self.send(|| self.post(&format!("/v1/workers/{worker_id}/steps"), &checkpoint, None))
            .await
    }

    async fn deregister_worker(&self, worker_id: &str) -> Result<()> {
        self.send(|| {
            self.request(
                Method::DELETE,
                &format!("/v1/workers/{worker_id}"),
                SLACK,
                None,
            )
        })
        .await
    }

    async fn list_workers(&self) -> Result<Vec<WorkerInfo>> {
        self.send(|| self.get("/v1/workers", None)).await
    }

    async fn close(&self) -> Result<()> {
        Ok(())
    }
}

/// The query parameters of a run filter (`GET /v1/runs`, `GET /v1/runs/count`).
fn list_query(filter: &ListFilter) -> Vec<(&'static str, String)> {
    let mut q: Vec<(&str, String)> = Vec::new();
    if let Some(s) = filter.status {
        q.push(("status", s.to_string()));
    }
    if let Some(t) = &filter.task {
        q.push(("task", t.clone()));
    }
    if let Some(o) = &filter.owner {
        q.push(("owner", o.clone()));
    }
    if let Some(l) = filter.limit {
        q.push(("limit", l.to_string()));
    }
    if let Some(c) = &filter.cursor {
        q.push(("cursor", c.clone()));
    }
    if let Some(t) = filter.created_after {
        q.push(("created_after", t.to_rfc3339()));
    }
    if let Some(t) = filter.created_before {
        q.push(("created_before", t.to_rfc3339()));
    }
    if let Some(p) = filter.parent_id {
        q.push(("parent_id", p.to_string()));
    }
    q
}

/// `text` as one path segment: `/`, `%`, `?` and `#` percent-encoded (cron ids such as
/// `task:send-email` may hold a namespace with `/`).
fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '/' => out.push_str("%2F"),
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3F"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
    out
}
