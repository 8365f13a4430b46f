//! OpenTelemetry (the `otel` feature): one trace per run, from the enqueue in this process through
//! each attempt and durable step in a worker process (`owlclaw-otel-probe`), both exporting by
//! OTLP/HTTP to a collector in this test, in lite mode on one SQLite file.

use axum::body::Bytes;
use axum::extract::State;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use owlclaw::{RunStatus, ScheduleRequest};
use owlclaw_tests::{eventually, finished, TestDb};
use prost::Message;
use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[allow(dead_code)]
#[path = "bin/otel_probe.rs"]
mod probe;

const ENQUEUER: &str = "otel-test-enqueuer";
const WORKER: &str = "otel-test-worker";

/// A span as the collector received it.
#[derive(Debug, Clone)]
struct Collected {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: HashMap<String, String>,
    status: (i32, String),
}

impl Collected {
    fn attr(&self, key: &str) -> &str {
        self.attributes.get(key).map_or("", String::as_str)
    }
}

type Spans = Arc<Mutex<Vec<Collected>>>;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(kv: &KeyValue) -> String {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// `POST /v1/traces`: an OTLP/HTTP export request, in protobuf.
async fn receive(State(spans): State<Spans>, body: Bytes) -> Vec<u8> {
    let req = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf body");
    let mut spans = spans.lock().unwrap();
    for rs in req.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .map(text)
            .unwrap_or_default();
        for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
            let status = span.status.unwrap_or_default();
            spans.push(Collected {
                service: service.clone(),
                name: span.name,
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                attributes: span
                    .attributes
                    .iter()
                    .map(|kv| (kv.key.clone(), text(kv)))
                    .collect(),
                status: (status.code, status.message),
            });
        }
    }
    ExportTraceServiceResponse::default().encode_to_vec()
}

