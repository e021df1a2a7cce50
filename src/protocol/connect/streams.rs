//! Connect streams. Server streams take one request envelope; client and
//! bidirectional streams read request envelopes from the body as they
//! arrive (each opened, checked and transcoded), sent on one upstream call.
//! Every stream's answers go back enveloped, then the end-of-stream message.
//! Half duplex (HTTP/1.1: the client sends everything, then reads) and full
//! duplex (HTTP/2) are one path: an answer goes out as soon as the backend
//! writes it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::{HeaderValue, Response};
use prost_reflect::{DescriptorPool, SerializeOptions};
use serde_json::{Map, Value, json};
use tokio::time::Instant;
use tonic::Code;
use tonic::metadata::MetadataMap;

use super::compression::{self, Encoding};
use super::{Codec, END_STREAM, call_request, content_type, decode_proto, error_json, request_wire};
use crate::error::Error;
use crate::gateway::Context;
use crate::protocol::envelope::{self, COMPRESSED, Limits};
use crate::protocol::pacing::{next_answer, started_within, within};
use crate::protocol::rest::check_size;
use crate::protocol::{aborted, counted, inbound, read_body, route_timeouts};
use crate::registry::{MethodEntry, Snapshot};
use crate::telemetry::access::trace_of;
use crate::telemetry::metrics::{Direction, Metrics};
use crate::transcode::response::WireRenderer;
use crate::upstream::metadata as upstream_metadata;

pub(super) async fn request_stream(
    context: &Context,
    snapshot: &Snapshot,
    method: &MethodEntry,
    parts: &Parts,
    body: Body,
    codec: Codec,
) -> Result<Response<Body>, Error> {
    let encoding = message_encoding(context, parts)?;
    let limits = Limits {
        message: method.call.max_message_size,
        inflated: context.max_body_size,
        encoding_header: "Connect-Content-Encoding",
    };
    let build = builder(context, snapshot, method, codec);
    let (messages, abort) = inbound::messages(envelope::envelopes(body, limits, encoding).boxed(), build);
    let mut abort = Some(abort);
    let (request, timeout) = call_request(messages, parts, context, true)?;
    let deadline = timeout.map(|timeout| tokio::time::Instant::now() + timeout);
    let trace = trace_of(&parts.extensions);
    // No idle timeout on the start: a client-streaming backend answers
    // (headers included) only once the client has sent everything.
    let started = tokio::select! {
        started = trace.time_backend(within(timeout, method.call.streaming(request))) => started,
        error = aborted(&mut abort) => Err(error),
    };
    let (headers, messages, _) = counted(context, &method.upstream, started)?.into_parts();
    let start = StreamStart { headers, messages, deadline, aborted: abort };
    Ok(stream_response(context, snapshot, method, parts, codec, start))
}

/// How each request message becomes the backend's: protobuf as sent once
/// it decodes, JSON by the fast transcoder or prost-reflect.
fn builder(
    context: &Context,
    snapshot: &Snapshot,
    method: &MethodEntry,
    codec: Codec,
) -> impl Fn(&[u8]) -> Result<Bytes, Error> + Send + 'static {
    let input = method.descriptor.input();
    let json = inbound::json_to_wire(context, snapshot, method);
    move |message: &[u8]| match codec {
        Codec::Proto => {
            decode_proto(&input, message)?;
            Ok(Bytes::copy_from_slice(message))
        }
        Codec::Json => json(message),
    }
}

/// Server streaming: one enveloped request, then enveloped messages and the
/// end-of-stream message. Failures travel in that last message, after 200.
pub(super) async fn server_stream(
    context: &Context,
    snapshot: &Snapshot,
    method: &MethodEntry,
    parts: &Parts,
    body: Body,
    codec: Codec,
) -> Result<Response<Body>, Error> {
    // A failure before the stream starts is answered by `serve`, in the
    // stream's own form.
    let start = stream_request(context, snapshot, method, parts, body, codec).await?;
    Ok(stream_response(context, snapshot, method, parts, codec, start))
}

