//! Protocols spoken on the public listener. A request is classified once by
//! its content type and path, then handled by one module per protocol.

pub mod connect;
pub mod grpc;
pub mod grpc_web;
pub mod pacing;
pub mod rest;
pub mod websocket;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response};

use futures_util::FutureExt;
use http_body_util::BodyExt;
use std::panic::AssertUnwindSafe;

use crate::error::{Error, caused_by};
use crate::gateway::Context;
use crate::telemetry::access::trace_of;
use crate::telemetry::metrics::Metrics;

const DOCS_PAGE: &str = include_str!("../openapi/docs.html");

/// Dispatches one request to its protocol.
pub async fn dispatch(context: Arc<Context>, mut request: Request<Body>) -> Response<Body> {
    if context.public_health && request.method() == Method::GET {
        match request.uri().path() {
            "/healthz" => return json_response(http::StatusCode::OK, &serde_json::json!({"status": "ok"})),
            "/readyz" => {
                let (status, body) = crate::readiness::report(&context).await;
                return json_response(status, &body);
            }
            _ => {}
        }
    }
    if context.openapi && request.method() == Method::GET {
        match request.uri().path() {
            "/openapi.json" => {
                let snapshot = context.registry.snapshot_for(request.extensions_mut());
                let version = context.openapi_version.clone();
                let shown = context.clone();
                let success = move |selectors: [Option<&str>; 3]| {
                    shown.responses.for_route(selectors).map(|rule| (rule.status, rule.location.is_some()))
                };
                let rendered = tokio::task::spawn_blocking(move || snapshot.openapi(&version, &success)).await;
                return document(rendered.unwrap_or_default(), "application/json");
            }
            "/docs" => {
                return document(Bytes::from_static(DOCS_PAGE.as_bytes()), "text/html; charset=utf-8");
            }
            _ => {}
        }
    }
    let protocol = classify(&request);
    let metrics = context.metrics.clone();
    // Only the content type decides an error's form; kept for the panic path.
    let content_type = request.headers().get(CONTENT_TYPE).cloned();
    match AssertUnwindSafe(serve(protocol, context, request)).catch_unwind().await {
        Ok(response) => response.map(|inner| Body::new(Guarded { inner: Some(inner), protocol, metrics })),
        Err(panic) => {
            panicked(&metrics, panic.as_ref());
            let headers =
                content_type.map(|value| http::HeaderMap::from_iter([(CONTENT_TYPE, value)])).unwrap_or_default();
            render(protocol, &Error::gateway(tonic::Code::Internal, "the request handler panicked"), &headers)
        }
    }
}

/// The last resort against a bug: a panic is logged once, counted, and
/// answered 500 / INTERNAL in the protocol's own form instead of dropping
/// the connection or hanging a stream.
fn panicked(metrics: &Metrics, panic: &(dyn std::any::Any + Send)) {
    let what = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    tracing::error!(panic = what, "a request handler panicked");
    metrics.panics.inc();
}

async fn serve(protocol: Protocol, context: Arc<Context>, mut request: Request<Body>) -> Response<Body> {
    let trace = trace_of(request.extensions());
    trace.protocol(protocol.name());
    if matches!(protocol, Protocol::Grpc | Protocol::GrpcWeb | Protocol::Connect) {
        // These name the method in the path; a known one is a bounded label.
        let snapshot = context.registry.snapshot_for(request.extensions_mut());
        if let Some(method) = snapshot.rpc_index.get(request.uri().path()).and_then(|&i| snapshot.methods.get(i)) {
            trace.route(None, method.descriptor.full_name());
        }
    }
    match protocol {
        Protocol::Grpc => grpc(context, request).await,
        Protocol::GrpcWeb => grpc_web::serve(context, request).await,
        Protocol::Connect => connect::serve(&context, request).await,
        Protocol::WebSocket => websocket::serve(context, request).await,
        Protocol::Rest => {
            let snapshot = context.registry.snapshot_for(request.extensions_mut());
            let planned = context.composites.planned(&snapshot);
            match planned.as_ref().and_then(|p| p.find(request.method(), request.uri().path())) {
                Some(found) => rest::composite::serve(&context, &snapshot, found, request).await,
                None => rest::serve(&context, request).await,
            }
        }
    }
}

