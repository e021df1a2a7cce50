//! gRPC and gRPC-Web clients on the JSON codec (`application/grpc+json`,
//! `application/grpc-web+json`) in front of a backend that speaks only
//! protobuf: the framing, metadata, deadline and trailers stay gRPC's, and
//! each message is transcoded on its way — requests as they arrive, answers
//! as the backend writes them. Every call kind takes one path: a stream of
//! requests and a stream of answers, which is what unary calls are on the
//! wire too.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::Frame;
use tokio::time::Instant;
use tonic::Code;

use super::connect::compression::Encoding;
use super::envelope::{self, Limits};
use super::pacing::{call_deadline, next_answer, requested_timeout, within};
use super::{aborted, counted, inbound, request_metadata, route_timeouts};
use crate::admission::Admitted;
use crate::error::{BACKEND_STATUS, Error, Origin};
use crate::gateway::Context;
use crate::telemetry::access::trace_of;
use crate::telemetry::metrics::{Direction, Metrics};
use crate::transcode::response::WireRenderer;
use crate::upstream::metadata::Carrier;

const GRPC_JSON: &str = "application/grpc+json";

/// Marks a gRPC-Web `+json` request handed to tonic-web as `+proto`, whose
/// framing it translates; the codec is this module's.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JsonCodec;

/// Whether the request's messages are JSON.
pub(super) fn wanted<B>(request: &Request<B>) -> bool {
    request.extensions().get::<JsonCodec>().is_some()
        || request.headers().get(CONTENT_TYPE).is_some_and(|value| {
            let essence = value.to_str().unwrap_or_default().split(';').next().unwrap_or_default();
            essence.trim().eq_ignore_ascii_case(GRPC_JSON)
        })
}

/// Serves one JSON-codec call; every failure ends it with gRPC trailers.
pub(super) async fn serve(
    context: Arc<Context>,
    admitted: Arc<Admitted>,
    request: Request<Body>,
) -> Response<tonic::body::Body> {
    match call(&context, &admitted, request).await {
        Ok(response) => response,
        Err(error) => {
            let mut response = Response::new(tonic::body::Body::empty());
            *response.headers_mut() = trailers_of(&error);
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(GRPC_JSON));
            super::error_headers(&error, response.headers_mut());
            response
        }
    }
}

async fn call(
    context: &Context,
    admitted: &Admitted,
    request: Request<Body>,
) -> Result<Response<tonic::body::Body>, Error> {
    let method = admitted
        .method()
        .ok_or_else(|| Error::client(Code::Unimplemented, format!("unknown method {}", request.uri().path())))?;
    let snapshot = &admitted.snapshot;
    let (parts, body) = request.into_parts();
    let encoding = message_encoding(&parts.headers, context)?;
    let limits = Limits {
        message: method.call.max_message_size,
        inflated: context.max_body_size,
        encoding_header: "grpc-encoding",
    };
    let build = inbound::json_to_wire(context, snapshot, method);
    let (messages, abort) = inbound::messages(envelope::envelopes(body, limits, encoding).boxed(), build);
    let mut abort = Some(abort);
    let mut request = tonic::Request::new(messages);
    *request.metadata_mut() = request_metadata(&parts, Carrier::Plain { skipped: &[] })?;
    let streaming = method.descriptor.is_server_streaming() || method.descriptor.is_client_streaming();
    let requested = requested_timeout(&parts.headers)?;
    let timeouts = route_timeouts(context, &parts.extensions);
    let timeout = call_deadline(requested, &timeouts, streaming, &context.deadlines);
    if let Some(timeout) = timeout {
        request.set_timeout(timeout);
    }
    let trace = trace_of(&parts.extensions);
    let started = tokio::select! {
        started = trace.time_backend(within(timeout, method.call.streaming(request))) => started,
        error = aborted(&mut abort) => Err(error),
    };
    let (headers, messages, _) = counted(context, &method.upstream, started)?.into_parts();
    let output = method.call.output.clone();
    let state = Answers {
        messages,
        render: WireRenderer::new(snapshot.plans.clone(), method.output_plan, output, &context.json),
        metrics: context.metrics.clone(),
        idle: timeouts.stream_idle.filter(|_| method.descriptor.is_server_streaming()),
        deadline: timeout.map(|t| Instant::now() + t),
        aborted: abort,
    };
    let mut response = Response::new(tonic::body::Body::new(http_body_util::StreamBody::new(answers(state))));
    *response.headers_mut() = headers.into_headers();
    for header in ["grpc-encoding", "grpc-accept-encoding", "content-length"] {
        response.headers_mut().remove(header);
    }
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(GRPC_JSON));
    Ok(response)
}

