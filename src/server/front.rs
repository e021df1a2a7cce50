//! The front door: every request on the public listener is admitted once
//! (`admission::admit`: protocol, snapshot, target), then passes the
//! policies in order — limits, authentication, rate limits — each reading
//! that one admission and refusing with a value, and is dispatched to its
//! protocol. A refusal is rendered once, by the protocol's renderer.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Response, StatusCode};

use crate::admission::{self, Admitted};
use crate::error::Error;
use crate::gateway::{Context, LiveContext};
use crate::middleware::{cors, limits};
use crate::openapi;
use crate::protocol;
use crate::telemetry::access::trace_of;

/// The router's only handler.
pub async fn handle(State(live): State<Arc<LiveContext>>, request: Request) -> Response<Body> {
    // Whatever refuses from here on, a body still being sent is read out.
    let mut request = protocol::drained_when_dropped(request);
    let context = live.pinned(&mut request);
    let snapshot = context.registry.snapshot();
    let admitted = Arc::new(admission::admit(snapshot, &context.composites, context.own_services, &mut request));
    request.extensions_mut().insert(admitted.clone());
    let (permits, rate_headers) = match admit(&context, &admitted, &mut request).await {
        Ok(admitted) => admitted,
        Err(error) => {
            trace_of(request.extensions()).grpc_code(error.code);
            return protocol::render(admitted.protocol, &error, request.headers());
        }
    };
    let response = match builtin(&context, &admitted, request.method(), request.uri(), request.headers()).await {
        Some(response) => response,
        None => protocol::dispatch(context, admitted, request).await,
    };
    let mut response = permits.hold(response);
    if let Some(headers) = rate_headers {
        response.headers_mut().extend(headers);
    }
    response
}

/// The policies, cheapest refusal first: limits (no protocol work yet),
/// then who is calling, then their rate limit (keyed by that caller).
/// Preflights pass authentication and rate limits: a browser sends them
/// without credentials.
async fn admit(
    context: &Context,
    admitted: &Admitted,
    request: &mut Request,
) -> Result<(limits::Permits, Option<http::HeaderMap>), Error> {
    let permits = limits::admit(&context.limits, request)?;
    // Resolved once here; the protocol handlers read it from the request.
    let route = context.policies(&admitted.snapshot).for_request(context, admitted);
    request.extensions_mut().insert(route.clone());
    if cors::is_preflight(request) {
        return Ok((permits, None));
    }
    context.auth.admit(admitted, route.auth.as_ref(), request).await?;
    let rate_headers = match context.limiter.as_deref() {
        Some(limiter) => limiter.admit(admitted, route.rate.as_ref(), request).await?,
        None => None,
    };
    Ok((permits, rate_headers))
}

/// The gateway's own endpoints on the public listener, when enabled:
/// health, readiness, the OpenAPI document and its docs page.
/// Takes the request's parts, not the request: its body is not `Sync`.
async fn builtin(
    context: &Arc<Context>,
    admitted: &Admitted,
    method: &Method,
    uri: &http::Uri,
    headers: &http::HeaderMap,
) -> Option<Response<Body>> {
    if method != Method::GET {
        return None;
    }
    match uri.path() {
        "/healthz" if context.public_health => Some(json(StatusCode::OK, &serde_json::json!({"status": "ok"}))),
        "/readyz" if context.public_health => {
            let (status, body) = crate::readiness::report(context).await;
            Some(json(status, &body))
        }
        "/openapi.json" if context.openapi => {
            let snapshot = admitted.snapshot.clone();
            let shown = context.clone();
            let rendered = tokio::task::spawn_blocking(move || shown.openapi_document(&snapshot)).await;
            Some(document(rendered.unwrap_or_default(), "application/json"))
        }
        "/docs" | "/docs/" if context.openapi => {
            Some(document(Bytes::from_static(openapi::docs::page().as_bytes()), "text/html; charset=utf-8"))
        }
        path if context.openapi => openapi::docs::asset(path).map(|asset| docs_file(asset, headers)),
        _ => None,
    }
}

/// A file of the docs page: cacheable, and sent gzipped from the copy
/// compressed once when the client takes gzip (the compression layer
/// leaves an already encoded answer alone).
fn docs_file(asset: &'static openapi::docs::Asset, headers: &http::HeaderMap) -> Response<Body> {
    let takes_gzip = headers
        .get_all(http::header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            name.eq_ignore_ascii_case("gzip") && !refused
        });
    let mut response = if takes_gzip {
        let mut response = document(Bytes::from_static(asset.gzipped()), asset.content_type);
        response.headers_mut().insert(http::header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        response
    } else {
        document(Bytes::from_static(asset.body), asset.content_type)
    };
    let headers = response.headers_mut();
    headers.insert(http::header::VARY, HeaderValue::from_static("accept-encoding"));
    headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    response
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut response = document(Bytes::from(body.to_string()), "application/json");
    *response.status_mut() = status;
    response
}

fn document(body: Bytes, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