/// A response body whose panics end it in the protocol's form: gRPC kinds
/// get `grpc-status: 13` trailers, others an aborted body.
struct Guarded {
    inner: Option<Body>,
    protocol: Protocol,
    metrics: Arc<Metrics>,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else { return std::task::Poll::Ready(None) };
        match std::panic::catch_unwind(AssertUnwindSafe(|| std::pin::Pin::new(inner).poll_frame(cx))) {
            Ok(polled) => polled,
            Err(panic) => {
                this.inner = None;
                panicked(&this.metrics, panic.as_ref());
                std::task::Poll::Ready(Some(match this.protocol {
                    Protocol::Grpc | Protocol::GrpcWeb => {
                        Ok(http_body::Frame::trailers(grpc::status_trailers(tonic::Code::Internal, "internal error")))
                    }
                    _ => Err(axum::Error::new("the response body panicked")),
                }))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.as_ref().map(http_body::Body::size_hint).unwrap_or_default()
    }
}

/// The protocols spoken on the public listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    GrpcWeb,
    Connect,
    WebSocket,
    Rest,
}

impl Protocol {
    /// The name in logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::GrpcWeb => "grpc-web",
            Self::Connect => "connect",
            Self::WebSocket => "websocket",
            Self::Rest => "rest",
        }
    }
}

/// Classifies a request once, by its content type and Connect's markers
/// (the `Connect-Protocol-Version` header, a `connect+` streaming type, or
/// `connect=v1` on a GET).
pub fn classify<B>(request: &Request<B>) -> Protocol {
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim_start()
        .to_ascii_lowercase();
    if websocket::is_upgrade(request) {
        Protocol::WebSocket
    } else if content_type.starts_with("application/grpc-web") {
        Protocol::GrpcWeb
    } else if content_type.starts_with("application/grpc") {
        Protocol::Grpc
    } else if content_type.starts_with("application/connect+")
        || request.headers().contains_key("connect-protocol-version")
        || request.method() == Method::GET
            && request.uri().query().is_some_and(|q| q.split('&').any(|p| p == "connect=v1"))
    {
        Protocol::Connect
    } else {
        Protocol::Rest
    }
}

async fn grpc(context: Arc<Context>, request: Request<Body>) -> Response<Body> {
    use tower::ServiceExt;
    if request.version() != http::Version::HTTP_2 {
        let status = tonic::Status::internal("gRPC needs HTTP/2 (h2c prior knowledge); use gRPC-Web over HTTP/1.1");
        return status.into_http();
    }
    let proxy = grpc::GrpcProxy::new(context);
    match proxy.oneshot(request).await {
        Ok(response) => response.map(Body::new),
        Err(never) => match never {},
    }
}

/// Counts a failure to reach the upstream in the metrics.
pub(crate) fn counted<T>(context: &Context, upstream: &str, result: Result<T, Error>) -> Result<T, Error> {
    if let Err(error) = &result
        && error.origin == crate::error::Origin::Gateway
        && error.code == tonic::Code::Unavailable
    {
        context.metrics.upstream_errors.with_label_values(&[upstream]).inc();
    }
    result
}

/// A method's timeouts (rules by method, service, or the REST template
/// the request came by).
pub(crate) fn route_timeouts(
    context: &Context,
    method: &crate::registry::MethodEntry,
    template: Option<&str>,
) -> crate::config::RouteTimeouts {
    let service = method.descriptor.parent_service();
    context.timeouts.for_route([Some(method.descriptor.full_name()), Some(service.full_name()), template])
}

/// A refusal by a policy layer, in the protocol's own form: a trailers-only
/// gRPC status, Connect's error JSON, or Status JSON.
pub fn refusal<B>(request: &Request<B>, error: Error) -> Response<Body> {
    trace_of(request.extensions()).grpc_code(error.code);
    render(classify(request), &error, request.headers())
}

