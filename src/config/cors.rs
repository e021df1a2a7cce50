//! `[cors]`: which browser origins may call, checked whole.

use serde::Deserialize;

use super::CorsConfig;
use crate::middleware::cors::OriginPattern;

#[derive(Debug, Deserialize)]
#[serde(default)]
pub(super) struct RawCors {
    allowed_origins: Vec<String>,
    allowed_methods: Vec<String>,
    allowed_headers: Vec<String>,
    exposed_headers: Vec<String>,
    allow_credentials: bool,
    max_age: String,
}

impl Default for RawCors {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            allowed_methods: crate::middleware::cors::default_methods().iter().map(|m| m.to_string()).collect(),
            allowed_headers: Vec::new(),
            exposed_headers: Vec::new(),
            allow_credentials: false,
            max_age: "10m".into(),
        }
    }
}

/// CORS settings, every entry checked.
pub(super) fn validate(raw: RawCors, location: &str, errors: &mut Vec<String>) -> CorsConfig {
    let any_origin = raw.allowed_origins.iter().any(|o| o == "*");
    if any_origin && raw.allow_credentials {
        errors.push(format!("{location}: `cors.allowed_origins`: \"*\" cannot be combined with allow_credentials"));
    }
    let mut report = |key: &str, e: String| errors.push(format!("{location}: `cors.{key}`: {e}"));
    let allowed_origins = raw
        .allowed_origins
        .iter()
        .filter(|o| *o != "*")
        .filter_map(|o| OriginPattern::parse(o).map_err(|e| report("allowed_origins", e)).ok())
        .collect();
    let allowed_methods = raw
        .allowed_methods
        .iter()
        .filter_map(|m| m.parse().map_err(|_| report("allowed_methods", format!("{m:?} is not an HTTP method"))).ok())
        .collect();
    let mut headers = |key: &str, names: &[String]| -> Vec<http::HeaderName> {
        names
            .iter()
            .filter_map(|h| h.parse().map_err(|_| report(key, format!("{h:?} is not a header name"))).ok())
            .collect()
    };
    let allowed_headers = headers("allowed_headers", &raw.allowed_headers);
    let exposed_headers = headers("exposed_headers", &raw.exposed_headers);
    let max_age = humantime::parse_duration(&raw.max_age)
        .map_err(|e| errors.push(format!("{location}: `cors.max_age`: {:?} is not a duration ({e})", raw.max_age)))
        .unwrap_or_default();
    CorsConfig {
        allowed_origins,
        any_origin,
        allowed_methods,
        allowed_headers,
        exposed_headers,
        allow_credentials: raw.allow_credentials,
        max_age,
    }
}
