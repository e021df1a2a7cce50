//! REST/JSON: route, transcode, call, render. Errors are `google.rpc.Status`
//! JSON with the HTTP status from the one table.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::header::{ACCEPT, ALLOW, CONTENT_TYPE};
use http::{HeaderValue, Request, Response, StatusCode, request::Parts};
use http_body_util::BodyExt;
use prost_reflect::{DescriptorPool, DynamicMessage};
use tokio::time::Instant;
use tonic::Code;

use super::Context;
use crate::error::{Error, Origin, caused_by};
use crate::registry::{MethodEntry, Snapshot};
use crate::route::{Binding, MatchError};
use crate::transcode::request::HttpInput;
use crate::transcode::response::{self, Rendered};
use crate::transcode::status;
use crate::transcode::stream::StreamFormat;
use crate::upstream::metadata;

/// Serves one REST request; never fails: errors become Status JSON.
pub async fn serve(context: &Context, request: Request<Body>) -> Response<Body> {
    let snapshot = context.registry.snapshot();
    match handle(context, &snapshot, request).await {
        Ok(response) => response,
        Err(error) => error_response(&error, Some(&snapshot.pool)),
    }
}

async fn handle(
    context: &Context,
    snapshot: &Snapshot,
    request: Request<Body>,
) -> Result<Response<Body>, Error> {
    let (parts, body) = request.into_parts();
    let found = snapshot
        .routes
        .find(&parts.method, parts.uri.path())
        .map_err(|e| match_error(e, &parts))?;
    let binding = found.binding;
    let method = snapshot
        .methods
        .get(binding.method)
        .ok_or_else(|| Error::gateway(Code::Internal, "binding points at no method"))?;
    if method.descriptor.is_client_streaming() {
        return Err(Error::client(
            Code::Unimplemented,
            format!(
                "{} is a client-streaming method; REST calls cannot stream requests",
                binding.rpc_name
            ),
        ));
    }
    let body = read_body(body, context.max_body_size).await?;
    let content_type = match parts.headers.get(CONTENT_TYPE) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| Error::unsupported_media_type("(not ASCII)"))?,
        ),
    };
    let input = HttpInput {
        variables: &found.variables,
        query: parts.uri.query(),
        content_type,
        body: &body,
    };
    let message = crate::transcode::request::build(
        binding,
        &method.descriptor.input(),
        input,
        &context.json,
    )?;
    let client = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let mut request = tonic::Request::new(message);
    *request.metadata_mut() =
        metadata::from_http(&parts.headers, client).map_err(Error::bad_request)?;
    let timeout = deadline(&parts, context, method.descriptor.is_server_streaming())?;
    if let Some(timeout) = timeout {
        request.set_timeout(timeout);
    }
    if method.descriptor.is_server_streaming() {
        let accept = parts.headers.get(ACCEPT).and_then(|v| v.to_str().ok());
        let format = StreamFormat::from_accept(accept);
        server_stream(context, snapshot, method, request, format, timeout).await
    } else {
        unary(context, method, binding, request, timeout).await
    }
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

/// Collects the body under the size limit (the tower layer wraps it in
/// `Limited`; a declared length over the limit never gets here).
async fn read_body(body: Body, limit: usize) -> Result<Bytes, Error> {
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if caused_by::<http_body_util::LengthLimitError>(e.as_ref()) => {
            Err(Error::payload_too_large(limit))
        }
        Err(e) => Err(Error::bad_request(format!(
            "cannot read the request body: {e}"
        ))),
    }
}

/// The call's timeout: the client's `Grpc-Timeout` capped by the configured
/// maximum, else the default for unary calls; streams run until they end.
fn deadline(parts: &Parts, context: &Context, streaming: bool) -> Result<Option<Duration>, Error> {
    let Some(value) = parts.headers.get("grpc-timeout") else {
        return Ok((!streaming).then_some(context.deadlines.default));
    };
    let parsed = value.to_str().ok().and_then(metadata::parse_grpc_timeout);
    let requested = parsed.ok_or_else(|| {
        Error::bad_request(format!(
            "invalid Grpc-Timeout {value:?}; expected digits and a unit such as 500m or 10S"
        ))
    })?;
    Ok(Some(requested.min(context.deadlines.max)))
}