pub(super) fn stream_codec(parts: &Parts) -> Result<Codec, Error> {
    match content_type(&parts.headers).as_str() {
        "application/connect+json" => Ok(Codec::Json),
        "application/connect+proto" => Ok(Codec::Proto),
        other => Err(Error::unsupported_media_type(other)),
    }
}

/// A started upstream stream, for the Connect stream that answers it.
struct StreamStart {
    headers: MetadataMap,
    messages: tonic::Streaming<Bytes>,
    /// When the whole call must be over.
    deadline: Option<Instant>,
    /// A request stream's first bad message, which ends the answer.
    aborted: Option<tokio::sync::oneshot::Receiver<Error>>,
}

/// The answers of a started call as a Connect stream: enveloped messages,
/// compressed when the client accepts gzip, then the end-of-stream message.
fn stream_response(
    context: &Context,
    snapshot: &Snapshot,
    method: &MethodEntry,
    parts: &Parts,
    codec: Codec,
    start: StreamStart,
) -> Response<Body> {
    let gzip = compression::answer_gzip(&parts.headers, &context.compression)
        .then_some(usize::from(context.compression.min_size));
    let StreamStart { headers, messages, deadline, aborted } = start;
    let idle = route_timeouts(context, &parts.extensions).stream_idle;
    let json = context.json.serialize_options();
    let pool = snapshot.pool.clone();
    let output = method.call.output.clone();
    let render = WireRenderer::new(snapshot.plans.clone(), method.output_plan, output, &context.json);
    let metrics = context.metrics.clone();
    let state = StreamState { messages, codec, render, metrics, json, pool, idle, deadline, gzip, aborted };
    let mut response = Response::new(Body::from_stream(responses(state)));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(codec.stream_type()));
    if gzip.is_some() {
        response.headers_mut().insert("connect-content-encoding", HeaderValue::from_static("gzip"));
    }
    upstream_metadata::to_http(&headers, "", response.headers_mut());
    response
}

async fn stream_request(
    context: &Context,
    snapshot: &Snapshot,
    method: &MethodEntry,
    parts: &Parts,
    body: Body,
    codec: Codec,
) -> Result<StreamStart, Error> {
    let encoding = message_encoding(context, parts)?;
    let payload = read_body(body, context.max_body_size).await?;
    let (flags, message) = single_envelope(&payload)?;
    let message = envelope::open(flags, message, encoding, (context.max_body_size, "Connect-Content-Encoding"))?;
    let trace = trace_of(&parts.extensions);
    let wire = trace.time_transcoding(|| request_wire(context, &snapshot.plans, method, codec, message))?;
    check_size(wire.len(), method.call.max_message_size)?;
    let (request, timeout) = call_request(wire, parts, context, true)?;
    // The deadline bounds the whole stream, every message included.
    let deadline = timeout.map(|timeout| Instant::now() + timeout);
    let idle = route_timeouts(context, &parts.extensions).stream_idle;
    let started = trace.time_backend(started_within(idle, method.call.server_streaming(request))).await;
    let response = counted(context, &method.upstream, started)?;
    let (headers, messages, _) = response.into_parts();
    Ok(StreamStart { headers, messages, deadline, aborted: None })
}

/// How the request's envelopes are compressed (`Connect-Content-Encoding`).
fn message_encoding(context: &Context, parts: &Parts) -> Result<Encoding, Error> {
    let declared = parts.headers.get("connect-content-encoding").and_then(|v| v.to_str().ok());
    compression::declared(declared, &context.compression, compression::Scope::Messages)
}

