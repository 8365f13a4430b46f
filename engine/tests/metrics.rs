//! `GET /metrics` of a real engine on a SQLite file, called in-process through its axum router
//! after a worker took runs through the worker protocol, and read by a Prometheus text-format
//! parser (`prometheus-parse`): each family's type, queue depth by task and priority, outcome
//! counters by task, the histograms' buckets, sums and counts, the worker and slot gauges. And the
//! Grafana dashboard of `deploy/grafana/` uses only names the engine exports.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use owlclaw_engine::http::{router, ServerConfig};
use owlclaw_engine::{Engine, EngineConfig};
use prometheus_parse::{Sample, Scrape, Value as Prom};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use tempfile::TempDir;
use tower::ServiceExt;

/// The dashboard, from this crate's folder.
const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/grafana/owlclaw.json"
);

/// What a family's samples are, as the parser reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every family `/metrics` exports, with its type: counters by their `_total` name, histograms by
/// their base name.
const FAMILIES: &[(&str, Kind)] = &[
    ("owlclaw_queue_depth", Kind::Gauge),
    ("owlclaw_workers", Kind::Gauge),
    ("owlclaw_worker_slots", Kind::Gauge),
    ("owlclaw_worker_slots_busy", Kind::Gauge),
    ("owlclaw_runs_scheduled_total", Kind::Counter),
    ("owlclaw_runs_claimed_total", Kind::Counter),
    ("owlclaw_runs_succeeded_total", Kind::Counter),
    ("owlclaw_attempts_failed_total", Kind::Counter),
    ("owlclaw_attempts_timed_out_total", Kind::Counter),
    ("owlclaw_runs_handed_back_total", Kind::Counter),
    ("owlclaw_runs_suspended_total", Kind::Counter),
    ("owlclaw_lease_expiries_total", Kind::Counter),
    ("owlclaw_cron_ticks_total", Kind::Counter),
    ("owlclaw_attempt_outcomes_total", Kind::Counter),
    ("owlclaw_queue_wait_seconds", Kind::Histogram),
    ("owlclaw_run_duration_seconds", Kind::Histogram),
];

/// An engine on a fresh SQLite file and its router, with tokens of tenants `acme` and `globex`.
struct Harness {
    _engine: Engine,
    app: Router,
    acme: String,
    globex: String,
    _dir: TempDir,
}

impl Harness {
    async fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::start(EngineConfig {
            database_url: format!("sqlite://{}/db.sqlite", dir.path().display()),
            ..EngineConfig::default()
        })
        .await
        .unwrap();
        let acme = engine.create_token("acme").await.unwrap();
        let globex = engine.create_token("globex").await.unwrap();
        let app = router(engine.clone(), &ServerConfig::default());
        Harness {
            _engine: engine,
            app,
            acme,
            globex,
            _dir: dir,
        }
    }

    /// A request with `token` (none when `None`): the status and the body text.
    async fn call(
        &self,
        token: Option<&str>,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, String) {
        let mut b = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = match body {
            Some(v) => b
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(v.to_string())),
            None => b.body(Body::empty()),
        };
        let resp = self.app.clone().oneshot(req.unwrap()).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    /// A JSON request that must answer `expect`; returns the answer.
    async fn json(
        &self,
        token: &str,
        method: Method,
        uri: &str,
        body: Option<Value>,
        expect: StatusCode,
    ) -> Value {
        let (status, text) = self.call(Some(token), method, uri, body).await;
        assert_eq!(status, expect, "{uri}: {text}");
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        }
    }

    /// Registers a worker with `slots` serving `tasks`; returns its id.
    async fn register(&self, token: &str, name: &str, slots: u32, tasks: &[&str]) -> String {
        let tasks: Vec<Value> = tasks
            .iter()
            .map(|t| {
                json!({
                    "name": t,
                    "retries": 0,
                    "timeout": "30s",
                    "priority": 5,
                    "backoff": {"initial": "1s", "factor": 2.0, "max": "5m"}
                })
            })
            .collect();
        let body = json!({"name": name, "slots": slots, "tasks": tasks});
        let session = self
            .json(
                token,
                Method::POST,
                "/v1/workers",
                Some(body),
                StatusCode::CREATED,
            )
            .await;
        session["worker_id"].as_str().unwrap().to_string()
    }

    /// Schedules `n` runs of `task` at `priority`.
    async fn schedule(&self, token: &str, task: &str, priority: u8, n: usize) {
        for _ in 0..n {
            let body = json!({"task": task, "priority": priority});
            self.json(
                token,
                Method::POST,
                "/v1/runs",
                Some(body),
                StatusCode::CREATED,
            )
            .await;
        }
    }

    /// One exchange of a worker of tenant `acme`.
    async fn exchange(&self, worker: &str, body: Value) -> Value {
        let uri = format!("/v1/workers/{worker}/exchange");
        let acme = self.acme.clone();
        self.json(&acme, Method::POST, &uri, Some(body), StatusCode::OK)
            .await
    }

    /// `GET /metrics`, without a token, parsed; the text beside it.
    async fn scrape(&self) -> (Scrape, String) {
        let (status, text) = self.call(None, Method::GET, "/metrics", None).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
        (scrape, text)
    }
}