#[test]
fn one_trace_follows_a_run_from_its_enqueue_through_attempts_and_steps_in_a_worker_process() {
    // The collector's port and this process's OTel variables, before any thread may read them.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let endpoint = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    let otel_env = |service: &'static str| {
        [
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint.clone()),
            ("OTEL_SERVICE_NAME", service.to_string()),
            ("OTEL_BSP_SCHEDULE_DELAY", "50".to_string()),
        ]
    };
    for (k, v) in otel_env(ENQUEUER) {
        std::env::set_var(k, v);
    }
    for k in [
        "OTEL_SDK_DISABLED",
        "OTEL_TRACES_EXPORTER",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_TRACES_SAMPLER",
    ] {
        std::env::remove_var(k);
    }
    // This process adds the layer to a subscriber of its own; the worker process uses `init`.
    let (otel, guard) = owlclaw::otel::layer().unwrap();
    tracing_subscriber::registry().with(otel).init();

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let spans = Spans::default();
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(receive))
            .with_state(spans.clone());
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let db = TestDb::new();
        let client = db.client().await; // migrates the file before the worker starts
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_owlclaw-otel-probe"));
        cmd.arg(db.url())
            .envs(otel_env(WORKER))
            .env_remove("OTEL_SDK_DISABLED")
            .env_remove("OTEL_TRACES_EXPORTER")
            // Its logs (stderr) only as the test's `RUST_LOG` asks.
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "off".into()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        let mut worker = cmd.spawn().expect("spawn the probe worker");
        let mut lines = BufReader::new(worker.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the worker ready in time")
            .unwrap()
            .expect("the worker printed a line");
        assert!(ready.starts_with("ready"), "unexpected first line: {ready}");

        // Enqueued inside a span of the application: a typed handle with metadata of its own,
        // and an untyped submit.
        let checkout = tracing::info_span!("checkout");
        let (steps_run, flaky_run) = async {
            let steps = probe::two_steps::enqueue(&client, "order-7".to_string())
                .metadata(serde_json::json!({ "origin": "otel-test" }))
                .await
                .unwrap();
            let flaky = client
                .submit(ScheduleRequest {
                    task: "otel-flaky".into(),
                    input: serde_json::Value::Null,
                    ..ScheduleRequest::default()
                })
                .await
                .unwrap();
            (steps, flaky.run.id)
        }
        .instrument(checkout.clone())
        .await;
        drop(checkout);

        assert_eq!(
            steps_run
                .result_timeout(Duration::from_secs(60))
                .await
                .unwrap(),
            "order-7 fetched, stored"
        );
        let flaky = finished(&client, flaky_run).await;
        assert_eq!((flaky.status, flaky.attempt), (RunStatus::Succeeded, 2));
        let metadata = steps_run.snapshot().await.unwrap().metadata.unwrap();
        assert_eq!(
            metadata["origin"], "otel-test",
            "the user's metadata is kept"
        );
        let traceparent = metadata["traceparent"].as_str().unwrap().to_string();

        // The worker exports its last spans when it stops (stdin closed); this process flushes.
        drop(worker.stdin.take());
        let status = tokio::time::timeout(Duration::from_secs(60), worker.wait())
            .await
            .expect("the worker stopped in time")
            .unwrap();
        assert!(status.success(), "the worker exited with {status}");
        guard.flush();

        let find = |spans: &[Collected], service: &str, name: &str| -> Vec<Collected> {
            spans
                .iter()
                .filter(|s| s.service == service && s.name == name)
                .cloned()
                .collect()
        };
        let all = eventually(
            "the collector to receive the spans of both processes",
            Duration::from_secs(30),
            || async {
                let spans = spans.lock().unwrap().clone();
                let complete = find(&spans, ENQUEUER, "checkout").len() == 1
                    && find(&spans, WORKER, "run otel-flaky").len() == 2
                    && find(&spans, WORKER, "step store").len() == 1;
                complete.then_some(spans)
            },
        )
        .await;
        let one = |service: &str, name: &str| {
            let found = find(&all, service, name);
            assert_eq!(found.len(), 1, "one {name:?} span from {service}: {all:#?}");
            found.into_iter().next().unwrap()
        };

        let checkout = one(ENQUEUER, "checkout");
        let trace = checkout.trace_id.clone();
        let enqueue = one(ENQUEUER, "enqueue otel-two-steps");
        let attempt = one(WORKER, "run otel-two-steps");
        let steps = [one(WORKER, "step fetch"), one(WORKER, "step store")];
        let enqueue_flaky = one(ENQUEUER, "enqueue otel-flaky");
        let mut attempts_flaky = find(&all, WORKER, "run otel-flaky");
        attempts_flaky.sort_by(|a, b| a.attr("attempt").cmp(b.attr("attempt")));

        // One trace, from both processes.
        let in_trace: Vec<&Collected> = all.iter().filter(|s| s.trace_id == trace).collect();
        for s in [&enqueue, &attempt, &steps[0], &steps[1], &enqueue_flaky]
            .into_iter()
            .chain(&attempts_flaky)
        {
            assert_eq!(s.trace_id, trace, "{} is in the checkout's trace", s.name);
        }
        assert!(in_trace.iter().any(|s| s.service == ENQUEUER));
        assert!(in_trace.iter().any(|s| s.service == WORKER));
        assert_eq!(
            traceparent,
            format!("00-{trace}-{}-01", enqueue.span_id),
            "the run's metadata carries the enqueue's context"
        );

        // Enqueue (child of the application's span) -> attempt -> steps.
        assert_eq!(enqueue.parent_span_id, checkout.span_id);
        assert_eq!(enqueue.attr("run_id"), steps_run.id().to_string());
        assert_eq!(attempt.parent_span_id, enqueue.span_id);
        assert_eq!(
            (
                attempt.attr("run_id"),
                attempt.attr("task"),
                attempt.attr("attempt"),
                attempt.attr("outcome")
            ),
            (
                steps_run.id().to_string().as_str(),
                "otel-two-steps",
                "1",
                "succeeded"
            )
        );
        assert_ne!(attempt.status.0, StatusCode::Error as i32);
        for step in &steps {
            assert_eq!(
                step.parent_span_id, attempt.span_id,
                "{} under the attempt",
                step.name
            );
        }

        // Each attempt of the flaky run is a child of its enqueue; the failed one says why.
        assert_eq!(enqueue_flaky.parent_span_id, checkout.span_id);
        let [first, second] = &attempts_flaky[..] else {
            panic!("two attempts: {attempts_flaky:#?}");
        };
        for a in [first, second] {
            assert_eq!(a.parent_span_id, enqueue_flaky.span_id);
            assert_eq!(a.attr("run_id"), flaky_run.to_string());
        }
        assert_eq!(
            (first.attr("attempt"), first.attr("outcome")),
            ("1", "failed")
        );
        assert_eq!(first.status.0, StatusCode::Error as i32);
        assert!(
            first.status.1.contains("the first attempt fails"),
            "{:?}",
            first.status
        );
        assert_eq!(
            (second.attr("attempt"), second.attr("outcome")),
            ("2", "succeeded")
        );
        assert_ne!(second.status.0, StatusCode::Error as i32);
    });
}
