//! `[compression]`: which encodings the public listener speaks, both ways.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(default)]
pub(super) struct RawCompression {
    responses: bool,
    requests: bool,
    min_size: u64,
    algorithms: Vec<String>,
}

impl Default for RawCompression {
    fn default() -> Self {
        Self {
            responses: true,
            requests: true,
            min_size: 1024,
            // br is off by default: at tower-http's level 4 it cost 3.8×
            // gzip's CPU on a 156 KB answer for 21 % fewer bytes
            // (scripts/load.py --compression), and Safari and Firefox would
            // pick it over gzip.
            algorithms: vec!["gzip".into(), "zstd".into()],
        }
    }
}

/// Compression of REST and Connect bodies (gRPC and gRPC-Web messages
/// pass through as their clients compressed them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressionConfig {
    /// Compress answers per `Accept-Encoding` (Connect streams per
    /// `Connect-Accept-Encoding`, message by message).
    pub responses: bool,
    /// Accept `Content-Encoding` request bodies in gzip, br or zstd
    /// (Connect streams: gzip-compressed envelopes).
    pub requests: bool,
    /// Answers of a known smaller size go out as they are.
    pub min_size: u16,
    /// The encodings answers may be compressed with.
    pub gzip: bool,
    pub br: bool,
    pub zstd: bool,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        Self { responses: true, requests: true, min_size: 1024, gzip: true, br: false, zstd: true }
    }
}

impl CompressionConfig {
    /// What a refused request body is told it may use instead.
    pub fn request_encodings(&self) -> &'static str {
        if self.requests { "gzip, br, zstd" } else { "identity" }
    }
}

pub(super) fn validate(raw: RawCompression, location: &str, errors: &mut Vec<String>) -> CompressionConfig {
    let mut config = CompressionConfig {
        responses: raw.responses,
        requests: raw.requests,
        gzip: false,
        br: false,
        zstd: false,
        ..CompressionConfig::default()
    };
    match u16::try_from(raw.min_size) {
        Ok(size) => config.min_size = size,
        Err(_) => errors.push(format!("{location}: `compression.min_size`: {} is above 65535 bytes", raw.min_size)),
    }
    for name in &raw.algorithms {
        match name.as_str() {
            "gzip" => config.gzip = true,
            "br" => config.br = true,
            "zstd" => config.zstd = true,
            other => errors.push(format!(
                "{location}: `compression.algorithms`: {other:?} is not one of \"gzip\", \"br\", \"zstd\""
            )),
        }
    }
    config
}
