//! The Connect protocol (connectrpc.com/docs/protocol): unary POST with JSON
//! or binary protobuf, unary GET for side-effect-free methods, server,
//! client and bidirectional streams with enveloped messages and an
//! end-of-stream message, and Connect's error JSON.

mod compression;
mod streams;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, request::Parts};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};
use serde_json::{Map, Value, json};
use tonic::Code;
use tonic::metadata::MetadataMap;

use super::pacing::{call_deadline, next_within, started_within, within, within_deadline};
use super::rest::check_size;
use super::{counted, read_body, route_timeouts};
use crate::admission::Admitted;
use crate::error::{Error, http_status};
use crate::gateway::Context;
use crate::registry::{MethodEntry, Snapshot};
use crate::telemetry::access::trace_of;
use crate::telemetry::metrics::{Direction, Metrics};
use crate::transcode::fast::Plans;
use crate::transcode::request::message_wire_from_json;
use crate::transcode::response::{WireRenderer, render_wire};
use crate::transcode::status::details;
use crate::upstream::metadata as upstream_metadata;
use tokio::time::Instant;

/// How messages are encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Json,
    Proto,
}

/// Headers that belong to HTTP or to Connect itself, never metadata.
const RESERVED: [&str; 14] = [
    "content-type",
    "content-length",
    "content-encoding",
    "accept-encoding",
    "accept",
    "host",
    "connection",
    "te",
    "transfer-encoding",
    "user-agent",
    "connect-protocol-version",
    "connect-timeout-ms",
    "connect-content-encoding",
    "connect-accept-encoding",
];

const END_STREAM: u8 = 0x02;
const COMPRESSED: u8 = 0x01;

/// Serves one Connect request; errors take Connect's form.
pub async fn serve(context: &Context, admitted: &Admitted, request: Request<Body>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let snapshot = &*admitted.snapshot;
    let streaming = content_type(&parts.headers).starts_with("application/connect+");
    let outcome = match find_method(admitted, &parts) {
        Ok(method) if !streaming && method.descriptor.is_client_streaming() => Err(Error::client(
            Code::Unimplemented,
            "a client or bidirectional stream is sent as application/connect+json or application/connect+proto",
        )),
        Ok(method) => match (streaming, stream_codec(&parts)) {
            (false, _) => unary(context, snapshot, method, &parts, body).await,
            (true, Err(error)) => Err(error),
            (true, Ok(codec)) if method.descriptor.is_client_streaming() => {
                streams::request_stream(context, snapshot, method, &parts, body, codec).await
            }
            (true, Ok(codec)) => server_stream(context, snapshot, method, &parts, body, codec).await,
        },
        Err(error) => Err(error),
    };
    outcome.unwrap_or_else(|error| {
        trace_of(&parts.extensions).grpc_code(error.code);
        if streaming {
            stream_error(&error, &parts.headers, &snapshot.pool, &context.json.serialize_options())
        } else {
            unary_error(&error, &snapshot.pool, &context.json.serialize_options())
        }
    })
}

/// An error before a stream started, in the stream's own form: status 200
/// and one end-of-stream message. Clients read a unary-form error on a
/// streaming call as "HTTP 501" and lose the code.
fn stream_error(
    error: &Error,
    headers: &http::HeaderMap,
    pool: &DescriptorPool,
    json: &SerializeOptions,
) -> Response<Body> {
    log(error);
    let end = end_of_stream(Some(error), &MetadataMap::new(), pool, json);
    let mut response = Response::new(Body::from(end));
    let stream_type = match content_type(headers).as_str() {
        "application/connect+proto" => Codec::Proto.stream_type(),
        _ => Codec::Json.stream_type(),
    };
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(stream_type));
    super::error_headers(error, response.headers_mut());
    response
}

/// Whether a request is a Connect streaming call (by its content type).
pub fn is_streaming(headers: &http::HeaderMap) -> bool {
    content_type(headers).starts_with("application/connect+")
}

fn find_method<'a>(admitted: &'a Admitted, parts: &Parts) -> Result<&'a MethodEntry, Error> {
    admitted.method().ok_or_else(|| Error::client(Code::Unimplemented, format!("unknown method {}", parts.uri.path())))
}

