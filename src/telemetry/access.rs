//! One access-log line and one set of metrics per request, whatever the
//! protocol. Handlers note what only they know (route, method, gRPC code,
//! time spent transcoding and waiting on the backend) in the request's
//! `Trace`; the line is written when the response body is done — finished or
//! dropped by a client that went away — so streams are measured whole.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use bytes::Bytes;
use http::Response;
use http_body::{Frame, SizeHint};

use super::metrics::Metrics;

/// What a request did, filled in as it is served.
#[derive(Debug, Default)]
pub struct Trace {
    fields: Mutex<Fields>,
}

#[derive(Debug, Default, Clone)]
struct Fields {
    protocol: &'static str,
    consumer: Option<String>,
    route: Option<String>,
    rpc: Option<String>,
    grpc_code: Option<i32>,
    transcode: Duration,
    backend: Duration,
    /// A composite's calls: `name=code:µs` each.
    calls: Option<String>,
}

/// The response body, observed to its end.
struct Observed {
    inner: Body,
    bytes_out: u64,
    /// The body was read to its end (else the client left before it).
    ended: bool,
    record: Option<Record>,
}

/// Everything the log line needs besides the trace.
struct Record {
    metrics: Arc<Metrics>,
    trace: Arc<Trace>,
    started: Instant,
    request_id: String,
    client: Option<SocketAddr>,
    method: http::Method,
    path: String,
    status: u16,
    bytes_in: Arc<AtomicU64>,
    /// The request's server span, told the outcome at the end.
    span: tracing::Span,
}

/// The request body, counted as it is read.
struct Counted {
    inner: Body,
    bytes: Arc<AtomicU64>,
}

impl Trace {
    fn update(&self, change: impl FnOnce(&mut Fields)) {
        if let Ok(mut fields) = self.fields.lock() {
            change(&mut fields);
        }
    }

    pub fn protocol(&self, protocol: &'static str) {
        self.update(|f| f.protocol = protocol);
    }

    pub fn route(&self, route: Option<&str>, rpc: &str) {
        self.update(|f| {
            f.route = route.map(str::to_string);
            f.rpc = Some(rpc.to_string());
        });
    }

    /// Who called (API key consumer or JWT subject), once authenticated.
    pub fn consumer(&self, consumer: &str) {
        self.update(|f| f.consumer = Some(consumer.to_string()));
    }

    pub fn grpc_code(&self, code: tonic::Code) {
        self.update(|f| f.grpc_code = Some(code as i32));
    }

    pub fn transcoding(&self, spent: Duration) {
        self.update(|f| f.transcode += spent);
    }

    pub fn backend(&self, spent: Duration) {
        self.update(|f| f.backend += spent);
    }

    /// A composite's calls, as its log line lists them.
    pub fn calls(&self, calls: String) {
        self.update(|f| f.calls = Some(calls));
    }

    fn snapshot(&self) -> Fields {
        self.fields.lock().map(|f| f.clone()).unwrap_or_default()
    }
}

/// The request's trace (a detached one where the layer is not installed).
pub fn trace_of(extensions: &http::Extensions) -> Arc<Trace> {
    extensions.get::<Arc<Trace>>().cloned().unwrap_or_default()
}

impl Trace {
    /// Runs `work`, counting its time as transcoding.
    pub fn time_transcoding<T>(&self, work: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let result = work();
        self.transcoding(started.elapsed());
        result
    }

    /// Awaits `call`, counting its time as waiting on the backend.
    pub async fn time_backend<T>(&self, call: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let result = call.await;
        self.backend(started.elapsed());
        result
    }
}

