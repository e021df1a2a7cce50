//! REST/JSON: route, transcode, call, render. Errors are `google.rpc.Status`
//! JSON with the HTTP status from the one table.

pub mod composite;
pub mod form;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderValue, Request, Response, StatusCode, request::Parts};
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use tokio::time::Instant;
use tonic::Code;

use super::pacing::{call_deadline, next_within, requested_timeout, within};
use super::{aborted, counted, read_body};
use crate::admission::{Admitted, Target};
use crate::config::RouteTimeouts;
use crate::error::{Error, Origin};
use crate::gateway::Context;
use crate::gateway::policies::RoutePolicies;
use crate::registry::{MethodEntry, Snapshot};
use crate::route::{Binding, MatchError};
use crate::telemetry::access::{Trace, trace_of};
use crate::telemetry::metrics::Direction;
use crate::transcode::form::is_form;
use crate::transcode::request::{self, HttpInput, WireBuilder};
use crate::transcode::response::{self, Rendered};
use crate::transcode::status;
use crate::transcode::stream::StreamFormat;
use crate::upstream::call::UnaryReply;
use crate::upstream::metadata;
use stream::Frames;

/// What every call kind needs from the HTTP request, extracted once.
struct Prepared<'a> {
    binding: &'a Binding,
    method: &'a MethodEntry,
    variables: &'a [String],
    metadata: tonic::metadata::MetadataMap,
    timeout: Option<Duration>,
    /// Longest gap between two messages of a stream.
    idle: Option<Duration>,
    format: StreamFormat,
    /// Trailer metadata as HTTP trailers: the profile asks for it and the
    /// client sent `TE: trailers`.
    http_trailers: bool,
    /// Its policies; `success` is the declared answer (`[[responses]]`).
    route: Arc<RoutePolicies>,
}

/// Serves one REST request; never fails: errors become Status JSON.
pub async fn serve(context: &Context, admitted: &Admitted, request: Request<Body>) -> Response<Body> {
    let snapshot = &*admitted.snapshot;
    let trace = trace_of(request.extensions());
    match handle(context, admitted, request, &trace).await {
        Ok(response) => response,
        Err(error) => {
            trace.grpc_code(error.code);
            error_response(&error, Some((&snapshot.pool, &context.json.serialize_options())))
        }
    }
}

async fn handle(
    context: &Context,
    admitted: &Admitted,
    request: Request<Body>,
    trace: &Trace,
) -> Result<Response<Body>, Error> {
    let snapshot = &*admitted.snapshot;
    let (parts, body) = request.into_parts();
    let (binding, variables) = match (&admitted.target, admitted.binding()) {
        (_, Some(found)) => found,
        (Target::Nothing(error), None) => return Err(match_error(error.clone(), &parts)),
        _ => return Err(Error::not_found(parts.uri.path())),
    };
    let prepared = prepare(context, snapshot, binding, variables, &parts)?;
    let content_type = content_type(&parts)?;
    check_identity_encoding(&parts, &context.compression)?;
    if prepared.method.descriptor.is_client_streaming() {
        // Boxed, as is the server stream below: the unary path's future,
        // the common one, stays its own size.
        return Box::pin(client_stream(context, snapshot, prepared, &parts, content_type, body)).await;
    }
    // The content type first: only a form needs the input descriptor here.
    let form = is_form(content_type) && request::form_body(prepared.binding, &prepared.method.descriptor.input());
    let wire = if form {
        // Boxed: the form reader's state is larger than the common path's.
        Box::pin(form_wire(context, &prepared, &parts, content_type.unwrap_or_default(), body, trace)).await?
    } else {
        let body = read_body(body, context.max_body_size).await?;
        let input = HttpInput { variables: prepared.variables, query: parts.uri.query(), content_type, body: &body };
        trace.time_transcoding(|| request_wire(context, snapshot, &prepared, input))?
    };
    check_size(wire.len(), prepared.method.call.max_message_size)?;
    if prepared.method.descriptor.is_server_streaming() {
        let request = call_request(bytes::Bytes::from(wire), &prepared);
        let upstream = prepared.method.upstream.as_str();
        return counted(
            context,
            upstream,
            Box::pin(trace.time_backend(server_stream(context, snapshot, prepared, request))).await,
        );
    }
    let call = prepared.method.call.unary_raw(call_request(bytes::Bytes::from(wire), &prepared));
    let reply = counted(context, &prepared.method.upstream, trace.time_backend(within(prepared.timeout, call)).await)?;
    trace.time_transcoding(|| unary_response_wire(context, snapshot, &prepared, reply))
}

