//! Connect client and bidirectional streams: request envelopes read from the
//! body as they arrive (each opened, checked and transcoded), sent on one
//! upstream call whose answers go back as a Connect stream. Half duplex
//! (HTTP/1.1: the client sends everything, then reads) and full duplex
//! (HTTP/2) are one path: an answer goes out as soon as the backend writes it.

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http::Response;
use http::request::Parts;
use prost_reflect::DynamicMessage;

use super::compression::{self, Encoding};
use super::{COMPRESSED, Codec, StreamStart, call_request, stream_response};
use crate::error::Error;
use crate::gateway::Context;
use crate::protocol::pacing::within;
use crate::protocol::{aborted, counted, inbound};
use crate::registry::{MethodEntry, Snapshot};
use crate::telemetry::access::trace_of;
use crate::telemetry::metrics::Direction;
use crate::transcode::request::{HttpInput, WireBuilder};

const PREFIX: usize = 5;

pub(super) async fn request_stream(
    context: &Context,
    snapshot: &Snapshot,
    method: &MethodEntry,
    parts: &Parts,
    body: Body,
    codec: Codec,
) -> Result<Response<Body>, Error> {
    let declared = parts.headers.get("connect-content-encoding").and_then(|v| v.to_str().ok());
    let encoding = compression::declared(declared, &context.compression, compression::Scope::Messages)?;
    let limits = Limits { message: method.call.max_message_size, inflated: context.max_body_size };
    let build = builder(context, snapshot, method, codec);
    let (messages, abort) = inbound::messages(envelopes(body, limits, encoding).boxed(), build);
    let mut abort = Some(abort);
    let (request, timeout) = call_request(messages, parts, context, true)?;
    let deadline = timeout.map(|timeout| tokio::time::Instant::now() + timeout);
    let trace = trace_of(&parts.extensions);
    // No idle timeout on the start: a client-streaming backend answers
    // (headers included) only once the client has sent everything.
    let started = tokio::select! {
        started = trace.time_backend(within(timeout, method.call.streaming(request))) => started,
        error = aborted(&mut abort) => Err(error),
    };
    let (headers, messages, _) = counted(context, &method.upstream, started)?.into_parts();
    let start = StreamStart { headers, messages, deadline, aborted: abort };
    Ok(stream_response(context, snapshot, method, parts, codec, start))
}

/// How each request message becomes the backend's: protobuf as sent once
/// it decodes, JSON by the fast transcoder or prost-reflect.
fn builder(
    context: &Context,
    snapshot: &Snapshot,
    method: &MethodEntry,
    codec: Codec,
) -> impl Fn(&[u8]) -> Result<Bytes, Error> + Send + 'static {
    let input = method.descriptor.input();
    let plans = (snapshot.plans.clone(), method.input_plan);
    let json = WireBuilder::new(None, input.clone(), plans, &context.json);
    let metrics = context.metrics.clone();
    move |message: &[u8]| match codec {
        Codec::Proto => {
            DynamicMessage::decode(input.clone(), message)
                .map_err(|e| Error::bad_request(format!("invalid protobuf message: {e}")))?;
            Ok(Bytes::copy_from_slice(message))
        }
        Codec::Json => {
            let http = HttpInput { variables: &[], query: None, content_type: Some("application/json"), body: message };
            let (wire, fast) = json.wire(http)?;
            metrics.count_transcode(Direction::Request, fast);
            Ok(Bytes::from(wire))
        }
    }
}

#[derive(Clone, Copy)]
struct Limits {
    /// Largest message a client may announce.
    message: usize,
    /// Largest a compressed message may inflate to.
    inflated: usize,
}

/// The body's envelopes, each message opened (inflated when its flag says
/// so) as soon as it is whole; only one message is ever buffered.
fn envelopes(body: Body, limits: Limits, encoding: Encoding) -> impl Stream<Item = Result<Bytes, Error>> + Send {
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
    let Some(prefix) = buffer.get(..PREFIX) else { return Ok(None) };
    let flags = prefix[0];
    let length = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    if flags & !COMPRESSED != 0 {
        return Err(Error::bad_request(format!("unknown envelope flags {flags:#04x} in a request stream")));
    }
    crate::protocol::rest::check_size(length, limits.message)?;
    if buffer.len() < PREFIX + length {
        return Ok(None);
    }
    let envelope = buffer.split_to(PREFIX + length).freeze();
    super::open_envelope(flags, &envelope[PREFIX..], encoding, limits.inflated).map(Some)
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
        let limits = Limits { message: 8, inflated: 64 };
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
        let limits = Limits { message: 64, inflated: 200 };
        let mut buffer = BytesMut::from(&frame(1, &gzipped)[..]);
        assert_eq!(next_envelope(&mut buffer, limits, Encoding::Gzip).unwrap().as_deref(), Some(&hello[..]));
        let inflated_past_the_limit = Limits { message: 64, inflated: 50 };
        let mut buffer = BytesMut::from(&frame(1, &gzipped)[..]);
        assert!(next_envelope(&mut buffer, inflated_past_the_limit, Encoding::Gzip).is_err());
        assert!(buffer.is_empty());
    }
}
