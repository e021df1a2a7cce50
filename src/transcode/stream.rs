//! Framing for server streams: newline-delimited JSON or Server-Sent Events,
//! one message per frame, and the in-band error record that ends a failed
//! stream.

use bytes::{BufMut, Bytes, BytesMut};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFormat {
    /// `application/x-ndjson`: one JSON message per line.
    Ndjson,
    /// `text/event-stream`: `data: <json>` per message.
    Sse,
}

impl StreamFormat {
    /// SSE when the client asks for it, NDJSON otherwise.
    pub fn from_accept(accept: Option<&str>) -> Self {
        let wants_sse = accept.is_some_and(|a| {
            a.split(',').any(|part| {
                part.split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/event-stream"))
            })
        });
        if wants_sse { Self::Sse } else { Self::Ndjson }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Ndjson => "application/x-ndjson",
            Self::Sse => "text/event-stream",
        }
    }

    /// One message frame around compact JSON (which has no raw newlines).
    pub fn message(self, json: &[u8]) -> Bytes {
        self.frame(None, json)
    }

    /// The error record: `{"error": <status>}` or an `error` event.
    pub fn error(self, status_json: &[u8]) -> Bytes {
        match self {
            Self::Ndjson => {
                let mut out = BytesMut::with_capacity(status_json.len() + 11);
                out.put_slice(b"{\"error\":");
                out.put_slice(status_json);
                out.put_slice(b"}\n");
                out.freeze()
            }
            Self::Sse => self.frame(Some("error"), status_json),
        }
    }

    fn frame(self, event: Option<&str>, json: &[u8]) -> Bytes {
        let mut out = BytesMut::with_capacity(json.len() + 16);
        if self == Self::Sse {
            if let Some(event) = event {
                out.put_slice(b"event: ");
                out.put_slice(event.as_bytes());
                out.put_u8(b'\n');
            }
            out.put_slice(b"data: ");
            out.put_slice(json);
            out.put_slice(b"\n\n");
        } else {
            out.put_slice(json);
            out.put_u8(b'\n');
        }
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_messages_and_errors() {
        let cases = [
            (
                StreamFormat::Ndjson,
                StreamFormat::Ndjson.message(b"{\"a\":1}"),
                "{\"a\":1}\n",
            ),
            (
                StreamFormat::Sse,
                StreamFormat::Sse.message(b"{\"a\":1}"),
                "data: {\"a\":1}\n\n",
            ),
            (
                StreamFormat::Ndjson,
                StreamFormat::Ndjson.error(b"{\"code\":5}"),
                "{\"error\":{\"code\":5}}\n",
            ),
            (
                StreamFormat::Sse,
                StreamFormat::Sse.error(b"{\"code\":5}"),
                "event: error\ndata: {\"code\":5}\n\n",
            ),
        ];
        for (format, got, expected) in cases {
            assert_eq!(got, expected, "{format:?}");
        }
    }

    #[test]
    fn picks_the_format_from_accept() {
        let cases = [
            (None, StreamFormat::Ndjson),
            (Some("application/json"), StreamFormat::Ndjson),
            (Some("text/event-stream"), StreamFormat::Sse),
            (
                Some("application/json, Text/Event-Stream;q=0.9"),
                StreamFormat::Sse,
            ),
        ];
        for (accept, expected) in cases {
            assert_eq!(StreamFormat::from_accept(accept), expected, "{accept:?}");
        }
    }
}
