//! OpenTelemetry tracing: a server span per request (the parent taken from
//! the client's W3C `traceparent` / `tracestate`), a client span per
//! upstream call with its context injected into the call's metadata, and
//! export over OTLP/gRPC in batches. Without an endpoint nothing is exported
//! and a client's trace context passes through to the backend unchanged.

use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderMap, HeaderName, HeaderValue, Request};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tonic::metadata::MetadataMap;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::TracingConfig;

/// Set once spans are exported; until then nothing is extracted or injected.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// The W3C trace-context headers.
pub const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

/// Keeps the exporter; `shutdown` flushes the spans still queued.
#[derive(Debug)]
pub struct Exporter(SdkTracerProvider);

impl Exporter {
    pub fn shutdown(self) {
        if let Err(e) = self.0.shutdown() {
            tracing::warn!(error = %e, "flushing the last spans failed");
        }
    }
}

/// Builds the OTLP exporter and the tracing layer that feeds it; `None`
/// when no endpoint is configured. Must run inside the tokio runtime.
pub fn layer<S>(config: &TracingConfig) -> Result<Option<(impl tracing_subscriber::Layer<S>, Exporter)>, String>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let Some(endpoint) = &config.otlp_endpoint else {
        return Ok(None);
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.clone())
        .with_timeout(config.export_timeout)
        .build()
        .map_err(|e| format!("tracing.otlp_endpoint {endpoint}: {e}"))?;
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(config.service_name.clone()).build();
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio)));
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler)
        .with_resource(resource)
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let tracer = provider.tracer("protogate");
    EXPORTING.store(true, Ordering::Relaxed);
    let filter = tracing_subscriber::filter::filter_fn(|meta| meta.target().starts_with("protogate::otel"));
    let layer = tracing_subscriber::Layer::with_filter(tracing_opentelemetry::layer().with_tracer(tracer), filter);
    Ok(Some((layer, Exporter(provider))))
}

/// The server span of one request, child of the client's trace context.
/// Fields the handlers learn later are recorded by the access log.
pub fn request_span<B>(request: &Request<B>) -> Span {
    let id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !EXPORTING.load(Ordering::Relaxed) {
        // Without an exporter the span only gives log lines their request
        // id: every field of a span is formatted by the log layer when it
        // is created or recorded, which cost 15 % of a small GET's CPU.
        return tracing::info_span!(target: "protogate::request", "request", request_id = id);
    }
    let span = tracing::info_span!(
        target: "protogate::otel",
        "request",
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %request.method(),
        url.path = request.uri().path(),
        http.route = Empty,
        rpc.system = Empty,
        rpc.service = Empty,
        rpc.method = Empty,
        http.response.status_code = Empty,
        rpc.grpc.status_code = Empty,
        request_id = id,
    );
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(request.headers())));
    let _ = span.set_parent(parent);
    span
}

/// Records what the request turned out to be on its server span.
pub fn record_outcome(span: &Span, method: &http::Method, route: &str, rpc: &str, status: u16, grpc_code: Option<i32>) {
    // The access line has all of this; only an exported span needs it.
    if !EXPORTING.load(Ordering::Relaxed) {
        return;
    }
    // Started spans are renamed through the OpenTelemetry API; a recorded
    // `otel.name` only reaches spans not started yet.
    let name = match (route, rpc) {
        ("", "") => format!("{method}"),
        ("", rpc) => rpc.to_string(),
        (route, _) => format!("{method} {route}"),
    };
    span.context().span().update_name(name);
    if !route.is_empty() {
        span.record("http.route", route);
    }
    if let Some((service, method)) = rpc.rsplit_once('.') {
        span.record("rpc.system", "grpc");
        span.record("rpc.service", service);
        span.record("rpc.method", method);
    }
    span.record("http.response.status_code", status);
    if let Some(code) = grpc_code {
        span.record("rpc.grpc.status_code", code);
    }
    if status >= 500 {
        span.record("otel.status_code", "error");
    }
}

/// A client span for one upstream call; its context goes out in `metadata`.
pub fn upstream_span(path: &str, metadata: &mut MetadataMap) -> Span {
    if !EXPORTING.load(Ordering::Relaxed) {
        return Span::none();
    }
    let name = path.trim_start_matches('/');
    let (service, method) = name.split_once('/').unwrap_or((name, ""));
    let span = tracing::info_span!(
        target: "protogate::otel",
        "upstream",
        otel.name = name,
        otel.kind = "client",
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
    );
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut Metadata(metadata)));
    span
}

/// For gRPC pass-through: the gateway's span context replaces the client's
/// in the forwarded headers when spans are exported.
pub fn inject_headers(headers: &mut HeaderMap) {
    if EXPORTING.load(Ordering::Relaxed) {
        let context = Span::current().context();
        opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut HeadersMut(headers)));
    }
}

struct Headers<'a>(&'a HeaderMap);
struct HeadersMut<'a>(&'a mut HeaderMap);
struct Metadata<'a>(&'a mut MetadataMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(key), HeaderValue::try_from(value)) {
            self.0.insert(name, value);
        }
    }
}

impl Injector for Metadata<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::AsciiMetadataKey::from_bytes(key.as_bytes()),
            value.parse::<tonic::metadata::AsciiMetadataValue>(),
        ) {
            self.0.insert(key, value);
        }
    }
}
