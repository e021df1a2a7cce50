//! Framing for server streams, chosen by `Accept`: newline-delimited JSON
//! (default), Server-Sent Events, or one JSON array — each message framed as
//! it arrives, and a failed stream ended by an in-band error record.

use bytes::{BufMut, Bytes, BytesMut};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFormat {
    /// `application/x-ndjson`: one JSON message per line.
    Ndjson,
    /// `text/event-stream`: `data: <json>` per message.
    Sse,
    /// `application/json`: `[msg, msg, …]`, written element by element.
    JsonArray,
}

impl StreamFormat {
    /// SSE or a JSON array when the client asks for one, NDJSON otherwise
    /// (`*/*` included).
    pub fn from_accept(accept: Option<&str>) -> Self {
        let types = accept.unwrap_or("").split(',').filter_map(|part| part.split(';').next()).map(str::trim);
        let mut format = Self::Ndjson;
        for media_type in types {
            if media_type.eq_ignore_ascii_case("text/event-stream") {
                return Self::Sse;
            }
            if media_type.eq_ignore_ascii_case("application/json") {
                format = Self::JsonArray;
            }
        }
        format
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Ndjson => "application/x-ndjson",
            Self::Sse => "text/event-stream",
            Self::JsonArray => "application/json",
        }
    }

    /// The frame of the `index`-th message, around compact JSON (which has no
    /// raw newlines).
    pub fn message(self, json: &[u8], index: usize) -> Bytes {
        let mut out = BytesMut::with_capacity(json.len() + 8);
        match self {
            Self::Ndjson => {
                out.put_slice(json);
                out.put_u8(b'\n');
            }
            Self::Sse => {
                out.put_slice(b"data: ");
                out.put_slice(json);
                out.put_slice(b"\n\n");
            }
            Self::JsonArray => {
                out.put_u8(if index == 0 { b'[' } else { b',' });
                out.put_slice(json);
            }
        }
        out.freeze()
    }

    /// The record that ends a failed stream after `index` messages:
    /// `{"error": <status>}` (the array's last element) or an `error` event.
    pub fn error(self, status_json: &[u8], index: usize) -> Bytes {
        let mut out = BytesMut::with_capacity(status_json.len() + 16);
        match self {
            Self::Sse => {
                out.put_slice(b"event: error\ndata: ");
                out.put_slice(status_json);
                out.put_slice(b"\n\n");
            }
            Self::Ndjson | Self::JsonArray => {
                if self == Self::JsonArray {
                    out.put_u8(if index == 0 { b'[' } else { b',' });
                }
                out.put_slice(b"{\"error\":");
                out.put_slice(status_json);
                out.put_u8(b'}');
                out.put_u8(if self == Self::JsonArray { b']' } else { b'\n' });
            }
        }
        out.freeze()
    }

    /// What closes a clean stream of `count` messages.
    pub fn end(self, count: usize) -> Option<Bytes> {
        match self {
            Self::JsonArray if count == 0 => Some(Bytes::from_static(b"[]")),
            Self::JsonArray => Some(Bytes::from_static(b"]")),
            _ => None,
        }
    }

    /// A comment that keeps idle proxies from cutting an SSE stream.
    pub fn keepalive(self) -> Option<Bytes> {
        (self == Self::Sse).then(|| Bytes::from_static(b": keep-alive\n\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use StreamFormat::{JsonArray, Ndjson, Sse};

    #[test]
    fn frames_messages_errors_and_ends() {
        let m = b"{\"a\":1}";
        let e = b"{\"code\":5}";
        let cases: [(Bytes, &str); 12] = [
            (Ndjson.message(m, 0), "{\"a\":1}\n"),
            (Sse.message(m, 3), "data: {\"a\":1}\n\n"),
            (JsonArray.message(m, 0), "[{\"a\":1}"),
            (JsonArray.message(m, 1), ",{\"a\":1}"),
            (Ndjson.error(e, 2), "{\"error\":{\"code\":5}}\n"),
            (Sse.error(e, 0), "event: error\ndata: {\"code\":5}\n\n"),
            (JsonArray.error(e, 0), "[{\"error\":{\"code\":5}}]"),
            (JsonArray.error(e, 2), ",{\"error\":{\"code\":5}}]"),
            (JsonArray.end(0).unwrap(), "[]"),
            (JsonArray.end(3).unwrap(), "]"),
            (Sse.keepalive().unwrap(), ": keep-alive\n\n"),
            (Bytes::from(format!("{:?}", (Ndjson.end(1), Sse.end(1), Ndjson.keepalive()))), "(None, None, None)"),
        ];
        for (got, expected) in cases {
            assert_eq!(got, expected);
        }
    }

    #[test]
    fn picks_the_format_from_accept() {
        let cases = [
            (None, Ndjson),
            (Some("*/*"), Ndjson),
            (Some("application/x-ndjson"), Ndjson),
            (Some("application/json"), JsonArray),
            (Some("text/event-stream"), Sse),
            (Some("application/json, Text/Event-Stream;q=0.9"), Sse),
        ];
        for (accept, expected) in cases {
            assert_eq!(StreamFormat::from_accept(accept), expected, "{accept:?}");
        }
    }
}
