//! CORS from configuration with tower-http's `CorsLayer`. It sits outside
//! every policy layer, so preflights are answered before authentication.

use std::sync::Arc;

use http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::CorsConfig;
pub use crate::config::{OriginPattern, default_methods};

/// Request headers browsers' gRPC-Web and Connect clients send, always allowed.
pub const DEFAULT_ALLOWED_HEADERS: [&str; 11] = [
    "content-type",
    "authorization",
    "accept",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
    "connect-protocol-version",
    "connect-timeout-ms",
    "connect-accept-encoding",
    "connect-content-encoding",
    "x-request-id",
];

/// Response headers scripts may read, always exposed.
pub const DEFAULT_EXPOSED_HEADERS: [&str; 4] =
    ["grpc-status", "grpc-message", "grpc-status-details-bin", "x-request-id"];

/// The CORS layer, or none when no origin is allowed.
pub fn layer(config: &CorsConfig) -> Option<CorsLayer> {
    if config.allowed_origins.is_empty() && !config.any_origin {
        return None;
    }
    let origins = if config.any_origin {
        AllowOrigin::any()
    } else {
        let patterns = Arc::new(config.allowed_origins.clone());
        AllowOrigin::predicate(move |origin: &HeaderValue, _| {
            origin.to_str().is_ok_and(|o| patterns.iter().any(|p| p.matches(o)))
        })
    };
    let headers = |names: &[&'static str], extra: &[HeaderName]| -> Vec<HeaderName> {
        let mut all: Vec<HeaderName> = names.iter().map(|n| HeaderName::from_static(n)).collect();
        all.extend(extra.iter().cloned());
        all
    };
    Some(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods(config.allowed_methods.clone())
            .allow_headers(headers(&DEFAULT_ALLOWED_HEADERS, &config.allowed_headers))
            .expose_headers(headers(&DEFAULT_EXPOSED_HEADERS, &config.exposed_headers))
            .allow_credentials(config.allow_credentials)
            .max_age(config.max_age),
    )
}

/// Whether a request is a CORS preflight, which no policy may refuse.
pub fn is_preflight<B>(request: &http::Request<B>) -> bool {
    request.method() == Method::OPTIONS && request.headers().contains_key("access-control-request-method")
}
