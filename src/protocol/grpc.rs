//! Native gRPC pass-through: HTTP/2 requests with `application/grpc*` go to
//! the method's upstream unchanged — bytes, headers, trailers, every call
//! kind — over the shared channel.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING, UPGRADE};
use http::{Request, Response, Version};
use http_body::{Body, Frame, SizeHint};
use tower::Service;

use super::pacing::{PacedBody, call_deadline};
use crate::admission::Admitted;
use crate::gateway::Context as GatewayContext;
use crate::upstream::metadata::{format_grpc_timeout, parse_grpc_timeout};

/// Connection-level headers that must not be forwarded.
const HOP_BY_HOP: [&str; 3] = ["keep-alive", "proxy-connection", "proxy-authenticate"];

/// A tower service forwarding gRPC requests to their upstream; gRPC-Web
/// reaches it through tonic-web's translation.
#[derive(Debug, Clone)]
pub struct GrpcProxy {
    context: Arc<GatewayContext>,
}

/// The request body on its way upstream. It drops the size hint — a
/// translated grpc-web-text body is shorter than the `content-length` it
/// arrived with, and forwarding that hint makes the backend reset the stream
/// — and keeps the body's own failure (such as malformed base64), which the
/// HTTP/2 client would otherwise turn into an anonymous stream reset.
struct ForwardedBody<B> {
    inner: B,
    failure: Arc<OnceLock<tonic::Status>>,
}

impl GrpcProxy {
    pub fn new(context: Arc<GatewayContext>) -> Self {
        Self { context }
    }
}

impl<B> Service<Request<B>> for GrpcProxy
where
    B: Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let admitted = request.extensions().get::<Arc<Admitted>>().cloned();
        if let Some(admitted) = admitted.clone().filter(|_| super::grpc_json::wanted(&request)) {
            let context = self.context.clone();
            let request = request.map(axum::body::Body::new);
            return Box::pin(async move { Ok(super::grpc_json::serve(context, admitted, request).await) });
        }
        let Some(method) = admitted.as_deref().and_then(Admitted::method) else {
            let status = tonic::Status::unimplemented(format!("unknown method {}", request.uri().path()));
            return Box::pin(async move { Ok(status.into_http()) });
        };
        let mut channel = method.call.channel.clone();
        let (mut parts, body) = request.into_parts();
        for header in [CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING, UPGRADE] {
            parts.headers.remove(header);
        }
        for header in HOP_BY_HOP {
            parts.headers.remove(header);
        }
        // gRPC-Web may arrive over HTTP/1.1; upstream it is always HTTP/2.
        parts.version = Version::HTTP_2;
        let client = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0);
        let authority = parts.uri.authority().map(|a| a.as_str());
        let (forwarded_for, host) = crate::upstream::metadata::forwarded(&parts.headers, client, authority);
        for (name, value) in [("x-forwarded-for", forwarded_for), ("x-forwarded-host", host)] {
            if let Some(value) = value {
                parts.headers.insert(name, value);
            }
        }
        crate::telemetry::otel::inject_headers(&mut parts.headers);
        let timeouts = super::route_timeouts(&self.context, &parts.extensions);
        let streaming = method.descriptor.is_server_streaming() || method.descriptor.is_client_streaming();
        let requested = parts.headers.get("grpc-timeout").and_then(|v| v.to_str().ok()).and_then(parse_grpc_timeout);
        let deadline = call_deadline(requested, &timeouts, streaming, &self.context.deadlines);
        if let Some(deadline) = deadline
            && let Ok(value) = http::HeaderValue::try_from(format_grpc_timeout(deadline))
        {
            // The backend learns the deadline the gateway enforces.
            parts.headers.insert("grpc-timeout", value);
        }
        let deadline = deadline.map(|d| tokio::time::Instant::now() + d);
        let idle = timeouts.stream_idle.filter(|_| method.descriptor.is_server_streaming());
        let (metrics, upstream) = (self.context.metrics.clone(), method.upstream.clone());
        let failure = Arc::new(OnceLock::new());
        let body = ForwardedBody { inner: body, failure: failure.clone() };
        let request = Request::from_parts(parts, tonic::body::Body::new(body));
        Box::pin(async move {
            let call = async {
                std::future::poll_fn(|cx| channel.poll_ready(cx)).await?;
                channel.call(request).await
            };
            // A server stream's backend must answer within the idle timeout
            // as well; a client stream's may hold its headers until the end.
            let first_answer = idle.map(|idle| tokio::time::Instant::now() + idle);
            let response = match deadline.into_iter().chain(first_answer).min() {
                Some(at) => match tokio::time::timeout_at(at, call).await {
                    Ok(response) => response,
                    Err(_) if Some(at) == first_answer && deadline != first_answer => {
                        return Ok(tonic::Status::deadline_exceeded(super::pacing::IDLE_MESSAGE).into_http());
                    }
                    Err(_) => return Ok(tonic::Status::deadline_exceeded("no answer within the deadline").into_http()),
                },
                None => call.await,
            };
            Ok(match response {
                Ok(response) => response.map(|body| {
                    let body = UpstreamEnding { inner: Some(body), metrics, upstream };
                    match (idle, deadline) {
                        (None, None) => tonic::body::Body::new(body),
                        _ => tonic::body::Body::new(PacedBody::new(body, idle, deadline)),
                    }
                }),
                Err(e) => match failure.get() {
                    Some(status) => status.clone().into_http(),
                    // The backend, told the deadline, gave up on it first.
                    None if deadline.is_some_and(|at| tokio::time::Instant::now() >= at) => {
                        tonic::Status::deadline_exceeded("no answer within the deadline").into_http()
                    }
                    None => {
                        metrics.upstream_errors.with_label_values(&[&upstream]).inc();
                        unreachable_upstream(e).into_http()
                    }
                },
            })
        })
    }
}

