//! Connect's message compression: a stream's envelopes
//! (`Connect-Content-Encoding`, the envelope's compressed flag,
//! `Connect-Accept-Encoding`) and a GET's `compression=` message. gzip, the
//! encoding every Connect implementation has. (Unary bodies use HTTP's own
//! `Content-Encoding`, decoded and encoded by the listener's layers.)

use std::io::{Read, Write};

use bytes::Bytes;
use http::HeaderMap;
use tonic::Code;

use crate::config::CompressionConfig;
use crate::error::Error;

/// How a request's messages are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Identity,
    Gzip,
}

/// What a declared encoding applies to, which says where a refusal lists
/// the accepted ones and what they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
    /// A unary body (`Content-Encoding`): whatever the listener decodes.
    Body,
    /// Stream envelopes and GET messages: gzip.
    Messages,
}

impl Scope {
    fn header(self) -> http::HeaderName {
        match self {
            Self::Body => http::header::ACCEPT_ENCODING,
            Self::Messages => http::HeaderName::from_static("connect-accept-encoding"),
        }
    }

    fn accepted(self, config: &CompressionConfig) -> &'static str {
        match self {
            Self::Body => config.request_encodings(),
            Self::Messages if config.requests => "gzip",
            Self::Messages => "identity",
        }
    }
}

/// A request's declared encoding; an unsupported one is refused
/// UNIMPLEMENTED naming what is accepted, in the scope's accept header too,
/// as the Connect protocol says.
pub(super) fn declared(value: Option<&str>, config: &CompressionConfig, scope: Scope) -> Result<Encoding, Error> {
    match value.map(str::trim) {
        None | Some("") | Some("identity") => Ok(Encoding::Identity),
        Some("gzip") if config.requests => Ok(Encoding::Gzip),
        Some(other) => {
            let accepted = scope.accepted(config);
            let mut error = Error::client(
                Code::Unimplemented,
                format!("unsupported compression {other:?}; this gateway accepts {accepted}"),
            );
            error.set_header(scope.header(), accepted);
            Err(error)
        }
    }
}

/// A message as sent, decompressed, at most `limit` bytes of it (a zip
/// bomb stops there).
pub(crate) fn decode(encoding: Encoding, message: &[u8], limit: usize) -> Result<Bytes, Error> {
    if encoding == Encoding::Identity {
        return Ok(Bytes::copy_from_slice(message));
    }
    let mut out = Vec::new();
    let read = flate2::read::GzDecoder::new(message).take(limit as u64 + 1).read_to_end(&mut out);
    match read {
        Ok(n) if n > limit => Err(Error::payload_too_large(limit)),
        Ok(_) => Ok(out.into()),
        Err(e) => Err(Error::bad_request(format!("the message is not valid gzip: {e}"))),
    }
}

/// Whether a stream's answers go out compressed: gzip is on and the client
/// lists it in `Connect-Accept-Encoding`.
pub(super) fn answer_gzip(headers: &HeaderMap, config: &CompressionConfig) -> bool {
    config.responses
        && config.gzip
        && headers
            .get_all("connect-accept-encoding")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|e| e.trim().eq_ignore_ascii_case("gzip"))
}

/// One message gzip-compressed, when that makes it smaller.
pub(crate) fn gzip(message: &[u8]) -> Option<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(message).ok()?;
    encoder.finish().ok().filter(|compressed| compressed.len() < message.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_encodings_are_accepted_or_refused_with_what_is_accepted() {
        let on = CompressionConfig::default();
        let off = CompressionConfig { requests: false, ..on };
        type Case = (Option<&'static str>, CompressionConfig, Scope, Result<Encoding, &'static str>);
        let cases: [Case; 6] = [
            (None, on, Scope::Messages, Ok(Encoding::Identity)),
            (Some("identity"), on, Scope::Messages, Ok(Encoding::Identity)),
            (Some("gzip"), on, Scope::Messages, Ok(Encoding::Gzip)),
            (Some("br"), on, Scope::Messages, Err("gzip")),
            (Some("gzip"), off, Scope::Messages, Err("identity")),
            (Some("snappy"), on, Scope::Body, Err("gzip, br, zstd")),
        ];
        for (value, config, scope, expected) in cases {
            match (declared(value, &config, scope), expected) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{value:?}"),
                (Err(error), Err(accepted)) => {
                    assert_eq!(error.code, Code::Unimplemented, "{value:?}");
                    assert!(error.message.ends_with(&format!("accepts {accepted}")), "{value:?}: {}", error.message);
                    assert_eq!(error.header(scope.header()), Some(accepted), "{value:?}");
                }
                (got, want) => panic!("{value:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn gzip_round_trips_and_a_bomb_stops_at_the_limit() {
        let message = vec![b'a'; 10_000];
        let compressed = gzip(&message).unwrap();
        assert!(compressed.len() < 100);
        assert_eq!(decode(Encoding::Gzip, &compressed, 10_000).unwrap(), message);
        let bomb = decode(Encoding::Gzip, &compressed, 9_999).unwrap_err();
        assert_eq!(bomb.code, Code::ResourceExhausted, "{bomb:?}");
        let garbage = decode(Encoding::Gzip, b"not gzip", 100).unwrap_err();
        assert_eq!(garbage.code, Code::InvalidArgument);
        assert_eq!(gzip(b"ab"), None, "a message gzip makes larger goes as it is");
    }
}