/// The request message in wire form: straight from the JSON when the fast
/// transcoder takes it, else built and encoded.
fn request_wire(
    context: &Context,
    snapshot: &Snapshot,
    prepared: &Prepared<'_>,
    input: HttpInput<'_>,
) -> Result<Vec<u8>, Error> {
    let input_type = prepared.method.descriptor.input();
    let plans = (&*snapshot.plans, prepared.method.input_plan);
    let fast = crate::transcode::request::build_wire(prepared.binding, &input_type, plans, input, &context.json);
    context.metrics.count_transcode(Direction::Request, fast.is_some());
    match fast {
        Some(wire) => Ok(wire),
        None => {
            use prost::Message;
            let message = crate::transcode::request::build(prepared.binding, &input_type, input, &context.json)?;
            Ok(message.encode_to_vec())
        }
    }
}

/// The request message from a `multipart/form-data` body, each part read
/// under its limit and set onto the field it names.
async fn form_wire(
    context: &Context,
    prepared: &Prepared<'_>,
    parts: &Parts,
    content_type: &str,
    body: Body,
    trace: &Trace,
) -> Result<Vec<u8>, Error> {
    use prost::Message;
    let form = form::read(body, content_type, context.form_limits).await?;
    let fields: Vec<_> = form.iter().map(form::OwnedPart::borrowed).collect();
    let input = HttpInput { variables: prepared.variables, query: parts.uri.query(), content_type: None, body: &[] };
    let input_type = prepared.method.descriptor.input();
    let message =
        trace.time_transcoding(|| request::build_form(prepared.binding, &input_type, input, &fields, &context.json))?;
    context.metrics.count_transcode(Direction::Request, false);
    Ok(message.encode_to_vec())
}

/// Renders a unary answer from its wire form: fast when it can, else
/// decoded and rendered by prost-reflect.
fn unary_response_wire(
    context: &Context,
    snapshot: &Snapshot,
    prepared: &Prepared<'_>,
    reply: UnaryReply<bytes::Bytes>,
) -> Result<Response<Body>, Error> {
    let binding = prepared.binding;
    // A Location is built from the decoded answer.
    let needs_message = prepared.route.success.as_ref().is_some_and(|s| s.location.is_some());
    let fast = match binding.response_body {
        None if !needs_message => {
            response::render_wire(&snapshot.plans, prepared.method.output_plan, &reply.message, &context.json)
        }
        _ => None,
    };
    context.metrics.count_transcode(Direction::Response, fast.is_some());
    if let Some(json) = fast {
        let response = rendered_response(Rendered::Json(json), &reply.headers, &reply.trailers, prepared.http_trailers);
        return Ok(declared(response, prepared.route.success.as_ref(), None));
    }
    let output = prepared.method.call.output.clone();
    let message = DynamicMessage::decode(output, reply.message).map_err(|e| {
        Error::gateway(
            Code::Internal,
            format!("backend sent an undecodable {}: {e}", prepared.method.call.output.full_name()),
        )
    })?;
    unary_response(context, prepared, UnaryReply { headers: reply.headers, message, trailers: reply.trailers })
}

fn prepare<'a>(
    context: &Context,
    snapshot: &'a Snapshot,
    binding: &'a Binding,
    variables: &'a [String],
    parts: &Parts,
) -> Result<Prepared<'a>, Error> {
    let method = snapshot
        .methods
        .get(binding.method)
        .ok_or_else(|| Error::gateway(Code::Internal, "binding points at no method"))?;
    let metadata = super::request_metadata(parts, metadata::Carrier::Prefixed)?;
    let streaming = method.descriptor.is_server_streaming() || method.descriptor.is_client_streaming();
    let accept = parts.headers.get(ACCEPT).and_then(|v| v.to_str().ok());
    let route = super::route_policies(context, &parts.extensions);
    Ok(Prepared {
        binding,
        method,
        variables,
        metadata,
        timeout: deadline(parts, context, streaming, &route.timeouts)?,
        idle: route.timeouts.stream_idle,
        format: StreamFormat::from_accept(accept),
        route,
        http_trailers: context.http_trailers
            && parts.headers.get_all(http::header::TE).iter().any(|v| v.to_str().is_ok_and(|v| v.contains("trailers"))),
    })
}

