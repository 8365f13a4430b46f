//! OpenTelemetry traces (the `otel` feature): one trace per run, from the call that enqueues it
//! through each attempt and each durable step, across processes.
//!
//! - Enqueueing a run (a typed handle, [`Client::submit`](crate::Client::submit),
//!   [`Client::submit_bulk`](crate::Client::submit_bulk),
//!   [`Context::spawn`](crate::Context::spawn)) happens in an `enqueue <task>` span (kind
//!   producer), a child of the caller's current span. Its W3C trace context goes into the run's
//!   metadata as `traceparent` (and `tracestate`), beside the metadata keys of your own; a
//!   `traceparent` of your own is kept as it is (the run then joins your trace). Metadata that is
//!   not a JSON object is left alone.
//! - A worker starts each attempt in a `run <task>` span (kind consumer) whose parent is that
//!   context, with the attributes `task`, `run_id`, `attempt` and `outcome`, and an error status
//!   when the attempt failed or timed out. Runs started without a trace context (crons, events, the
//!   API without `traceparent`) start a trace of their own.
//! - Durable steps (`ctx.step`, `ctx.step_verified`) are `step <name>` spans under the attempt,
//!   with `replayed = true` when the step's stored output was returned without running it.
//!
//! Spans are `tracing` spans: they reach OpenTelemetry through the
//! [`tracing-opentelemetry`](https://docs.rs/tracing-opentelemetry) layer that [`init`] installs,
//! or that [`layer`] gives to a subscriber of your own. Without such a layer the spans are plain
//! `tracing` spans and nothing goes into the metadata. To read the trace context, the worker reads
//! the run's snapshot when an attempt starts (its first durable step then uses it instead of
//! reading it again), only when an OpenTelemetry layer takes the span.
//!
//! The exporter speaks OTLP over HTTP with protobuf bodies and is configured by the standard
//! variables: `OTEL_EXPORTER_OTLP_ENDPOINT` (default `http://localhost:4318`, to which
//! `/v1/traces` is added), `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is),
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT` (and their `_TRACES_` forms),
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` (and `_ARG`), the
//! batch processor's `OTEL_BSP_*`, `OTEL_SDK_DISABLED=true` and `OTEL_TRACES_EXPORTER=none` (no
//! export). `OTEL_EXPORTER_OTLP_PROTOCOL` may only be `http/protobuf`: gRPC is not built in.

use crate::Context;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{Status, TraceContextExt, TracerProvider as _};
use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use owlclaw_core::wire::{Assignment, Outcome, ScheduleRequest, Scheduled};
use owlclaw_core::{Error, Orchestrator, Result};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::time::Duration;
use tracing::field::Empty;
use tracing::{Instrument, Span, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// The metadata key of the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// How long a worker waits for the run's snapshot (its trace context) before it starts an attempt
/// without it.
const READ_CONTEXT_TIMEOUT: Duration = Duration::from_secs(2);

/// Installs a global `tracing` subscriber that exports spans at `INFO` and above by OTLP (see
/// the [module's documentation](self) for the variables) and logs to stderr as `RUST_LOG` says
/// (`owlclaw=info` when it is not set). Keep the guard until the end of `main`: dropping it
/// exports the spans not sent yet.
///
/// An application with a subscriber of its own adds [`layer`] to it instead.
///
/// ```no_run
/// #[tokio::main]
/// async fn main() -> anyhow::Result<()> {
///     // OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318 OTEL_SERVICE_NAME=mailer
///     let _otel = owlclaw::otel::init()?;
///     let client = owlclaw::Client::from_env().await?;
///     let worker = client.worker("mailer").start().await?;
///     worker.shutdown_on_signal().await?;
///     Ok(())
/// }
/// ```
pub fn init() -> Result<OtelGuard> {
    use tracing_subscriber::filter::{EnvFilter, LevelFilter};
    let (otel, guard) = layer()?;
    let logs = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("owlclaw=info"));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(logs),
        )
        .with(otel.with_filter(LevelFilter::INFO))
        .try_init()
        .map_err(|e| {
            Error::config(
                "otel",
                format!(
                    "a global tracing subscriber is already installed ({e}); \
                     add owlclaw::otel::layer() to it instead"
                ),
            )
        })?;
    if let Some(provider) = &guard.provider {
        opentelemetry::global::set_tracer_provider(provider.clone());
    }
    Ok(guard)
}