async fn unary(
    context: &Context,
    snapshot: &Snapshot,
    method: &MethodEntry,
    parts: &Parts,
    body: Body,
) -> Result<Response<Body>, Error> {
    let (codec, payload) = if parts.method == Method::GET {
        get_request(context, method, parts)?
    } else {
        let codec = match content_type(&parts.headers).as_str() {
            "application/json" => Codec::Json,
            "application/proto" => Codec::Proto,
            other => return Err(Error::unsupported_media_type(other)),
        };
        // The listener decoded what it can; what is left is refused here,
        // or (the listener's decoding off) read as Connect's own gzip.
        let declared = parts.headers.get(CONTENT_ENCODING).and_then(|v| v.to_str().ok());
        let encoding = compression::declared(declared, &context.compression, compression::Scope::Body)?;
        let body = read_body(body, context.max_body_size).await?;
        (codec, compression::decode(encoding, &body, context.max_body_size)?)
    };
    let trace = trace_of(&parts.extensions);
    let plans = &*snapshot.plans;
    let wire = trace.time_transcoding(|| request_wire(context, plans, method, codec, payload))?;
    check_size(wire.len(), method.call.max_message_size)?;
    let (request, timeout) = call_request(wire, parts, context, false)?;
    // The deadline bounds the whole answer, not only its headers.
    let call = trace.time_backend(within(timeout, method.call.unary_raw(request))).await;
    let reply = counted(context, &method.upstream, call)?;
    let body = trace.time_transcoding(|| response_body(context, plans, method, codec, &reply.message))?;
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(codec.unary_type()));
    upstream_metadata::to_http(&reply.headers, "", response.headers_mut());
    upstream_metadata::to_http(&reply.trailers, "trailer-", response.headers_mut());
    Ok(response)
}

/// `GET ?message=…&encoding=json|proto[&base64=1]`, allowed only for methods
/// marked `idempotency_level = NO_SIDE_EFFECTS`.
fn get_request(context: &Context, method: &MethodEntry, parts: &Parts) -> Result<(Codec, Bytes), Error> {
    if !method.side_effect_free {
        let mut error = Error::client(
            Code::Unimplemented,
            format!(
                "{} has side effects; Connect GET needs idempotency_level = NO_SIDE_EFFECTS",
                method.descriptor.full_name()
            ),
        );
        error.http_status = Some(StatusCode::METHOD_NOT_ALLOWED);
        error.set_header(http::header::ALLOW, "POST");
        return Err(error);
    }
    let query: Vec<(String, String)> = url_pairs(parts.uri.query().unwrap_or(""));
    let get = |key: &str| query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let codec = match get("encoding") {
        Some("json") => Codec::Json,
        Some("proto") => Codec::Proto,
        Some(other) => {
            return Err(Error::bad_request(format!("unsupported encoding {other:?}; use json or proto")));
        }
        None => {
            return Err(Error::bad_request("a Connect GET needs ?encoding=json|proto"));
        }
    };
    let encoding = compression::declared(get("compression"), &context.compression, compression::Scope::Messages)?;
    let message = get("message").unwrap_or("");
    let payload = if get("base64") == Some("1") {
        let engine = if message.ends_with('=') { &URL_SAFE } else { &URL_SAFE_NO_PAD };
        engine.decode(message).map_err(|_| Error::bad_request("message is not URL-safe base64"))?.into()
    } else {
        Bytes::copy_from_slice(message.as_bytes())
    };
    Ok((codec, compression::decode(encoding, &payload, context.max_body_size)?))
}

fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode =
                |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
            (decode(k), decode(v))
        })
        .collect()
}