fn content_type(parts: &Parts) -> Result<Option<&str>, Error> {
    match parts.headers.get(CONTENT_TYPE) {
        None => Ok(None),
        Some(value) => value.to_str().map(Some).map_err(|_| Error::unsupported_media_type("(not ASCII)")),
    }
}

/// An encoding the listener did not decode (not one it speaks, or request
/// decompression off) is named in a 415 with the ones it does speak: read
/// as JSON it was answered "invalid JSON body", which sent users looking in
/// the wrong place.
fn check_identity_encoding(parts: &Parts, compression: &crate::config::CompressionConfig) -> Result<(), Error> {
    let Some(encoding) = parts.headers.get(http::header::CONTENT_ENCODING) else { return Ok(()) };
    let encoding = encoding.to_str().unwrap_or("(not ASCII)").trim();
    if encoding.is_empty() || encoding.eq_ignore_ascii_case("identity") {
        return Ok(());
    }
    let accepted = compression.request_encodings();
    let mut error = Error::client(
        Code::InvalidArgument,
        format!("request bodies with Content-Encoding {encoding:?} are not supported; accepted: {accepted}"),
    );
    error.http_status = Some(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    error.set_header(http::header::ACCEPT_ENCODING, accepted);
    Err(error)
}

fn call_request<T>(message: T, prepared: &Prepared<'_>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    *request.metadata_mut() = prepared.metadata.clone();
    if let Some(timeout) = prepared.timeout {
        request.set_timeout(timeout);
    }
    // A GET or HEAD is safe to repeat whatever the method declares.
    if matches!(prepared.binding.http_method, http::Method::GET | http::Method::HEAD) {
        request.extensions_mut().insert(crate::upstream::call::RetryUnavailable);
    }
    request
}

/// Refuses a message (of `size` encoded bytes) the upstream limit would
/// reject, before sending it (tonic's own check surfaces only as an
/// anonymous stream reset).
pub(crate) fn check_size(size: usize, limit: usize) -> Result<(), Error> {
    if size > limit {
        return Err(Error::client(
            Code::ResourceExhausted,
            format!("the request message is {size} bytes in protobuf, over the upstream limit of {limit}"),
        ));
    }
    Ok(())
}

fn match_error(error: MatchError, parts: &Parts) -> Error {
    match error {
        MatchError::NotFound => Error::not_found(parts.uri.path()),
        MatchError::MethodNotAllowed(allowed) => {
            let allow: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
            Error::method_not_allowed(parts.method.as_str(), parts.uri.path(), allow.join(", "))
        }
        MatchError::BadVariable(message) => Error::bad_request(message),
    }
}

/// The call's timeout: the client's `Grpc-Timeout`, else the route's.
fn deadline(
    parts: &Parts,
    context: &Context,
    streaming: bool,
    route: &RouteTimeouts,
) -> Result<Option<Duration>, Error> {
    let requested = requested_timeout(&parts.headers)?;
    Ok(call_deadline(requested, route, streaming, &context.deadlines))
}

fn unary_response(context: &Context, prepared: &Prepared<'_>, reply: UnaryReply) -> Result<Response<Body>, Error> {
    let binding = prepared.binding;
    let rendered = response::render(&reply.message, binding.response_body.as_ref(), &context.json, context.json.indent)
        .map_err(|e| Error::gateway(Code::Internal, e))?;
    let response = rendered_response(rendered, &reply.headers, &reply.trailers, prepared.http_trailers);
    Ok(declared(response, prepared.route.success.as_ref(), Some(&reply.message)))
}

/// The declared success answer: its status, no body for a 204, and a
/// `Location` from the answer's fields (left out, and logged, when a field
/// it names is missing).
fn declared(
    mut response: Response<Body>,
    success: Option<&crate::config::SuccessRule>,
    message: Option<&DynamicMessage>,
) -> Response<Body> {
    let Some(success) = success else { return response };
    *response.status_mut() = success.status;
    if success.status == StatusCode::NO_CONTENT {
        *response.body_mut() = Body::empty();
        response.headers_mut().remove(CONTENT_TYPE);
    }
    if let (Some(template), Some(message)) = (&success.location, message) {
        let location = crate::config::success_location(template, |path| field_text(message, path));
        match location.and_then(|l| HeaderValue::try_from(l).ok()) {
            Some(value) => {
                response.headers_mut().insert(http::header::LOCATION, value);
            }
            None => tracing::warn!(%template, "the answer lacks a field its Location names; sent without one"),
        }
    }
    response
}

/// A field of a message at a dotted path (proto or JSON names), as text.
fn field_text(message: &DynamicMessage, path: &str) -> Option<String> {
    let (head, rest) = path.split_once('.').map_or((path, None), |(h, r)| (h, Some(r)));
    let descriptor = prost_reflect::ReflectMessage::descriptor(message);
    let field = descriptor.get_field_by_name(head).or_else(|| descriptor.get_field_by_json_name(head))?;
    let value = message.get_field(&field);
    match (value.as_ref(), rest) {
        (prost_reflect::Value::Message(child), Some(rest)) => field_text(child, rest),
        (prost_reflect::Value::String(text), None) => Some(text.clone()),
        (prost_reflect::Value::I32(n), None) => Some(n.to_string()),
        (prost_reflect::Value::I64(n), None) => Some(n.to_string()),
        (prost_reflect::Value::U32(n), None) => Some(n.to_string()),
        (prost_reflect::Value::U64(n), None) => Some(n.to_string()),
        _ => None,
    }
}

/// A rendered unary answer with the backend's metadata as headers.
fn rendered_response(
    rendered: Rendered,
    headers: &tonic::metadata::MetadataMap,
    trailers: &tonic::metadata::MetadataMap,
    http_trailers: bool,
) -> Response<Body> {
    let mut response = match rendered {
        Rendered::Json(json) => json_response(StatusCode::OK, json),
        Rendered::Raw { content_type, data } => {
            let mut response = Response::new(Body::from(data));
            let value = HeaderValue::try_from(content_type)
                .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
            response.headers_mut().insert(CONTENT_TYPE, value);
            response
        }
    };
    metadata::to_http(headers, metadata::HEADER_PREFIX, response.headers_mut());
    if http_trailers {
        let mut sent = http::HeaderMap::new();
        metadata::to_http(trailers, metadata::TRAILER_PREFIX, &mut sent);
        if !sent.is_empty() {
            return with_trailers(response, sent);
        }
    }
    metadata::to_http(trailers, metadata::TRAILER_PREFIX, response.headers_mut());
    response
}

/// The answer with `trailers` sent as HTTP trailers after its body.
fn with_trailers(response: Response<Body>, trailers: http::HeaderMap) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    let trailer_names: Vec<&str> = trailers.keys().map(http::HeaderName::as_str).collect();
    if let Ok(names) = HeaderValue::try_from(trailer_names.join(", ")) {
        parts.headers.insert(http::header::TRAILER, names);
    }
    parts.headers.remove(http::header::CONTENT_LENGTH);
    // No exact size: HTTP/1.1 trailers need chunked encoding.
    use futures_util::StreamExt;
    let data = body.into_data_stream().map(|chunk| chunk.map(http_body::Frame::data));
    let frames = data.chain(futures_util::stream::once(async move { Ok(http_body::Frame::trailers(trailers)) }));
    Response::from_parts(parts, Body::new(http_body_util::StreamBody::new(frames)))
}