/// The OpenTelemetry layer alone, for an application that builds its own `tracing` subscriber,
/// and the guard that flushes it (see [`init`]). The layer is empty when `OTEL_SDK_DISABLED=true`
/// or `OTEL_TRACES_EXPORTER=none`.
///
/// ```no_run
/// use tracing_subscriber::filter::{EnvFilter, LevelFilter};
/// use tracing_subscriber::prelude::*;
///
/// # fn main() -> owlclaw::Result<()> {
/// let (otel, _guard) = owlclaw::otel::layer()?;
/// tracing_subscriber::registry()
///     .with(tracing_subscriber::fmt::layer().with_filter(EnvFilter::from_default_env()))
///     .with(otel.with_filter(LevelFilter::INFO))
///     .init();
/// # Ok(()) }
/// ```
pub fn layer<S>() -> Result<(impl Layer<S>, OtelGuard)>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    if disabled() {
        return Ok((None, OtelGuard { provider: None }));
    }
    for var in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Ok(p) = std::env::var(var) {
            if !p.trim().is_empty() && p.trim() != "http/protobuf" {
                return Err(Error::config(
                    var,
                    format!(
                        "{p:?} is not supported: owlclaw exports by OTLP/HTTP with protobuf \
                         (http/protobuf)"
                    ),
                ));
            }
        }
    }
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .build()
        .map_err(|e| Error::config("otel", format!("the OTLP exporter: {e}")))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource())
        .build();
    let tracer = provider.tracer_with_scope(
        InstrumentationScope::builder("owlclaw")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
    );
    let layer = tracing_opentelemetry::layer().with_tracer(tracer);
    Ok((
        Some(layer),
        OtelGuard {
            provider: Some(provider),
        },
    ))
}

fn disabled() -> bool {
    let var = |name| {
        std::env::var(name)
            .unwrap_or_default()
            .trim()
            .to_lowercase()
    };
    var("OTEL_SDK_DISABLED") == "true" || var("OTEL_TRACES_EXPORTER") == "none"
}

/// The resource from the environment; without a service name, `unknown_service:<executable>`
/// (the specification's default).
fn resource() -> Resource {
    let resource = Resource::builder().build();
    let unnamed = resource
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .is_none_or(|v| v.as_str() == "unknown_service");
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    match exe {
        Some(exe) if unnamed => Resource::builder()
            .with_service_name(format!("unknown_service:{exe}"))
            .build(),
        _ => resource,
    }
}

/// Keeps the exporter of [`init`] or [`layer`]; dropping it exports what is left and stops it.
#[must_use = "dropping the guard stops the export"]
pub struct OtelGuard {
    provider: Option<SdkTracerProvider>,
}

impl OtelGuard {
    /// Exports the finished spans not sent yet, and waits until they are (or the export's
    /// timeout passes).
    pub fn flush(&self) {
        if let Some(p) = &self.provider {
            if let Err(e) = p.force_flush() {
                tracing::warn!(error = %e, "exporting spans failed");
            }
        }
    }
}

impl fmt::Debug for OtelGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtelGuard")
            .field("exporting", &self.provider.is_some())
            .finish()
    }
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            if let Err(e) = p.shutdown() {
                eprintln!("owlclaw: exporting the last spans failed: {e}");
            }
        }
    }
}

// What the client, the worker and the context call.

/// The span of an enqueue (one request, or a batch), whose trace context it writes into the
/// requests' metadata: the span's own, or the current span's when this one is filtered out.
pub(crate) fn enqueue_span(reqs: &mut [ScheduleRequest]) -> Span {
    let task = match &*reqs {
        [first, rest @ ..] if rest.iter().all(|r| r.task == first.task) => first.task.as_str(),
        _ => "",
    };
    let name = if task.is_empty() {
        "enqueue".to_string()
    } else {
        format!("enqueue {task}")
    };
    let span = tracing::info_span!(
        "enqueue",
        otel.name = %name,
        otel.kind = "producer",
        task = %task,
        runs = reqs.len(),
    );
    let cx = [span.context(), Span::current().context()]
        .into_iter()
        .find(|cx| cx.span().span_context().is_valid());
    if let Some(cx) = cx {
        let mut fields = HashMap::new();
        TraceContextPropagator::new().inject_context(&cx, &mut fields);
        for r in reqs {
            carry(&mut r.metadata, &fields);
        }
    }
    span
}

/// Puts the trace context `fields` into a run's metadata, beside the keys already there; metadata
/// with a `traceparent` of its own, or that is not an object, is left as it is.
fn carry(metadata: &mut Option<Value>, fields: &HashMap<String, String>) {
    let strings = || {
        fields
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
    };
    match metadata {
        None | Some(Value::Null) => *metadata = Some(Value::Object(strings().collect())),
        Some(Value::Object(m)) if !m.contains_key(TRACEPARENT) => {
            for (k, v) in strings() {
                m.entry(k).or_insert(v);
            }
        }
        Some(_) => {}
    }
}

/// What an enqueue returns, recorded on its span.
pub(crate) trait Enqueued {
    fn record(&self, span: &Span);
}

impl Enqueued for Scheduled {
    fn record(&self, span: &Span) {
        span.set_attribute("run_id", self.run.id.to_string());
        span.set_attribute("created", self.created);
    }
}

impl Enqueued for Vec<Scheduled> {
    fn record(&self, span: &Span) {
        if let [one] = self.as_slice() {
            one.record(span);
        }
    }
}