/// The one request envelope of a server-streaming call.
fn single_envelope(payload: &[u8]) -> Result<(u8, &[u8]), Error> {
    let (flags, length) = envelope::prefix(payload)
        .ok_or_else(|| Error::bad_request("truncated envelope: a Connect stream message needs a 5-byte prefix"))?;
    let message = payload.get(envelope::PREFIX..envelope::PREFIX + length).ok_or_else(|| {
        Error::bad_request(format!(
            "truncated envelope: {length} bytes announced, {} sent",
            payload.len() - envelope::PREFIX
        ))
    })?;
    if payload.len() != envelope::PREFIX + length {
        return Err(Error::bad_request("a server-streaming call takes exactly one request message"));
    }
    Ok((flags, message))
}

/// What a Connect stream carries from one frame to the next.
struct StreamState {
    messages: tonic::Streaming<Bytes>,
    codec: Codec,
    /// JSON answers: the fast transcoder, else prost-reflect.
    render: WireRenderer,
    metrics: Arc<Metrics>,
    json: SerializeOptions,
    pool: DescriptorPool,
    /// The route's idle timeout between two messages.
    idle: Option<Duration>,
    /// When the whole call must be over.
    deadline: Option<Instant>,
    /// Messages of at least this size go out gzip-compressed (the client
    /// accepts gzip); none: all go as they are.
    gzip: Option<usize>,
    aborted: Option<tokio::sync::oneshot::Receiver<Error>>,
}

fn responses(state: StreamState) -> BoxStream<'static, Result<Bytes, std::convert::Infallible>> {
    futures_util::stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        let pacing = (state.idle, state.deadline);
        let failure = match next_answer(&mut state.messages, pacing, &mut state.aborted).await {
            Err(idle) => idle,
            // Protobuf answers go out as the backend wrote them.
            Ok(Ok(Some(message))) if state.codec == Codec::Proto => {
                return Some((Ok(message_envelope(&message, state.gzip)), Some(state)));
            }
            Ok(Ok(Some(message))) => match state.render.json(&message) {
                Ok((json, fast)) => {
                    state.metrics.count_transcode(Direction::Response, fast);
                    return Some((Ok(message_envelope(&json, state.gzip)), Some(state)));
                }
                Err(error) => Error::gateway(Code::Internal, error),
            },
            Ok(Ok(None)) => {
                let trailers = state.messages.trailers().await.ok().flatten().unwrap_or_default();
                return Some((Ok(end_of_stream(None, &trailers, &state.pool, &state.json)), None));
            }
            Ok(Err(status)) => Error::from_upstream(status),
        };
        Some((Ok(end_of_stream(Some(&failure), &MetadataMap::new(), &state.pool, &state.json)), None))
    })
    .boxed()
}

/// A message's envelope, compressed when that was asked for and pays.
fn message_envelope(message: &[u8], gzip: Option<usize>) -> Bytes {
    match gzip.filter(|min| message.len() >= *min).and_then(|_| compression::gzip(message)) {
        Some(compressed) => envelope::envelope(COMPRESSED, &compressed),
        None => envelope::envelope(0, message),
    }
}

/// The end-of-stream message: `{"error"?: …, "metadata"?: {k: [v]}}`.
pub(super) fn end_of_stream(
    error: Option<&Error>,
    trailers: &MetadataMap,
    pool: &DescriptorPool,
    json: &SerializeOptions,
) -> Bytes {
    let mut end = Map::new();
    if let Some(error) = error {
        end.insert("error".into(), error_json(error, pool, json));
    }
    let mut metadata = Map::new();
    for (name, value) in trailers.as_ref() {
        if name.as_str().starts_with("grpc-") {
            continue;
        }
        if let Ok(value) = value.to_str() {
            let entry = metadata.entry(name.as_str()).or_insert_with(|| json!([]));
            if let Some(values) = entry.as_array_mut() {
                values.push(json!(value));
            }
        }
    }
    if !metadata.is_empty() {
        end.insert("metadata".into(), Value::Object(metadata));
    }
    envelope::envelope(END_STREAM, &serde_json::to_vec(&Value::Object(end)).unwrap_or_default())
}