/// The messages' `grpc-encoding`: identity or gzip (when request
/// decompression is on); another is UNIMPLEMENTED, as gRPC says, with the
/// encodings accepted in `grpc-accept-encoding`.
fn message_encoding(headers: &HeaderMap, context: &Context) -> Result<Encoding, Error> {
    let declared = headers.get("grpc-encoding").map(|v| v.to_str().unwrap_or("(not ASCII)").trim());
    match declared {
        None | Some("" | "identity") => Ok(Encoding::Identity),
        Some("gzip") if context.compression.requests => Ok(Encoding::Gzip),
        Some(other) => {
            let accepted = if context.compression.requests { "identity,gzip" } else { "identity" };
            let mut error = Error::client(
                Code::Unimplemented,
                format!("unsupported grpc-encoding {other:?}; accepted: {accepted}"),
            );
            error.set_header(http::HeaderName::from_static("grpc-accept-encoding"), accepted);
            Err(error)
        }
    }
}

/// What the answer stream carries from one message to the next.
struct Answers {
    messages: tonic::Streaming<Bytes>,
    render: WireRenderer,
    metrics: Arc<Metrics>,
    idle: Option<Duration>,
    deadline: Option<Instant>,
    /// The request reader's first failure, which ends the call.
    aborted: Option<tokio::sync::oneshot::Receiver<Error>>,
}

fn answers(state: Answers) -> BoxStream<'static, Result<Frame<Bytes>, tonic::Status>> {
    futures_util::stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        let pacing = (state.idle, state.deadline);
        let failure = match next_answer(&mut state.messages, pacing, &mut state.aborted).await {
            Ok(Ok(Some(message))) => match state.render.json(&message) {
                Ok((json, fast)) => {
                    state.metrics.count_transcode(Direction::Response, fast);
                    return Some((Ok(Frame::data(envelope::envelope(0, &json))), Some(state)));
                }
                Err(error) => Error::gateway(Code::Internal, error),
            },
            Ok(Ok(None)) => {
                let trailers = state.messages.trailers().await.ok().flatten().unwrap_or_default();
                let mut trailers = trailers.into_headers();
                trailers.remove("grpc-message");
                trailers.remove(BACKEND_STATUS);
                trailers.insert("grpc-status", HeaderValue::from(0));
                return Some((Ok(Frame::trailers(trailers)), None));
            }
            Ok(Err(status)) => Error::from_upstream(status),
            Err(error) => error,
        };
        Some((Ok(Frame::trailers(trailers_of(&failure))), None))
    })
    .boxed()
}

/// The trailers that end a call with `error`: its status, message and
/// details as gRPC encodes them, after the backend's own trailers.
fn trailers_of(error: &Error) -> HeaderMap {
    if error.origin == Origin::Gateway {
        tracing::error!(code = ?error.code, detail = error.internal.as_deref(), "request failed in the gateway");
    }
    let mut trailers = error.backend_metadata.as_ref().map(|m| m.trailers.clone().into_headers()).unwrap_or_default();
    // The gateway's own marker of who sent a status stays inside.
    trailers.remove(BACKEND_STATUS);
    let status = tonic::Status::with_details(error.code, error.message.clone(), error.details.clone());
    if status.add_header(&mut trailers).is_err() {
        trailers.insert("grpc-status", HeaderValue::from(error.code as i32));
    }
    trailers
}