/// Streams messages as they arrive, one frame each; a failure after the
/// first byte ends the stream with an in-band error record.
async fn server_stream(
    context: &Context,
    snapshot: &Snapshot,
    prepared: Prepared<'_>,
    request: tonic::Request<bytes::Bytes>,
) -> Result<Response<Body>, Error> {
    let deadline = prepared.timeout.map(|t| (Instant::now() + t, t));
    let start = within(prepared.timeout, prepared.method.call.server_streaming(request));
    let started = next_within(prepared.idle, start).await??;
    let (headers, messages, _) = started.into_parts();
    Ok(stream::response(&headers, frames(context, snapshot, &prepared, messages, deadline, None)))
}

fn frames(
    context: &Context,
    snapshot: &Snapshot,
    prepared: &Prepared<'_>,
    messages: tonic::Streaming<bytes::Bytes>,
    deadline: Option<(Instant, Duration)>,
    aborted: Option<tokio::sync::oneshot::Receiver<Error>>,
) -> Frames {
    let method = prepared.method;
    let output = method.call.output.clone();
    Frames {
        messages,
        render: response::WireRenderer::new(snapshot.plans.clone(), method.output_plan, output, &context.json),
        metrics: context.metrics.clone(),
        format: prepared.format,
        json: context.json.serialize_options(),
        wrap_results: context.json.wrap_stream_results,
        pool: snapshot.pool.clone(),
        deadline,
        idle: prepared.idle,
        last: Instant::now(),
        keepalive: context.sse_keepalive,
        aborted,
        sent: 0,
    }
}