/// An engine after some work, scraped:
/// - `acme`: worker `mailer` (4 slots) took 3 runs of `send-email` (priority 5): one succeeded,
///   one failed for good, one is still held; worker `spare` (2 slots) registered and left. Then
///   2 runs of `send-email` at priority 9, 1 at priority 2 and 3 of `resize-image` at priority 5
///   were scheduled and wait.
/// - `globex`: worker `billing` (3 slots), and 1 run of `invoice` waiting.
async fn engine_after_some_work() -> (Harness, Scrape, String) {
    let h = Harness::new().await;
    let (acme, globex) = (h.acme.clone(), h.globex.clone());
    let mailer = h
        .register(&acme, "mailer", 4, &["send-email", "resize-image"])
        .await;
    let spare = h.register(&acme, "spare", 2, &["send-email"]).await;
    h.json(
        &acme,
        Method::DELETE,
        &format!("/v1/workers/{spare}"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    h.register(&globex, "billing", 3, &["invoice"]).await;

    h.schedule(&acme, "send-email", 5, 3).await;
    let got = h.exchange(&mailer, json!({"want": 3, "wait_ms": 0})).await;
    let runs: Vec<&str> = got["assignments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(runs.len(), 3, "{got}");
    h.exchange(
        &mailer,
        json!({
            "completions": [
                {"run_id": runs[0], "attempt": 1, "outcome": "succeeded", "output": "sent"},
                {"run_id": runs[1], "attempt": 1, "outcome": "failed", "error": "smtp down", "retryable": false},
            ],
            "held": [runs[2]],
            "heartbeat": true,
        }),
    )
    .await;

    h.schedule(&acme, "send-email", 9, 2).await;
    h.schedule(&acme, "send-email", 2, 1).await;
    h.schedule(&acme, "resize-image", 5, 3).await;
    h.schedule(&globex, "invoice", 5, 1).await;
    let (scrape, text) = h.scrape().await;
    (h, scrape, text)
}

/// The samples of `name` (a histogram by its base name).
fn samples<'a>(scrape: &'a Scrape, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
    scrape.samples.iter().filter(move |s| s.metric == name)
}

/// The label values of a sample, for `keys`, after checking it has exactly those labels.
#[track_caller]
fn labels<const N: usize>(s: &Sample, keys: [&str; N]) -> [String; N] {
    let mut got: Vec<&String> = s.labels.keys().collect();
    got.sort();
    let mut want = keys.to_vec();
    want.sort();
    assert_eq!(got, want, "labels of {}: {:?}", s.metric, s.labels);
    keys.map(|k| s.labels.get(k).unwrap().to_string())
}

/// The value of a counter, gauge or untyped sample.
#[track_caller]
fn scalar(s: &Sample) -> f64 {
    match s.value {
        Prom::Counter(v) | Prom::Gauge(v) | Prom::Untyped(v) => v,
        ref other => panic!("{} is not a single value: {other:?}", s.metric),
    }
}

/// The value of the one sample of an unlabelled family.
#[track_caller]
fn single(scrape: &Scrape, name: &str) -> f64 {
    let all: Vec<_> = samples(scrape, name).collect();
    assert_eq!(all.len(), 1, "one sample of {name}: {all:?}");
    labels(all[0], []);
    scalar(all[0])
}

/// A gauge by tenant: tenant → value.
fn by_tenant(scrape: &Scrape, name: &str) -> BTreeMap<String, f64> {
    samples(scrape, name)
        .map(|s| {
            let [tenant] = labels(s, ["tenant"]);
            (tenant, scalar(s))
        })
        .collect()
}

fn kind(value: &Prom) -> Option<Kind> {
    match value {
        Prom::Counter(_) => Some(Kind::Counter),
        Prom::Gauge(_) => Some(Kind::Gauge),
        Prom::Histogram(_) => Some(Kind::Histogram),
        Prom::Summary(_) | Prom::Untyped(_) => None,
    }
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_with_the_designed_types_and_values() {
    let (_h, scrape, text) = engine_after_some_work().await;

    // Every sample line was read by the parser (it skips lines it does not understand).
    let lines = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .count();
    let read: usize = scrape
        .samples
        .iter()
        .map(|s| match &s.value {
            Prom::Histogram(buckets) => buckets.len(),
            _ => 1,
        })
        .sum();
    assert_eq!(read, lines, "the parser skipped sample lines of:\n{text}");

    // Each family has its type and a help text; no other family is exported.
    for (name, want) in FAMILIES {
        let got: BTreeSet<_> = samples(&scrape, name).map(|s| kind(&s.value)).collect();
        assert_eq!(
            got,
            BTreeSet::from([Some(*want)]),
            "type of {name} in:\n{text}"
        );
        assert!(scrape.docs.contains_key(*name), "no HELP of {name}");
    }
    for s in &scrape.samples {
        let family = s
            .metric
            .strip_suffix("_sum")
            .or_else(|| s.metric.strip_suffix("_count"))
            .filter(|base| FAMILIES.contains(&(base, Kind::Histogram)))
            .unwrap_or(&s.metric);
        assert!(
            FAMILIES.iter().any(|(name, _)| *name == family),
            "{} is not in FAMILIES (nor in the README's table?)",
            s.metric
        );
    }

    // Queue depth: what waits, by tenant, task and priority (the claimed runs are not in it).
    let depth: BTreeMap<_, _> = samples(&scrape, "owlclaw_queue_depth")
        .map(|s| (labels(s, ["tenant", "task", "priority"]), scalar(s)))
        .collect();
    let key = |tenant: &str, task: &str, priority: &str| {
        [tenant.to_string(), task.to_string(), priority.to_string()]
    };
    assert_eq!(
        depth,
        BTreeMap::from([
            (key("acme", "send-email", "9"), 2.0),
            (key("acme", "send-email", "2"), 1.0),
            (key("acme", "resize-image", "5"), 3.0),
            (key("globex", "invoice", "5"), 1.0),
        ])
    );

    // Counters of this engine process.
    for (name, value) in [
        ("owlclaw_runs_scheduled_total", 10.0),
        ("owlclaw_runs_claimed_total", 3.0),
        ("owlclaw_runs_succeeded_total", 1.0),
        ("owlclaw_attempts_failed_total", 1.0),
        ("owlclaw_attempts_timed_out_total", 0.0),
        ("owlclaw_runs_handed_back_total", 0.0),
        ("owlclaw_runs_suspended_total", 0.0),
        ("owlclaw_lease_expiries_total", 0.0),
        ("owlclaw_cron_ticks_total", 0.0),
    ] {
        assert_eq!(single(&scrape, name), value, "{name}");
    }

    // Outcomes by tenant, task and outcome.
    let outcomes: BTreeMap<_, _> = samples(&scrape, "owlclaw_attempt_outcomes_total")
        .map(|s| (labels(s, ["tenant", "task", "outcome"]), scalar(s)))
        .collect();
    assert_eq!(
        outcomes,
        BTreeMap::from([
            (key("acme", "send-email", "succeeded"), 1.0),
            (key("acme", "send-email", "failed"), 1.0),
        ])
    );

    // Histograms by tenant and task: cumulative buckets ending at +Inf, whose count is `_count`.
    for (name, bounds, count) in [
        ("owlclaw_queue_wait_seconds", 10, 3.0),
        ("owlclaw_run_duration_seconds", 11, 2.0),
    ] {
        let all: Vec<_> = samples(&scrape, name).collect();
        assert_eq!(all.len(), 1, "{name}: one task has samples: {all:?}");
        let h = all[0];
        assert_eq!(
            labels(h, ["tenant", "task"]),
            ["acme".to_string(), "send-email".to_string()]
        );
        let Prom::Histogram(buckets) = &h.value else {
            unreachable!()
        };
        assert_eq!(buckets.len(), bounds + 1, "{name}: buckets {buckets:?}");
        for pair in buckets.windows(2) {
            assert!(pair[0].less_than < pair[1].less_than, "{name}: {buckets:?}");
            assert!(pair[0].count <= pair[1].count, "{name}: {buckets:?}");
        }
        let last = buckets.last().unwrap();
        assert_eq!(last.less_than, f64::INFINITY, "{name}: {buckets:?}");
        assert_eq!(last.count, count, "{name}: {buckets:?}");
        let series = |suffix: &str| {
            let name = format!("{name}{suffix}");
            let all: Vec<_> = samples(&scrape, &name).collect();
            assert_eq!(all.len(), 1, "{name}: {all:?}");
            assert_eq!(
                labels(all[0], ["tenant", "task"]),
                labels(h, ["tenant", "task"])
            );
            scalar(all[0])
        };
        assert_eq!(series("_count"), count, "{name}_count");
        let sum = series("_sum");
        assert!(
            sum.is_finite() && (0.0..60.0 * count).contains(&sum),
            "{name}_sum = {sum}"
        );
    }

    // Live workers and their slots by tenant: `spare` left, `mailer` holds one run.
    assert_eq!(
        by_tenant(&scrape, "owlclaw_workers"),
        BTreeMap::from([("acme".into(), 1.0), ("globex".into(), 1.0)])
    );
    assert_eq!(
        by_tenant(&scrape, "owlclaw_worker_slots"),
        BTreeMap::from([("acme".into(), 4.0), ("globex".into(), 3.0)])
    );
    assert_eq!(
        by_tenant(&scrape, "owlclaw_worker_slots_busy"),
        BTreeMap::from([("acme".into(), 1.0), ("globex".into(), 0.0)])
    );
}

/// The metric names (`owlclaw_...`) in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("owlclaw_") {
        let word_before = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        let len = rest[at..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len() - at);
        if !word_before {
            names.insert(rest[at..at + len].to_string());
        }
        rest = &rest[at + len..];
    }
    names
}

/// Every `expr` of the panels, with the panel's title; and the template variables' queries.
fn expressions(dashboard: &Value) -> (Vec<(String, String)>, Vec<String>) {
    fn panels<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            panels(&p["panels"], out);
        }
    }
    let mut all = Vec::new();
    panels(&dashboard["panels"], &mut all);
    let mut exprs = Vec::new();
    for p in all {
        let title = p["title"].as_str().unwrap_or_default().to_string();
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().expect("each target has an `expr`");
            exprs.push((title.clone(), expr.to_string()));
        }
    }
    let queries = dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["type"] == "query")
        .map(|v| match &v["query"] {
            Value::String(q) => q.clone(),
            q => q["query"].as_str().expect("a query").to_string(),
        })
        .collect();
    (exprs, queries)
}

