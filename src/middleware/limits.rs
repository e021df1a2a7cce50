//! Request limits that apply before any protocol work: URI length, and the
//! Status JSON form of a body refused by tower-http's body limit.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use http::header::CONTENT_TYPE;
use http::{Response, StatusCode};

use crate::error::Error;
use crate::protocol::rest::error_response;

/// Refuses URIs longer than the limit with 414 before they are routed.
pub async fn uri_length(
    State(limit): State<usize>,
    request: Request,
    next: Next,
) -> Response<Body> {
    let length = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if length > limit {
        return error_response(&Error::uri_too_long(length, limit), None);
    }
    next.run(request).await
}

/// tower-http answers a declared length over the limit with a bare 413;
/// give it the same Status JSON body as every other error.
pub async fn body_limit_as_status(
    State(limit): State<usize>,
    response: Response<Body>,
) -> Response<Body> {
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_json {
        return error_response(&Error::payload_too_large(limit), None);
    }
    response
}