/// Client and bidirectional streams: request messages come from an NDJSON
/// or JSON-array body, each built like a unary request (path variables and
/// query parameters apply to every message).
async fn client_stream(
    context: &Context,
    snapshot: &Snapshot,
    prepared: Prepared<'_>,
    parts: &Parts,
    content_type: Option<&str>,
    body: Body,
) -> Result<Response<Body>, Error> {
    let ndjson = stream::is_ndjson(content_type);
    let json = content_type.is_none_or(|ct| {
        ct.split(';').next().is_some_and(|t| t.trim().is_empty() || t.trim().eq_ignore_ascii_case("application/json"))
    });
    if !ndjson && !json {
        return Err(Error::unsupported_media_type(content_type.unwrap_or_default()));
    }
    let build = {
        let plans = (snapshot.plans.clone(), prepared.method.input_plan);
        let input = prepared.method.descriptor.input();
        let builder = WireBuilder::new(Some(prepared.binding.clone()), input, plans, &context.json);
        let (variables, query) = (prepared.variables.to_vec(), parts.uri.query().map(str::to_string));
        let metrics = context.metrics.clone();
        move |bytes: &[u8]| {
            let http = HttpInput {
                variables: &variables,
                query: query.as_deref(),
                content_type: Some("application/json"),
                body: bytes,
            };
            let (wire, fast) = builder.wire(http)?;
            metrics.count_transcode(Direction::Request, fast);
            Ok(bytes::Bytes::from(wire))
        }
    };
    let (messages, abort) = stream::requests(body, ndjson, context.max_body_size, build);
    let mut abort = Some(abort);
    let request = call_request(messages, &prepared);
    let call = &prepared.method.call;
    if prepared.method.descriptor.is_server_streaming() {
        let deadline = prepared.timeout.map(|t| (Instant::now() + t, t));
        let started = tokio::select! {
            started = next_within(prepared.idle, within(prepared.timeout, call.streaming(request))) => started??,
            error = aborted(&mut abort) => return Err(error),
        };
        let (headers, messages, _) = started.into_parts();
        let frames = frames(context, snapshot, &prepared, messages, deadline, abort);
        return Ok(stream::response(&headers, frames));
    }
    let reply = tokio::select! {
        reply = within(prepared.timeout, call.client_streaming(request)) => reply?,
        error = aborted(&mut abort) => return Err(error),
    };
    unary_response_wire(context, snapshot, &prepared, reply)
}

/// The error as a response: Status JSON, the status from the table, `Allow`
/// on a 405. Gateway-side details go to the log only.
/// `schema`: the pool details are decoded with, and the JSON options.
pub fn error_response(error: &Error, schema: Option<(&DescriptorPool, &SerializeOptions)>) -> Response<Body> {
    let mut response = json_response(error.http_status(), error_body(error, schema));
    if let Some(backend) = &error.backend_metadata {
        metadata::to_http(&backend.headers, metadata::HEADER_PREFIX, response.headers_mut());
        metadata::to_http(&backend.trailers, metadata::TRAILER_PREFIX, response.headers_mut());
    }
    crate::protocol::error_headers(error, response.headers_mut());
    response
}

fn error_body(error: &Error, schema: Option<(&DescriptorPool, &SerializeOptions)>) -> Vec<u8> {
    match error.origin {
        Origin::Gateway => {
            tracing::error!(code = ?error.code, detail = error.internal.as_deref(), "request failed in the gateway")
        }
        Origin::Backend => {
            tracing::debug!(code = ?error.code, message = %error.message, "backend returned an error")
        }
        Origin::Client => {
            tracing::debug!(code = ?error.code, message = %error.message, "bad request")
        }
    }
    let default = SerializeOptions::new();
    let (pools, options): (Vec<&DescriptorPool>, _) = match schema {
        Some((pool, options)) => (vec![pool], options),
        None => (Vec::new(), &default),
    };
    status::to_json(error.code as i32, &error.message, &error.details, &pools, options)
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
