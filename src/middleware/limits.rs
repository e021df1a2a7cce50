//! Request limits that apply before any protocol work.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use http::Response;

use crate::error::Error;
use crate::protocol::rest::error_response;

/// Refuses URIs longer than the limit with 414 before they are routed.
pub async fn uri_length(State(limit): State<usize>, request: Request, next: Next) -> Response<Body> {
    let length = request.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if length > limit {
        return error_response(&Error::uri_too_long(length, limit), None);
    }
    next.run(request).await
}
