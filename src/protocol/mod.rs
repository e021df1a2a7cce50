//! Protocols spoken on the public listener, one module each. The front door
//! admits a request (`admission`) and hands it here; each protocol's
//! renderer gives every error its protocol's form.

pub mod connect;
mod envelope;
pub mod grpc;
mod grpc_json;
pub mod grpc_web;
mod inbound;
pub mod pacing;
pub mod rest;
pub mod websocket;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Request, Response};

use futures_util::FutureExt;
use http_body_util::BodyExt;
use std::panic::AssertUnwindSafe;

use crate::admission::{Admitted, Protocol, Target};
use crate::error::{Error, caused_by};
use crate::gateway::Context;
use crate::gateway::policies::RoutePolicies;
use crate::telemetry::metrics::Metrics;

/// Dispatches an admitted request to its protocol's handler.
pub async fn dispatch(context: Arc<Context>, admitted: Arc<Admitted>, request: Request<Body>) -> Response<Body> {
    let protocol = admitted.protocol;
    let metrics = context.metrics.clone();
    // Only the content type decides an error's form; kept for the panic path.
    let content_type = request.headers().get(CONTENT_TYPE).cloned();
    match AssertUnwindSafe(serve(context, admitted, request)).catch_unwind().await {
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

async fn serve(context: Arc<Context>, admitted: Arc<Admitted>, request: Request<Body>) -> Response<Body> {
    if let Target::Own(service) = admitted.target {
        if admitted.protocol == Protocol::Grpc && request.version() != http::Version::HTTP_2 {
            return needs_http2();
        }
        return context.own_servers.serve(service, admitted.protocol, &admitted.snapshot, request).await;
    }
    // Each protocol's future in its own allocation, sized for that
    // protocol: inline, every request's future was the largest of them
    // (18 KB), copied whole each time a layer above moved it.
    match admitted.protocol {
        Protocol::Grpc => Box::pin(grpc(context, request)).await,
        Protocol::GrpcWeb => Box::pin(grpc_web::serve(context, request)).await,
        Protocol::Connect => Box::pin(connect::serve(&context, &admitted, request)).await,
        Protocol::WebSocket => Box::pin(websocket::serve(context, &admitted, request)).await,
        Protocol::Rest => match admitted.composite() {
            Some((plan, variables)) => {
                Box::pin(rest::composite::serve(&context, &admitted, plan, variables, request)).await
            }
            None => Box::pin(rest::serve(&context, &admitted, request)).await,
        },
    }
}

/// A response body whose panics end it in the protocol's form: gRPC kinds
/// get `grpc-status: 13` trailers, others an aborted body. It ends once:
/// polled again after its end it stays ended.
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
            // Fused: layers outside (compression) poll again after the end,
            // which a stream-backed body must not see.
            Ok(std::task::Poll::Ready(None)) => {
                this.inner = None;
                std::task::Poll::Ready(None)
            }
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

async fn grpc(context: Arc<Context>, request: Request<Body>) -> Response<Body> {
    use tower::ServiceExt;
    if request.version() != http::Version::HTTP_2 {
        return needs_http2();
    }
    let proxy = grpc::GrpcProxy::new(context);
    match proxy.oneshot(request).await {
        Ok(response) => response.map(Body::new),
        Err(never) => match never {},
    }
}

fn needs_http2() -> Response<Body> {
    tonic::Status::internal("gRPC needs HTTP/2 (h2c prior knowledge); use gRPC-Web over HTTP/1.1").into_http()
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

/// The policies the front door resolved for this request; outside the
/// front door (a handler driven directly) the defaults.
pub(crate) fn route_policies(context: &Context, extensions: &http::Extensions) -> Arc<RoutePolicies> {
    match extensions.get::<Arc<RoutePolicies>>() {
        Some(route) => route.clone(),
        None => Arc::new(RoutePolicies { timeouts: context.timeouts.default, ..RoutePolicies::default() }),
    }
}

/// The request's metadata for the backend, as `carrier` reads it from the
/// headers, with the client's address and authority forwarded.
pub(crate) fn request_metadata(
    parts: &http::request::Parts,
    carrier: crate::upstream::metadata::Carrier,
) -> Result<tonic::metadata::MetadataMap, Error> {
    let client = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0);
    let authority = parts.uri.authority().map(|a| a.as_str());
    crate::upstream::metadata::from_http(&parts.headers, client, authority, carrier).map_err(Error::bad_request)
}

/// The request's route timeouts (rules by method, service, or the REST
/// template it came by), as the front door resolved them.
pub(crate) fn route_timeouts(context: &Context, extensions: &http::Extensions) -> crate::config::RouteTimeouts {
    match extensions.get::<Arc<RoutePolicies>>() {
        Some(route) => route.timeouts,
        None => context.timeouts.default,
    }
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
        Protocol::Grpc | Protocol::GrpcWeb => {
            let mut response = tonic::Status::new(error.code, error.message.clone()).into_http();
            error_headers(error, response.headers_mut());
            if protocol == Protocol::GrpcWeb {
                // Trailers-only, in the gRPC-Web variant the client spoke.
                let asked = headers.get(CONTENT_TYPE).filter(|v| v.as_bytes().starts_with(b"application/grpc-web"));
                let web = asked.cloned().unwrap_or(http::HeaderValue::from_static("application/grpc-web+proto"));
                response.headers_mut().insert(CONTENT_TYPE, web);
            }
            response
        }
        Protocol::Connect => connect::error_response(error, headers),
        _ => rest::error_response(error, None),
    }
}

/// The HTTP headers an error carries as data: `Retry-After` (an upstream
/// or the gateway at its limit, a rate limit), and its other headers.
pub(crate) fn error_headers(error: &Error, headers: &mut http::HeaderMap) {
    if let Some(seconds) = error.retry_after {
        headers.insert(http::header::RETRY_AFTER, http::HeaderValue::from(seconds));
    }
    for (name, value) in error.headers.iter().flat_map(|extra| extra.iter()) {
        headers.insert(name, value.clone());
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
        Err(e) => Err(body_error(e.as_ref(), limit)),
    }
}

/// A failure reading a request body (under a `Limited` of `limit` bytes)
/// as the client's error: over the limit, too slow, or cut off.
pub(crate) fn body_error(error: &(dyn std::error::Error + 'static), limit: usize) -> Error {
    if caused_by::<http_body_util::LengthLimitError>(error) {
        return Error::payload_too_large(limit);
    }
    if caused_by::<crate::middleware::limits::BodyTimeout>(error) {
        let mut timeout = Error::client(tonic::Code::DeadlineExceeded, error.to_string());
        timeout.http_status = Some(http::StatusCode::REQUEST_TIMEOUT);
        return timeout;
    }
    Error::bad_request(format!("cannot read the request body: {error}"))
}

#[cfg(test)]
mod tests;