#[tokio::test]
async fn grafana_dashboard_uses_only_metric_names_the_engine_exports() {
    let text = std::fs::read_to_string(DASHBOARD).expect("deploy/grafana/owlclaw.json");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");

    // Importable: a schema version, a Prometheus data source chosen by a variable, a `task`
    // variable over the queue depth's tasks.
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 36);
    assert!(dashboard["uid"].is_string() && dashboard["title"].is_string());
    let vars = dashboard["templating"]["list"].as_array().unwrap();
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no variable {name}"))
    };
    assert_eq!(var("datasource")["type"], "datasource");
    assert_eq!(var("datasource")["query"], "prometheus");
    let task = var("task");
    assert_eq!(task["type"], "query");
    assert!(
        task["definition"]
            .as_str()
            .unwrap()
            .starts_with("label_values(owlclaw_queue_depth"),
        "{task}"
    );

    let (exprs, queries) = expressions(&dashboard);
    assert!(exprs.len() >= 12, "{exprs:?}");

    // What the engine exports, by sample name: counters end in `_total`, and a histogram is its
    // `_bucket`, `_sum` and `_count` series.
    let (_h, scrape, _) = engine_after_some_work().await;
    let mut exported: BTreeMap<String, Kind> = BTreeMap::new();
    for s in &scrape.samples {
        match kind(&s.value) {
            Some(Kind::Histogram) => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    exported.insert(format!("{}{suffix}", s.metric), Kind::Histogram);
                }
            }
            Some(k) => {
                exported.insert(s.metric.clone(), k);
            }
            None => {}
        }
    }

    let mut used = BTreeSet::new();
    for (title, expr) in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{title:?}: no metric in {expr:?}");
        for name in &names {
            let Some(k) = exported.get(name) else {
                let hint = if exported.contains_key(&format!("{name}_total")) {
                    "; counters are exported with `_total`"
                } else if exported.contains_key(&format!("{name}_bucket")) {
                    "; a histogram is read through `_bucket`, `_sum` or `_count`"
                } else {
                    ""
                };
                panic!("{title:?}: {name} is not exported by the engine{hint} ({expr:?})");
            };
            // Counters and histogram series are read through rates; gauges are not.
            let rated = expr.contains("rate(") || expr.contains("increase(");
            assert_eq!(
                rated,
                *k != Kind::Gauge,
                "{title:?}: {name} is a {k:?}: {expr:?}"
            );
            let family = match k {
                Kind::Histogram => ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .unwrap_or(name),
                _ => name,
            };
            used.insert(family.to_string());
        }
        if expr.contains("histogram_quantile(") {
            assert!(
                names.iter().all(|n| n.ends_with("_bucket")) && expr.contains("le"),
                "{title:?}: histogram_quantile over `_bucket` series by `le`: {expr:?}"
            );
        }
    }
    for q in &queries {
        for name in metric_names(q) {
            assert!(exported.contains_key(&name), "variable query {q:?}: {name}");
        }
    }

    // And the dashboard shows every family.
    for (name, _) in FAMILIES {
        assert!(
            used.contains(*name),
            "the dashboard shows no panel of {name}"
        );
    }
}