/// On HTTP/1.1, a request body dropped unread — a policy refusal, or an
/// error answered before the body (unknown method, no route) — is read to
/// its end in the background (at most `DRAIN_LIMIT` bytes within
/// `DRAIN_TIMEOUT`, else the connection closes), so a client still writing
/// it reads the answer instead of failing with EPIPE (connect-node reported
/// "Internal: write EPIPE" for a 401). The limits layer, the first that can
/// refuse, installs it.
pub fn drained_when_dropped(request: Request<Body>) -> Request<Body> {
    if request.version() > http::Version::HTTP_11 || http_body::Body::is_end_stream(request.body()) {
        return request;
    }
    request.map(|body| Body::new(DrainOnDrop { inner: Some(body) }))
}

struct DrainOnDrop {
    inner: Option<Body>,
}

impl http_body::Body for DrainOnDrop {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let Some(inner) = self.inner.as_mut() else { return std::task::Poll::Ready(None) };
        let polled = std::pin::Pin::new(inner).poll_frame(cx);
        if matches!(polled, std::task::Poll::Ready(None | Some(Err(_)))) {
            self.inner = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.as_ref().map(http_body::Body::size_hint).unwrap_or_default()
    }
}

impl Drop for DrainOnDrop {
    fn drop(&mut self) {
        let Some(body) = self.inner.take().filter(|b| !http_body::Body::is_end_stream(b)) else { return };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain(body)).await;
            });
        }
    }
}

/// Most of an unread body drained, and for how long.
const DRAIN_LIMIT: usize = 4 * 1024 * 1024;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Reads a body to its end, or until it is longer than `DRAIN_LIMIT`
/// (then it is dropped and the connection closes).
async fn drain(mut body: Body) {
    let mut read = 0;
    while let Some(Ok(frame)) = body.frame().await {
        read += frame.data_ref().map_or(0, Bytes::len);
        if read > DRAIN_LIMIT {
            return;
        }
    }
}

/// An error answered before the protocol handler took the request.
pub fn render(protocol: Protocol, error: &Error, headers: &http::HeaderMap) -> Response<Body> {
    match protocol {
        Protocol::Grpc | Protocol::GrpcWeb => tonic::Status::new(error.code, error.message.clone()).into_http(),
        Protocol::Connect => connect::error_response(error, headers),
        _ => rest::error_response(error, None),
    }
}

/// The HTTP headers an error carries as data: `Allow` of a 405,
/// `Retry-After` of an upstream at its call limit.
pub(crate) fn error_headers(error: &Error, headers: &mut http::HeaderMap) {
    if let Some(allow) = error.allow.as_deref().and_then(|a| http::HeaderValue::try_from(a).ok()) {
        headers.insert(http::header::ALLOW, allow);
    }
    if let Some(seconds) = error.retry_after {
        headers.insert(http::header::RETRY_AFTER, http::HeaderValue::from(seconds));
    }
}

/// Resolves with the error a request-body reader reports, at most once;
/// never when the reader finished cleanly (its sender dropped).
pub(crate) async fn aborted(signal: &mut Option<tokio::sync::oneshot::Receiver<Error>>) -> Error {
    if let Some(receiver) = signal.as_mut() {
        let outcome = receiver.await;
        *signal = None;
        if let Ok(error) = outcome {
            return error;
        }
    }
    std::future::pending().await
}

/// Collects a whole request body under the size limit.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, Error> {
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if caused_by::<http_body_util::LengthLimitError>(e.as_ref()) => Err(Error::payload_too_large(limit)),
        Err(e) if caused_by::<crate::middleware::limits::BodyTimeout>(e.as_ref()) => {
            let mut error = Error::client(tonic::Code::DeadlineExceeded, e.to_string());
            error.http_status = Some(http::StatusCode::REQUEST_TIMEOUT);
            Err(error)
        }
        Err(e) => Err(Error::bad_request(format!("cannot read the request body: {e}"))),
    }
}

fn json_response(status: http::StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut response = document(Bytes::from(body.to_string()), "application/json");
    *response.status_mut() = status;
    response
}

fn document(body: Bytes, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
