//! HTTP headers ⇄ gRPC metadata per the contract, and deadlines.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use http::{HeaderMap, HeaderName, HeaderValue};
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, BinaryMetadataKey, BinaryMetadataValue, MetadataMap};

const METADATA_PREFIX: &str = "grpc-metadata-";

/// Metadata the gateway or the HTTP/2 and gRPC protocols own; never copied
/// between clients and backends.
const RESERVED: [&str; 9] = [
    "content-type",
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    "grpc-encoding",
    "grpc-accept-encoding",
    "te",
    "content-length",
    "date",
];

/// Which request headers carry metadata.
#[derive(Debug, Clone, Copy)]
pub enum Carrier {
    /// REST and WebSocket: `Grpc-Metadata-<k>` → `<k>`, and `Authorization`,
    /// the request id and the trace context as they are.
    Prefixed,
    /// Connect and gRPC's JSON codec: every header as it is but `grpc-*`,
    /// HTTP's own (`HTTP_HEADERS`) and those the protocol owns (`skipped`).
    Plain { skipped: &'static [&'static str] },
}

/// Headers that belong to HTTP, never metadata.
const HTTP_HEADERS: [&str; 9] = [
    "content-type",
    "content-length",
    "accept-encoding",
    "accept",
    "host",
    "connection",
    "te",
    "transfer-encoding",
    "user-agent",
];

/// Builds the request metadata from the headers `carrier` names, with
/// `X-Forwarded-For` / `X-Forwarded-Host` added; one function for every
/// protocol, so `-bin` decoding and the errors are the same everywhere. A
/// malformed entry is an error naming the header, never dropped.
pub fn from_http(
    headers: &HeaderMap,
    client: Option<SocketAddr>,
    authority: Option<&str>,
    carrier: Carrier,
) -> Result<MetadataMap, String> {
    let mut metadata = MetadataMap::new();
    match carrier {
        Carrier::Prefixed => prefixed(headers, &mut metadata)?,
        Carrier::Plain { skipped } => {
            for (name, value) in headers {
                let key = name.as_str();
                if HTTP_HEADERS.contains(&key) || skipped.contains(&key) || key.starts_with("grpc-") {
                    continue;
                }
                insert(&mut metadata, key, value).map_err(|e| format!("header {name}: {e}"))?;
            }
        }
    }
    set_forwarded(headers, client, authority, metadata.as_mut());
    Ok(metadata)
}

fn prefixed(headers: &HeaderMap, metadata: &mut MetadataMap) -> Result<(), String> {
    for (name, value) in headers {
        let Some(key) = name.as_str().strip_prefix(METADATA_PREFIX) else {
            continue;
        };
        if key.is_empty() || RESERVED.contains(&key) || key.starts_with("grpc-") {
            return Err(format!("header {name} sets reserved metadata"));
        }
        insert(metadata, key, value).map_err(|e| format!("header {name}: {e}"))?;
    }
    // The id the access log carries, so backend logs can be joined with it;
    // the W3C trace context (replaced by the gateway's own when it exports
    // spans).
    for name in ["authorization", "x-request-id", "traceparent", "tracestate"] {
        if let Some(value) = headers.get(name) {
            insert(metadata, name, value).map_err(|e| format!("header {name}: {e}"))?;
        }
    }
    Ok(())
}

/// Sets `X-Forwarded-For` (the client's chain with the peer appended) and
/// `X-Forwarded-Host` (the client's, else the `Host` or HTTP/2 `:authority`
/// it used) in `out`, for every protocol's upstream call.
pub fn set_forwarded(headers: &HeaderMap, client: Option<SocketAddr>, authority: Option<&str>, out: &mut HeaderMap) {
    let (forwarded_for, host) = forwarded(headers, client, authority);
    if let Some(value) = forwarded_for {
        out.insert("x-forwarded-for", value);
    }
    if let Some(host) = host {
        out.insert("x-forwarded-host", host);
    }
}

/// The `X-Forwarded-For` and `X-Forwarded-Host` values `set_forwarded` sets.
pub fn forwarded(
    headers: &HeaderMap,
    client: Option<SocketAddr>,
    authority: Option<&str>,
) -> (Option<HeaderValue>, Option<HeaderValue>) {
    let forwarded_for = match (headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()), client) {
        (Some(chain), Some(client)) => Some(format!("{chain}, {}", client.ip())),
        (None, Some(client)) => Some(client.ip().to_string()),
        (chain, None) => chain.map(str::to_string),
    };
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(http::header::HOST))
        .cloned()
        .or_else(|| authority.and_then(|a| HeaderValue::try_from(a).ok()));
    (forwarded_for.and_then(|v| HeaderValue::try_from(v).ok()), host)
}

fn insert(metadata: &mut MetadataMap, key: &str, value: &HeaderValue) -> Result<(), String> {
    if key.ends_with("-bin") {
        let key = BinaryMetadataKey::from_bytes(key.as_bytes()).map_err(|_| "invalid metadata key".to_string())?;
        // Padded or not, standard or URL-safe alphabet: clients differ.
        let trimmed = value.to_str().map_err(|_| "value is not ASCII".to_string())?.trim_end_matches('=');
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(trimmed)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(trimmed))
            .map_err(|_| "binary metadata must be base64".to_string())?;
        metadata.append_bin(key, BinaryMetadataValue::from_bytes(&bytes));
    } else {
        let key = AsciiMetadataKey::from_bytes(key.as_bytes()).map_err(|_| "invalid metadata key".to_string())?;
        let value = AsciiMetadataValue::try_from(value.as_bytes()).map_err(|_| "value is not ASCII".to_string())?;
        metadata.append(key, value);
    }
    Ok(())
}