/// Sends an enqueue inside its span and records the run (or the error) on it.
pub(crate) async fn enqueue<T: Enqueued>(
    span: Span,
    send: impl Future<Output = Result<T>>,
) -> Result<T> {
    let sent = send.instrument(span.clone()).await;
    match &sent {
        Ok(s) => s.record(&span),
        Err(e) => span.set_status(Status::error(e.to_string())),
    }
    sent
}

/// An attempt's span (`run`, as without the feature, named `run <task>` in OpenTelemetry).
pub(crate) fn attempt_span(a: &Assignment) -> Span {
    tracing::info_span!(
        "run",
        task = %a.task,
        run_id = %a.run_id,
        attempt = a.attempt,
        otel.name = %format!("run {}", a.task),
        otel.kind = "consumer",
    )
}

/// Makes the attempt's span a child of the trace context in its run's metadata (or the root of a
/// trace of its own), when an OpenTelemetry layer takes the span. The snapshot read for it gives
/// its steps to the context, so that the first durable step does not read them again.
pub(crate) async fn follow_enqueue(span: &Span, orch: &dyn Orchestrator, ctx: &Context) {
    // A root unless the metadata says otherwise: a run's trace is not the worker's. An error
    // here means that no OpenTelemetry layer takes the span: nothing to read.
    if span.set_parent(opentelemetry::Context::new()).is_err() {
        return;
    }
    let run = match tokio::time::timeout(READ_CONTEXT_TIMEOUT, orch.get_run(ctx.run_id(), None))
        .await
    {
        Ok(Ok(run)) => run,
        Ok(Err(e)) => {
            tracing::debug!(
                run_id = %ctx.run_id(),
                error = %e,
                "reading the run's trace context failed"
            );
            return;
        }
        Err(_) => {
            tracing::debug!(run_id = %ctx.run_id(), "reading the run's trace context timed out");
            return;
        }
    };
    if let Some(Value::Object(m)) = &run.metadata {
        let parent = TraceContextPropagator::new().extract(&Metadata(m));
        if parent.span().span_context().is_valid() {
            let _ = span.set_parent(parent);
        }
    }
    ctx.preload_steps(run.steps, run.replays);
}

/// Reads the trace context from a run's metadata.
struct Metadata<'a>(&'a Map<String, Value>);

impl Extractor for Metadata<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)?.as_str()
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// Records how the attempt ended on its span: `outcome`, and an error status for a failure or a
/// timeout.
pub(crate) fn record_outcome(span: &Span, outcome: &Outcome) {
    let (name, error) = match outcome {
        Outcome::Succeeded { .. } => ("succeeded", None),
        Outcome::Failed { error, .. } => ("failed", Some(error.clone())),
        Outcome::TimedOut => ("timed_out", Some("timed out".to_string())),
        Outcome::Cancelled => ("cancelled", None),
        Outcome::HandedBack => ("handed_back", None),
        Outcome::Suspended { .. } => ("suspended", None),
        Outcome::WaitingForEvent { .. } => ("waiting_for_event", None),
    };
    span.set_attribute("outcome", name);
    if let Some(e) = error {
        span.set_status(Status::error(e));
    }
}

/// Runs a durable step in a `step <name>` span; an error status when it fails.
pub(crate) async fn step<T>(
    ctx: &Context,
    name: &str,
    run: impl Future<Output = Result<T>>,
) -> Result<T> {
    let span = tracing::info_span!(
        "step",
        step = %name,
        run_id = %ctx.run_id(),
        otel.name = %format!("step {name}"),
        replayed = Empty,
    );
    let done = run.instrument(span.clone()).await;
    if let Err(e) = &done {
        span.set_status(Status::error(e.to_string()));
    }
    done
}

/// The current step returned its stored output without running.
pub(crate) fn replayed() {
    Span::current().record("replayed", true);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields() -> HashMap<String, String> {
        HashMap::from([(
            TRACEPARENT.to_string(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_string(),
        )])
    }

    #[test]
    fn the_trace_context_joins_the_users_metadata_without_replacing_a_traceparent() {
        let mut none = None;
        carry(&mut none, &fields());
        assert_eq!(none, Some(json!(fields())));

        let mut mine = Some(json!({"origin": "checkout"}));
        carry(&mut mine, &fields());
        let mut expected = json!(fields());
        expected["origin"] = json!("checkout");
        assert_eq!(mine, Some(expected));

        let own = json!({TRACEPARENT: "00-11111111111111111111111111111111-2222222222222222-01"});
        let mut kept = Some(own.clone());
        carry(&mut kept, &fields());
        assert_eq!(kept, Some(own));

        let mut list = Some(json!([1, 2]));
        carry(&mut list, &fields());
        assert_eq!(list, Some(json!([1, 2])));
    }

    #[test]
    fn a_traceparent_in_the_metadata_is_read_back() {
        let m = json!(fields());
        let cx = TraceContextPropagator::new().extract(&Metadata(m.as_object().unwrap()));
        let sc = cx.span().span_context().clone();
        assert!(sc.is_valid() && sc.is_remote() && sc.is_sampled());
        assert_eq!(
            sc.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
    }
}