async fn unary(
    context: &Context,
    method: &MethodEntry,
    binding: &Binding,
    request: tonic::Request<DynamicMessage>,
    timeout: Option<Duration>,
) -> Result<Response<Body>, Error> {
    let call = method.call.unary(request);
    let reply = match timeout {
        Some(timeout) => tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| deadline_exceeded(timeout))?,
        None => call.await,
    }
    .map_err(Error::from_upstream)?;
    let rendered = response::render(
        &reply.message,
        binding.response_body.as_ref(),
        &context.json,
        context.json.indent,
    )
    .map_err(|e| Error::gateway(Code::Internal, e))?;
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
    metadata::to_http(
        &reply.headers,
        metadata::HEADER_PREFIX,
        response.headers_mut(),
    );
    metadata::to_http(
        &reply.trailers,
        metadata::TRAILER_PREFIX,
        response.headers_mut(),
    );
    Ok(response)
}

fn deadline_exceeded(timeout: Duration) -> Error {
    Error::gateway(
        Code::DeadlineExceeded,
        format!("no answer within {timeout:?}"),
    )
}

/// Streams messages as they arrive, one frame each; a failure after the
/// first byte ends the stream with an in-band error record.
async fn server_stream(
    context: &Context,
    snapshot: &Snapshot,
    method: &MethodEntry,
    request: tonic::Request<DynamicMessage>,
    format: StreamFormat,
    timeout: Option<Duration>,
) -> Result<Response<Body>, Error> {
    let deadline = timeout.map(|t| (Instant::now() + t, t));
    let call = method.call.server_streaming(request);
    let started = match deadline {
        Some((at, t)) => tokio::time::timeout_at(at, call)
            .await
            .map_err(|_| deadline_exceeded(t))?,
        None => call.await,
    }
    .map_err(Error::from_upstream)?;
    let (headers, messages, _) = started.into_parts();
    let state = StreamState {
        messages,
        json: context.json.serialize_options(),
        pool: snapshot.pool.clone(),
    };
    let frames = frames(state, format, deadline);
    let mut response = Response::new(Body::from_stream(frames));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    response
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-cache"));
    metadata::to_http(&headers, metadata::HEADER_PREFIX, response.headers_mut());
    Ok(response)
}

/// What a server stream carries from one frame to the next.
struct StreamState {
    messages: tonic::Streaming<DynamicMessage>,
    json: prost_reflect::SerializeOptions,
    pool: DescriptorPool,
}

fn frames(
    state: StreamState,
    format: StreamFormat,
    deadline: Option<(Instant, Duration)>,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Send {
    futures_util::stream::unfold(Some(state), move |state| async move {
        let mut state = state?;
        let next = match deadline {
            Some((at, t)) => tokio::time::timeout_at(at, state.messages.message())
                .await
                .unwrap_or_else(|_| {
                    Err(tonic::Status::deadline_exceeded(format!(
                        "no end within {t:?}"
                    )))
                }),
            None => state.messages.message().await,
        };
        let failure = match next.map_err(Error::from_upstream) {
            Ok(None) => return None,
            Ok(Some(message)) => match response::to_json(&message, &state.json, false) {
                Ok(text) => return Some((Ok(format.message(&text)), Some(state))),
                Err(e) => Error::gateway(Code::Internal, e),
            },
            Err(error) => error,
        };
        Some((
            Ok(format.error(&error_body(&failure, Some(&state.pool)))),
            None,
        ))
    })
    .boxed()
}

/// The error as a response: Status JSON, the status from the table, `Allow`
/// on a 405. Gateway-side details go to the log only.
pub fn error_response(error: &Error, pool: Option<&DescriptorPool>) -> Response<Body> {
    let mut response = json_response(error.http_status(), error_body(error, pool));
    if let Some(allow) = error
        .allow
        .as_deref()
        .and_then(|a| HeaderValue::try_from(a).ok())
    {
        response.headers_mut().insert(ALLOW, allow);
    }
    response
}

fn error_body(error: &Error, pool: Option<&DescriptorPool>) -> Vec<u8> {
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
    let pools: Vec<&DescriptorPool> = pool.into_iter().collect();
    status::to_json(error.code as i32, &error.message, &error.details, &pools)
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