/// The trailers that end a gRPC response with `code`; `message` is
/// printable ASCII without '%', so valid as a grpc-message as it is.
pub(crate) fn status_trailers(code: tonic::Code, message: &'static str) -> http::HeaderMap {
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from(code as i32));
    trailers.insert("grpc-message", http::HeaderValue::from_static(message));
    trailers
}

fn unreachable_upstream(error: Box<dyn std::error::Error + Send + Sync>) -> tonic::Status {
    tracing::warn!(error = %crate::error::describe(error.as_ref()), "gRPC pass-through could not reach the upstream");
    let overloaded = error
        .downcast_ref::<tonic::Status>()
        .is_some_and(|s| crate::upstream::retry::Failure::of(s) == Some(crate::upstream::retry::Failure::Overloaded));
    tonic::Status::unavailable(if overloaded { "upstream overloaded" } else { "upstream unavailable" })
}

/// A response body from the backend that ends with `grpc-status: 14`
/// trailers when the backend's stream breaks (the backend died, the
/// connection dropped): a reset would reach the client as INTERNAL, and
/// tonic-web would cut a gRPC-Web stream without its trailer frame.
struct UpstreamEnding {
    inner: Option<tonic::body::Body>,
    metrics: Arc<crate::telemetry::metrics::Metrics>,
    upstream: String,
}

impl Body for UpstreamEnding {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<bytes::Bytes>, tonic::Status>>> {
        let Some(inner) = self.inner.as_mut() else { return Poll::Ready(None) };
        match std::task::ready!(Pin::new(inner).poll_frame(cx)) {
            Some(Err(error)) => {
                self.inner = None;
                tracing::warn!(%error, upstream = %self.upstream, "the upstream's gRPC stream broke");
                self.metrics.upstream_errors.with_label_values(&[&self.upstream]).inc();
                Poll::Ready(Some(Ok(Frame::trailers(status_trailers(
                    tonic::Code::Unavailable,
                    "upstream unavailable",
                )))))
            }
            other => Poll::Ready(other),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map(Body::size_hint).unwrap_or_default()
    }
}

impl<B> Body for ForwardedBody<B>
where
    B: Body + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = B::Data;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, tonic::Status>>> {
        Poll::Ready(match std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
            Some(Ok(frame)) => Some(Ok(frame)),
            Some(Err(e)) => {
                let status = tonic::Status::from_error(e.into());
                let _ = self.failure.set(status.clone());
                Some(Err(status))
            }
            None => None,
        })
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
