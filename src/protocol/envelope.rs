//! The 5-byte message envelope gRPC and Connect share: a flags byte (0x01:
//! compressed) and a big-endian length. Request bodies are read envelope
//! by envelope as they arrive, each message checked against its limit
//! before it is buffered and inflated under the body limit.

use axum::body::Body;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};

use super::connect::compression::{self, Encoding};
use crate::error::Error;
use crate::protocol::rest::check_size;

pub(crate) const PREFIX: usize = 5;
pub(crate) const COMPRESSED: u8 = 0x01;

#[derive(Clone, Copy)]
pub(crate) struct Limits {
    /// Largest message a client may announce.
    pub message: usize,
    /// Largest a compressed message may inflate to.
    pub inflated: usize,
    /// The header that declares the messages' encoding, named when a
    /// compressed message comes without one.
    pub encoding_header: &'static str,
}

/// The body's envelopes, each message opened (inflated when its flag says
/// so) as soon as it is whole; only one message is ever buffered.
pub(crate) fn envelopes(
    body: Body,
    limits: Limits,
    encoding: Encoding,
) -> impl Stream<Item = Result<Bytes, Error>> + Send {
    let start = Some((body.into_data_stream(), BytesMut::new()));
    futures_util::stream::unfold(start, move |state| async move {
        let (mut data, mut buffer) = state?;
        loop {
            match next_envelope(&mut buffer, limits, encoding) {
                Ok(Some(message)) => return Some((Ok(message), Some((data, buffer)))),
                Ok(None) => {}
                Err(error) => return Some((Err(error), None)),
            }
            match data.next().await {
                Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    return Some((Err(Error::bad_request(format!("cannot read the request body: {e}"))), None));
                }
                None if buffer.is_empty() => return None,
                None => {
                    let message = "truncated envelope: the request body ended inside a message";
                    return Some((Err(Error::bad_request(message)), None));
                }
            }
        }
    })
}

/// The first whole envelope's message, or none while it is incomplete.
fn next_envelope(buffer: &mut BytesMut, limits: Limits, encoding: Encoding) -> Result<Option<Bytes>, Error> {
    let Some((flags, length)) = prefix(buffer) else { return Ok(None) };
    if flags & !COMPRESSED != 0 {
        return Err(Error::bad_request(format!("unknown envelope flags {flags:#04x} in a request stream")));
    }
    check_size(length, limits.message)?;
    if buffer.len() < PREFIX + length {
        return Ok(None);
    }
    let envelope = buffer.split_to(PREFIX + length).freeze();
    open(flags, &envelope[PREFIX..], encoding, (limits.inflated, limits.encoding_header)).map(Some)
}

/// An envelope's flags and announced length, once its prefix is in.
pub(crate) fn prefix(bytes: &[u8]) -> Option<(u8, usize)> {
    let prefix = bytes.get(..PREFIX)?;
    Some((prefix[0], u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize))
}

/// An envelope's message, inflated (to at most `limit` bytes) when its flag
/// says it is compressed; `header` declares the encoding.
pub(crate) fn open(
    flags: u8,
    message: &[u8],
    encoding: Encoding,
    (limit, header): (usize, &str),
) -> Result<Bytes, Error> {
    match (flags & COMPRESSED != 0, encoding) {
        (false, _) => Ok(Bytes::copy_from_slice(message)),
        (true, Encoding::Identity) => Err(Error::bad_request(format!("a compressed envelope, but no {header}"))),
        (true, encoding) => compression::decode(encoding, message, limit),
    }
}

pub(crate) fn envelope(flags: u8, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 5);
    out.put_u8(flags);
    out.put_u32(payload.len() as u32);
    out.put_slice(payload);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(flags: u8, message: &[u8]) -> Vec<u8> {
        let mut out = vec![flags];
        out.extend_from_slice(&(message.len() as u32).to_be_bytes());
        out.extend_from_slice(message);
        out
    }

    /// Bytes in, the encoding declared, the message out (none while it is
    /// incomplete) or the start of the error.
    type Case = (Vec<u8>, Encoding, Result<Option<&'static [u8]>, &'static str>);

    #[test]
    fn envelopes_are_taken_whole_and_checked() {
        let limits = Limits { message: 8, inflated: 64, encoding_header: "Connect-Content-Encoding" };
        let hello = b"hello ".repeat(20);
        let gzipped = compression::gzip(&hello).unwrap();
        let cases: Vec<Case> = vec![
            (frame(0, b"abc"), Encoding::Identity, Ok(Some(b"abc"))),
            (frame(0, b"abc")[..6].to_vec(), Encoding::Identity, Ok(None)),
            (vec![0, 0, 0], Encoding::Identity, Ok(None)),
            (frame(0, b""), Encoding::Identity, Ok(Some(b""))),
            (frame(0, b"123456789"), Encoding::Identity, Err("is 9 bytes")),
            (frame(2, b"{}"), Encoding::Identity, Err("unknown envelope flags 0x02")),
            (frame(1, b"abc"), Encoding::Identity, Err("a compressed envelope, but no Connect-Content-Encoding")),
            (frame(1, &gzipped[..gzipped.len().min(8)]), Encoding::Gzip, Err("")),
        ];
        for (bytes, encoding, expected) in cases {
            let mut buffer = BytesMut::from(&bytes[..]);
            let got = next_envelope(&mut buffer, limits, encoding);
            match (&got, expected) {
                (Ok(got), Ok(want)) => assert_eq!(got.as_deref(), want, "{bytes:?}"),
                (Err(error), Err(want)) => assert!(error.message.contains(want), "{bytes:?}: {}", error.message),
                _ => panic!("{bytes:?}: got {got:?}"),
            }
        }
        let limits = Limits { message: 64, inflated: 200, encoding_header: "" };
        let mut buffer = BytesMut::from(&frame(1, &gzipped)[..]);
        assert_eq!(next_envelope(&mut buffer, limits, Encoding::Gzip).unwrap().as_deref(), Some(&hello[..]));
        let inflated_past_the_limit = Limits { message: 64, inflated: 50, encoding_header: "" };
        let mut buffer = BytesMut::from(&frame(1, &gzipped)[..]);
        assert!(next_envelope(&mut buffer, inflated_past_the_limit, Encoding::Gzip).is_err());
        assert!(buffer.is_empty());
    }
}