/// Server streaming: one enveloped request, then enveloped messages and the
/// end-of-stream message. Failures travel in that last message, after 200.
async fn server_stream(
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

fn stream_codec(parts: &Parts) -> Result<Codec, Error> {
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
    let declared = parts.headers.get("connect-content-encoding").and_then(|v| v.to_str().ok());
    let encoding = compression::declared(declared, &context.compression, compression::Scope::Messages)?;
    let payload = read_body(body, context.max_body_size).await?;
    let (flags, message) = single_envelope(&payload)?;
    let message = open_envelope(flags, message, encoding, context.max_body_size)?;
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

/// An envelope's message, inflated when its flag says it is compressed.
fn open_envelope(flags: u8, message: &[u8], encoding: compression::Encoding, limit: usize) -> Result<Bytes, Error> {
    match (flags & COMPRESSED != 0, encoding) {
        (false, _) => Ok(Bytes::copy_from_slice(message)),
        (true, compression::Encoding::Identity) => {
            Err(Error::bad_request("a compressed envelope, but no Connect-Content-Encoding"))
        }
        (true, encoding) => compression::decode(encoding, message, limit),
    }
}

/// The one request envelope of a server-streaming call.
fn single_envelope(payload: &[u8]) -> Result<(u8, &[u8]), Error> {
    if payload.len() < 5 {
        return Err(Error::bad_request("truncated envelope: a Connect stream message needs a 5-byte prefix"));
    }
    let flags = payload[0];
    let length = u32::from_be_bytes([payload[1], payload[2], payload[3], payload[4]]) as usize;
    let message = payload.get(5..5 + length).ok_or_else(|| {
        Error::bad_request(format!("truncated envelope: {length} bytes announced, {} sent", payload.len() - 5))
    })?;
    if payload.len() != 5 + length {
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
        let next = within_deadline(state.deadline, next_within(state.idle, state.messages.message()));
        let next = tokio::select! {
            next = next => next,
            error = super::aborted(&mut state.aborted) => Err(error),
        };
        let failure = match next {
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
        Some(compressed) => envelope(COMPRESSED, &compressed),
        None => envelope(0, message),
    }
}

fn envelope(flags: u8, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 5);
    out.put_u8(flags);
    out.put_u32(payload.len() as u32);
    out.put_slice(payload);
    out.freeze()
}

/// The end-of-stream message: `{"error"?: …, "metadata"?: {k: [v]}}`.
fn end_of_stream(
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
    envelope(END_STREAM, &serde_json::to_vec(&Value::Object(end)).unwrap_or_default())
}

/// Builds the upstream request: metadata from plain headers, the deadline
/// from `Connect-Timeout-Ms` (capped), else the route's.
fn call_request<M>(
    message: M,
    parts: &Parts,
    context: &Context,
    streaming: bool,
) -> Result<(tonic::Request<M>, Option<Duration>), Error> {
    let mut request = tonic::Request::new(message);
    *request.metadata_mut() = super::request_metadata(parts, upstream_metadata::Carrier::Plain { skipped: &RESERVED })?;
    let requested = match parts.headers.get("connect-timeout-ms") {
        Some(value) => {
            let ms = value
                .to_str()
                .ok()
                .filter(|v| !v.is_empty() && v.len() <= 10)
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| Error::bad_request("Connect-Timeout-Ms must be 1 to 10 digits"))?;
            Some(Duration::from_millis(ms))
        }
        None => None,
    };
    let timeout = call_deadline(requested, &route_timeouts(context, &parts.extensions), streaming, &context.deadlines);
    if let Some(timeout) = timeout {
        request.set_timeout(timeout);
    }
    Ok((request, timeout))
}

/// A unary request in wire form: protobuf as sent once it decodes, JSON
/// written straight to wire form by the fast transcoder when it takes the
/// message, else read by prost-reflect.
fn request_wire(
    context: &Context,
    plans: &Plans,
    method: &MethodEntry,
    codec: Codec,
    payload: Bytes,
) -> Result<Bytes, Error> {
    let input = method.descriptor.input();
    if codec == Codec::Json {
        let fast = message_wire_from_json(&input, (plans, method.input_plan), &payload, &context.json);
        context.metrics.count_transcode(Direction::Request, fast.is_some());
        if let Some(wire) = fast {
            return Ok(Bytes::from(wire));
        }
        return Ok(Bytes::from(decode(codec, &input, &payload, context)?.encode_to_vec()));
    }
    decode(codec, &input, &payload, context)?;
    Ok(payload)
}

/// A unary answer in the client's codec: protobuf as the backend sent it,
/// JSON by the fast transcoder when it can, else by prost-reflect.
fn response_body(
    context: &Context,
    plans: &Plans,
    method: &MethodEntry,
    codec: Codec,
    wire: &Bytes,
) -> Result<Vec<u8>, Error> {
    if codec == Codec::Proto {
        return Ok(wire.to_vec());
    }
    let fast = render_wire(plans, method.output_plan, wire, &context.json);
    context.metrics.count_transcode(Direction::Response, fast.is_some());
    if let Some(json) = fast {
        return Ok(json);
    }
    let message = DynamicMessage::decode(method.descriptor.output(), wire.as_ref())
        .map_err(|e| Error::gateway(Code::Internal, format!("the backend's answer does not decode: {e}")))?;
    encode(codec, &message, &context.json.serialize_options())
}

fn decode(
    codec: Codec,
    descriptor: &MessageDescriptor,
    payload: &[u8],
    context: &Context,
) -> Result<DynamicMessage, Error> {
    match codec {
        Codec::Proto => DynamicMessage::decode(descriptor.clone(), payload)
            .map_err(|e| Error::bad_request(format!("invalid protobuf message: {e}"))),
        Codec::Json => crate::transcode::request::message_from_json(descriptor.clone(), payload, &context.json),
    }
}

fn encode(codec: Codec, message: &DynamicMessage, json: &SerializeOptions) -> Result<Vec<u8>, Error> {
    match codec {
        Codec::Proto => Ok(message.encode_to_vec()),
        Codec::Json => {
            let mut out = Vec::new();
            message
                .serialize_with_options(&mut serde_json::Serializer::new(&mut out), json)
                .map_err(|e| Error::gateway(Code::Internal, format!("cannot render the response: {e}")))?;
            Ok(out)
        }
    }
}

fn content_type(headers: &HeaderMap) -> String {
    let value = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    value.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// A policy refusal in Connect's form: an end-of-stream message on a
/// streaming call, the unary error JSON otherwise.
pub fn error_response(error: &Error, headers: &http::HeaderMap) -> Response<Body> {
    if is_streaming(headers) {
        stream_error(error, headers, &DescriptorPool::default(), &SerializeOptions::new())
    } else {
        unary_error(error, &DescriptorPool::default(), &SerializeOptions::new())
    }
}

/// A unary (or pre-stream) error: Connect's JSON with the table's status.
fn unary_error(error: &Error, pool: &DescriptorPool, json: &SerializeOptions) -> Response<Body> {
    log(error);
    let body = serde_json::to_vec(&error_json(error, pool, json)).unwrap_or_default();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = error.http_status.unwrap_or_else(|| http_status(error.code));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    super::error_headers(error, response.headers_mut());
    if let Some(backend) = &error.backend_metadata {
        upstream_metadata::to_http(&backend.headers, "", response.headers_mut());
        upstream_metadata::to_http(&backend.trailers, "trailer-", response.headers_mut());
    }
    response
}

fn log(error: &Error) {
    if error.origin == crate::error::Origin::Gateway {
        tracing::error!(code = ?error.code, detail = error.internal.as_deref(), "Connect request failed in the gateway");
    }
}

/// `{"code": "not_found", "message": …, "details": [{"type", "value", "debug"}]}`.
fn error_json(error: &Error, pool: &DescriptorPool, json: &SerializeOptions) -> Value {
    let details: Vec<Value> = details(&error.details)
        .into_iter()
        .map(|any| {
            let type_name = any.type_url.rsplit('/').next().unwrap_or_default().to_string();
            let debug = crate::transcode::status::decode_any_with(&any, &[pool], json);
            let mut detail = json!({ "type": type_name, "value": STANDARD_NO_PAD.encode(&any.value) });
            if let Some(debug) = debug {
                detail["debug"] = debug;
            }
            detail
        })
        .collect();
    let mut body = json!({ "code": code_name(error.code), "message": error.message });
    if !details.is_empty() {
        body["details"] = Value::Array(details);
    }
    body
}

/// Connect's code names.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "canceled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

impl Codec {
    fn unary_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Proto => "application/proto",
        }
    }

    fn stream_type(self) -> &'static str {
        match self {
            Self::Json => "application/connect+json",
            Self::Proto => "application/connect+proto",
        }
    }
}
