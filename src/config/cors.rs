//! `[cors]`: which browser origins may call, checked whole.

use serde::Deserialize;

use super::CorsConfig;
use http::Method;

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
            allowed_methods: default_methods().iter().map(|m| m.to_string()).collect(),
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
