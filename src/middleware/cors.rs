//! CORS from configuration with tower-http's `CorsLayer`. It sits outside
//! every policy layer, so preflights are answered before authentication.

use std::sync::Arc;

use http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::CorsConfig;

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

/// An allowed origin: exact, or with one `*` standing for any text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    prefix: String,
    suffix: Option<String>,
}

impl OriginPattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        if !(text.starts_with("http://") || text.starts_with("https://")) {
            return Err(format!("origin {text:?} must start with http:// or https://"));
        }
        match text.split_once('*') {
            None => Ok(Self { prefix: text.to_string(), suffix: None }),
            Some((prefix, suffix)) if !suffix.contains('*') => {
                Ok(Self { prefix: prefix.to_string(), suffix: Some(suffix.to_string()) })
            }
            Some(_) => Err(format!("origin {text:?} may hold one '*' at most")),
        }
    }

    pub fn matches(&self, origin: &str) -> bool {
        match &self.suffix {
            None => origin == self.prefix,
            Some(suffix) => {
                let fits = origin.len() > self.prefix.len() + suffix.len()
                    && origin.starts_with(&self.prefix)
                    && origin.ends_with(suffix.as_str());
                // The wildcard stands for host text, never a path.
                fits && !origin[self.prefix.len()..origin.len() - suffix.len()].contains('/')
            }
        }
    }
}

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

/// The default methods: everything REST, gRPC-Web and Connect use.
pub fn default_methods() -> Vec<Method> {
    vec![Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_patterns_match_exactly_or_around_one_wildcard() {
        let cases = [
            ("https://app.example.com", "https://app.example.com", true),
            ("https://app.example.com", "https://app.example.com.evil.io", false),
            ("https://*.example.com", "https://a.example.com", true),
            ("https://*.example.com", "https://a.b.example.com", true),
            ("https://*.example.com", "https://.example.com", false),
            ("https://*.example.com", "https://example.com", false),
            ("https://*.example.com", "https://evil.io/.example.com", false),
            ("http://localhost:*", "http://localhost:5173", true),
            ("http://localhost:*", "https://localhost:5173", false),
        ];
        for (pattern, origin, expected) in cases {
            assert_eq!(OriginPattern::parse(pattern).unwrap().matches(origin), expected, "{pattern} vs {origin}");
        }
        assert!(OriginPattern::parse("example.com").is_err());
        assert!(OriginPattern::parse("https://*.*.com").is_err());
    }
}
