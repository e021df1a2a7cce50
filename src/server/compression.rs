//! Compressed bodies on the public listener, by tower-http: answers per
//! `Accept-Encoding` above a minimum size, and `Content-Encoding` request
//! bodies decoded before any protocol reads them — so the body-size limit
//! counts decompressed bytes and a zip bomb ends at that limit (413), not in
//! memory.
//!
//! Streams are compressed too: tower-http's encoder flushes whenever the
//! answer's body has nothing more ready, so each NDJSON line and SSE event
//! still leaves as soon as the backend sends it.

use http::HeaderMap;
use http::header::CONTENT_TYPE;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{Predicate, SizeAbove};
use tower_http::decompression::RequestDecompressionLayer;

use crate::config::CompressionConfig;

/// The answers worth compressing: not gRPC or gRPC-Web (their messages
/// carry their own compression), not Connect streams (compressed message by
/// message, `Connect-Content-Encoding`), not media that is compressed
/// already.
fn compressible(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let content_type = content_type.trim_start().to_ascii_lowercase();
    const PASSED_AS_THEY_ARE: [&str; 8] = [
        "application/grpc",
        "application/connect+",
        "image/",
        "video/",
        "audio/",
        "application/zip",
        "application/gzip",
        "application/zstd",
    ];
    !PASSED_AS_THEY_ARE.iter().any(|prefix| content_type.starts_with(prefix))
}

#[derive(Debug, Clone, Copy)]
pub struct Compressible {
    on: bool,
    size: SizeAbove,
}

impl Predicate for Compressible {
    fn should_compress<B: http_body::Body>(&self, response: &http::Response<B>) -> bool {
        self.on && compressible(response.headers()) && self.size.should_compress(response)
    }
}

/// The response compression layer; turned off it passes every answer as
/// it is. (Always present, so the stack has one type either way.)
pub fn responses(config: &CompressionConfig) -> CompressionLayer<Compressible> {
    let on = config.responses && (config.gzip || config.br || config.zstd);
    CompressionLayer::new()
        .gzip(config.gzip)
        .br(config.br)
        .zstd(config.zstd)
        .no_deflate()
        .compress_when(Compressible { on, size: SizeAbove::new(config.min_size) })
}

/// The request decompression layer. Encodings it does not decode (all,
/// when turned off) pass through with their header, for the protocol to
/// refuse in its own form (REST 415, Connect UNIMPLEMENTED listing what it
/// accepts).
pub fn requests(config: &CompressionConfig) -> RequestDecompressionLayer {
    let on = config.requests;
    RequestDecompressionLayer::new().gzip(on).br(on).zstd(on).no_deflate().pass_through_unaccepted(true)
}