/// The tower layer's function: starts the trace, counts bytes both ways.
pub async fn observe(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response<Body> {
    let started = Instant::now();
    let trace = Arc::new(Trace::default());
    let bytes_in = Arc::new(AtomicU64::new(0));
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(trace.clone());
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let record = Record {
        metrics: metrics.clone(),
        trace,
        started,
        request_id: header("x-request-id"),
        client: parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0),
        method: parts.method.clone(),
        path: parts.uri.path().to_string(),
        status: 0,
        bytes_in: bytes_in.clone(),
        span: tracing::Span::current(),
    };
    let body = Body::new(Counted { inner: body, bytes: bytes_in });
    metrics.in_flight.inc();
    // A client that gives up before the answer drops this future: the guard
    // still ends the request, as cancelled, in the log and the metrics.
    let mut unanswered = Unanswered(Some(record));
    let response = next.run(Request::from_parts(parts, body)).await;
    let Some(record) = unanswered.0.take() else { return response };
    let (parts, body) = response.into_parts();
    if let Some(code) = parts.headers.get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()) {
        record.trace.update(|f| f.grpc_code = f.grpc_code.or(Some(code)));
    }
    let record = Record { status: parts.status.as_u16(), ..record };
    let observed = Observed { inner: body, bytes_out: 0, ended: false, record: Some(record) };
    Response::from_parts(parts, Body::new(observed))
}

/// A request whose response has not been produced yet.
struct Unanswered(Option<Record>);

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(record) = self.0.take() {
            record.cancelled(0);
        }
    }
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl http_body::Body for Observed {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            self.ended = true;
        }
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.bytes_out += data.len() as u64;
            }
            let code = frame
                .trailers_ref()
                .and_then(|t| t.get("grpc-status"))
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok());
            if let (Some(code), Some(record)) = (code, &self.record) {
                record.trace.update(|f| f.grpc_code = Some(code));
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        if let Some(record) = self.record.take() {
            if self.ended || http_body::Body::is_end_stream(&self.inner) {
                record.finish(self.bytes_out);
            } else {
                record.cancelled(self.bytes_out);
            }
        }
    }
}

impl Record {
    /// Ends a request the client gave up on: 499 / CANCELLED, as nginx and
    /// Envoy log it.
    fn cancelled(mut self, bytes_out: u64) {
        self.status = 499;
        self.trace.update(|f| f.grpc_code = Some(tonic::Code::Cancelled as i32));
        self.finish(bytes_out);
    }

    /// Writes the access-log line and records the metrics.
    fn finish(self, bytes_out: u64) {
        let fields = self.trace.snapshot();
        let total = self.started.elapsed();
        let bytes_in = self.bytes_in.load(Ordering::Relaxed);
        let protocol = if fields.protocol.is_empty() { "other" } else { fields.protocol };
        let rpc = fields.rpc.as_deref().unwrap_or("");
        let route = fields.route.as_deref().unwrap_or("");
        let grpc_code = fields.grpc_code.or((self.status < 400).then_some(0));
        let code_label = grpc_code.map_or_else(|| "none".to_string(), |c| c.to_string());
        let metrics = &self.metrics;
        metrics.in_flight.dec();
        metrics.requests.with_label_values(&[protocol, route, rpc, &self.status.to_string(), &code_label]).inc();
        metrics.duration.with_label_values(&[protocol, rpc]).observe(total.as_secs_f64());
        metrics.transcode.with_label_values(&[protocol, rpc]).observe(fields.transcode.as_secs_f64());
        metrics.backend.with_label_values(&[protocol, rpc]).observe(fields.backend.as_secs_f64());
        metrics.request_bytes.with_label_values(&[protocol, rpc]).observe(bytes_in as f64);
        metrics.response_bytes.with_label_values(&[protocol, rpc]).observe(bytes_out as f64);
        super::otel::record_outcome(&self.span, &self.method, route, rpc, self.status, grpc_code);
        tracing::info!(
            target: "protogate::access",
            request_id = %self.request_id,
            client = %self.client.map(|c| c.ip().to_string()).unwrap_or_default(),
            consumer = fields.consumer.as_deref().unwrap_or(""),
            method = %self.method,
            path = %self.path,
            route,
            rpc,
            protocol,
            status = self.status,
            grpc_code = code_label,
            bytes_in,
            bytes_out,
            total_us = total.as_micros() as u64,
            transcode_us = fields.transcode.as_micros() as u64,
            backend_us = fields.backend.as_micros() as u64,
            calls = fields.calls.as_deref(),
            "request"
        );
    }
}