/// Copies backend metadata to response headers under `prefix`
/// (`Grpc-Metadata-` / `Grpc-Trailer-` for REST, none or `trailer-` for
/// Connect). Names starting with `grpc-` belong to the protocol and stay out.
pub fn to_http(metadata: &MetadataMap, prefix: &str, out: &mut HeaderMap) {
    for (name, value) in metadata.as_ref() {
        if RESERVED.contains(&name.as_str()) || name.as_str().starts_with("grpc-") {
            continue;
        }
        if let Ok(name) = HeaderName::try_from(format!("{prefix}{name}")) {
            out.append(name, value.clone());
        }
    }
}

/// The `Grpc-Metadata-` prefix for header metadata in responses.
pub const HEADER_PREFIX: &str = "grpc-metadata-";
/// The `Grpc-Trailer-` prefix for trailer metadata in responses.
pub const TRAILER_PREFIX: &str = "grpc-trailer-";

/// Formats a deadline as a `Grpc-Timeout` value (at most 8 digits).
pub fn format_grpc_timeout(timeout: Duration) -> String {
    let millis = timeout.as_millis();
    if millis < 100_000_000 { format!("{}m", millis.max(1)) } else { format!("{}S", timeout.as_secs().min(99_999_999)) }
}

/// Parses a `Grpc-Timeout` value: up to 8 digits and a unit (H, M, S, m, u, n).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_grpc_timeouts() {
        let cases = [
            ("1H", Some(Duration::from_secs(3600))),
            ("2M", Some(Duration::from_secs(120))),
            ("3S", Some(Duration::from_secs(3))),
            ("250m", Some(Duration::from_millis(250))),
            ("7u", Some(Duration::from_micros(7))),
            ("9n", Some(Duration::from_nanos(9))),
            ("99999999S", Some(Duration::from_secs(99_999_999))),
            ("123456789S", None),
            ("S", None),
            ("10", None),
            ("1.5S", None),
            ("-1S", None),
            ("10s", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_grpc_timeout(text), expected, "{text}");
        }
    }

    const CONNECT_SKIPS: Carrier = Carrier::Plain { skipped: &["content-type", "host", "connect-timeout-ms"] };

    /// Each carrier on the same headers: (metadata key, value with the
    /// prefixed carrier, value with the plain one; None: not carried).
    #[test]
    fn maps_headers_to_metadata() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("grpc-metadata-tenant", "acme"),
            ("grpc-metadata-trace-bin", "AQID"),
            ("authorization", "Bearer t"),
            ("x-forwarded-for", "10.0.0.1"),
            ("host", "api.example.com"),
            ("x-other", "plain"),
            ("x-url-safe-bin", "_-8"),
            ("connect-timeout-ms", "100"),
            ("grpc-timeout", "1S"),
        ] {
            headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        let client = "127.0.0.1:5000".parse().ok();
        let prefixed = from_http(&headers, client, None, Carrier::Prefixed).unwrap();
        let plain = from_http(&headers, client, Some("gw:8080"), CONNECT_SKIPS).unwrap();
        let text = |m: &MetadataMap, key: &str| m.get(key).map(|v| v.to_str().unwrap().to_string());
        let cases: [(&str, Option<&str>, Option<&str>); 9] = [
            ("tenant", Some("acme"), None),
            ("grpc-metadata-tenant", None, None),
            ("authorization", Some("Bearer t"), Some("Bearer t")),
            ("x-forwarded-for", Some("10.0.0.1, 127.0.0.1"), Some("10.0.0.1, 127.0.0.1")),
            ("x-forwarded-host", Some("api.example.com"), Some("api.example.com")),
            ("x-other", None, Some("plain")),
            ("host", None, None),
            ("connect-timeout-ms", None, None),
            ("grpc-timeout", None, None),
        ];
        for (key, by_prefix, by_plain) in cases {
            assert_eq!(text(&prefixed, key).as_deref(), by_prefix, "prefixed {key}");
            assert_eq!(text(&plain, key).as_deref(), by_plain, "plain {key}");
        }
        assert_eq!(prefixed.get_bin("trace-bin").unwrap().to_bytes().unwrap().as_ref(), [1, 2, 3]);
        assert_eq!(plain.get_bin("x-url-safe-bin").unwrap().to_bytes().unwrap().as_ref(), [0xff, 0xef]);
        assert!(prefixed.get_bin("x-url-safe-bin").is_none());
    }

    #[test]
    fn refuses_malformed_metadata_headers() {
        let cases = [
            (
                Carrier::Prefixed,
                "grpc-metadata-grpc-status",
                "AA",
                "header grpc-metadata-grpc-status sets reserved metadata",
            ),
            (
                Carrier::Prefixed,
                "grpc-metadata-x-bin",
                "!!",
                "header grpc-metadata-x-bin: binary metadata must be base64",
            ),
            (CONNECT_SKIPS, "x-bin", "!!", "header x-bin: binary metadata must be base64"),
        ];
        for (carrier, name, value, expected) in cases {
            let mut headers = HeaderMap::new();
            headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
            assert_eq!(from_http(&headers, None, None, carrier).unwrap_err(), expected, "{name}");
        }
    }
}
