//! The Connect protocol (connectrpc.com/docs/protocol): unary POST with JSON
//! or binary protobuf, unary GET for side-effect-free methods, server,
//! client and bidirectional streams with enveloped messages and an
//! end-of-stream message, and Connect's error JSON.

pub(crate) mod compression;
mod streams;

use std::time::Duration;

use axum::body::Body;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, request::Parts};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};
use serde_json::{Value, json};
use tonic::Code;
use tonic::metadata::MetadataMap;

use super::pacing::{call_deadline, within};
use super::rest::check_size;
use super::{counted, read_body, route_timeouts};
use crate::admission::Admitted;
use crate::error::{Error, http_status};
use crate::gateway::Context;
use crate::registry::{MethodEntry, Snapshot};
use crate::telemetry::access::trace_of;
use crate::telemetry::metrics::Direction;
use crate::transcode::fast::Plans;
use crate::transcode::request::message_wire_from_json;
use crate::transcode::response::render_wire;
use crate::transcode::status::details;
use crate::upstream::metadata as upstream_metadata;

/// How messages are encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Json,
    Proto,
}

/// Headers that belong to Connect itself (or its bodies), never metadata;
/// HTTP's own are skipped for every protocol.
const RESERVED: [&str; 5] = [
    "content-encoding",
    "connect-protocol-version",
    "connect-timeout-ms",
    "connect-content-encoding",
    "connect-accept-encoding",
];

const END_STREAM: u8 = 0x02;

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
        Ok(method) => match (streaming, streams::stream_codec(&parts)) {
            (false, _) => unary(context, snapshot, method, &parts, body).await,
            (true, Err(error)) => Err(error),
            (true, Ok(codec)) if method.descriptor.is_client_streaming() => {
                streams::request_stream(context, snapshot, method, &parts, body, codec).await
            }
            (true, Ok(codec)) => streams::server_stream(context, snapshot, method, &parts, body, codec).await,
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
    let end = streams::end_of_stream(Some(error), &MetadataMap::new(), pool, json);
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
        Codec::Proto => decode_proto(descriptor, payload),
        Codec::Json => crate::transcode::request::message_from_json(descriptor.clone(), payload, &context.json),
    }
}

fn decode_proto(descriptor: &MessageDescriptor, payload: &[u8]) -> Result<DynamicMessage, Error> {
    DynamicMessage::decode(descriptor.clone(), payload)
        .map_err(|e| Error::bad_request(format!("invalid protobuf message: {e}")))
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
