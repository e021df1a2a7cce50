//! REST streams: server streams framed by `Accept` (NDJSON, SSE with
//! keep-alive comments, JSON array), and client or bidirectional streams read
//! from an NDJSON or JSON-array request body as it arrives.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response};
use prost_reflect::{DescriptorPool, SerializeOptions};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tonic::Code;
use tonic::metadata::MetadataMap;

use super::error_body;
use crate::error::Error;
use crate::protocol::pacing::{idle_error, lifetime_error};
use crate::telemetry::metrics::{Direction, Metrics};
use crate::transcode::response::WireRenderer;
use crate::transcode::stream::StreamFormat;
use crate::upstream::metadata;

/// Everything a server stream needs from one frame to the next.
pub(super) struct Frames {
    pub messages: tonic::Streaming<Bytes>,
    pub render: WireRenderer,
    /// Counts which transcoder path rendered each message.
    pub metrics: Arc<Metrics>,
    pub format: StreamFormat,
    pub json: SerializeOptions,
    /// Each message as `{"result": …}` (the grpc-gateway profile).
    pub wrap_results: bool,
    pub pool: DescriptorPool,
    pub deadline: Option<(Instant, Duration)>,
    /// Longest wait for the next message, and when the last one came.
    pub idle: Option<Duration>,
    pub last: Instant,
    /// SSE comment interval, so idle proxies keep the connection.
    pub keepalive: Option<Duration>,
    /// A failure of the request body (client streams): ends the stream.
    pub aborted: Option<oneshot::Receiver<Error>>,
    pub sent: usize,
}

enum Event {
    Message(Bytes),
    End,
    Failed(Error),
    Idle,
}

/// The streaming HTTP response: status 200, then one frame per message.
pub(super) fn response(headers: &MetadataMap, frames: Frames) -> Response<Body> {
    let format = frames.format;
    let mut response = Response::new(Body::from_stream(stream(frames)));
    let out = response.headers_mut();
    out.insert(CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    out.insert("cache-control", HeaderValue::from_static("no-cache"));
    metadata::to_http(headers, metadata::HEADER_PREFIX, out);
    response
}

fn stream(frames: Frames) -> BoxStream<'static, Result<Bytes, Infallible>> {
    futures_util::stream::unfold(Some(frames), |state| async move {
        let mut state = state?;
        loop {
            match state.next_event().await {
                Event::Idle => match state.format.keepalive() {
                    Some(comment) => return Some((Ok(comment), Some(state))),
                    None => continue,
                },
                Event::Message(message) => match state.render.json(&message) {
                    Ok((json, fast)) => {
                        state.metrics.count_transcode(Direction::Response, fast);
                        let json = if state.wrap_results { wrapped(&json) } else { json };
                        state.last = Instant::now();
                        let frame = state.format.message(&json, state.sent);
                        state.sent += 1;
                        return Some((Ok(frame), Some(state)));
                    }
                    Err(e) => {
                        return Some((Ok(state.failure(Error::gateway(Code::Internal, e))), None));
                    }
                },
                Event::End => return state.format.end(state.sent).map(|end| (Ok(end), None)),
                Event::Failed(error) => return Some((Ok(state.failure(error)), None)),
            }
        }
    })
    .boxed()
}

/// `{"result": <message>}`, as grpc-gateway writes stream messages.
fn wrapped(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len() + 11);
    out.extend_from_slice(b"{\"result\":");
    out.extend_from_slice(json);
    out.push(b'}');
    out
}

impl Frames {
    async fn next_event(&mut self) -> Event {
        let deadline = async {
            match self.deadline {
                Some((at, _)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let stalled = async {
            match self.idle {
                Some(idle) => tokio::time::sleep_until(self.last + idle).await,
                None => std::future::pending().await,
            }
        };
        let idle = async {
            match self.keepalive {
                Some(interval) => tokio::time::sleep(interval).await,
                None => std::future::pending().await,
            }
        };
        let aborted = super::super::aborted(&mut self.aborted);
        tokio::select! {
            next = self.messages.message() => match next {
                Ok(Some(message)) => Event::Message(message),
                Ok(None) => Event::End,
                Err(status) => Event::Failed(Error::from_upstream(status)),
            },
            error = aborted => Event::Failed(error),
            () = deadline => Event::Failed(lifetime_error()),
            () = stalled => Event::Failed(idle_error()),
            () = idle => Event::Idle,
        }
    }

    fn failure(&self, error: Error) -> Bytes {
        self.format.error(&error_body(&error, Some((&self.pool, &self.json))), self.sent)
    }
}

/// Request messages read from a client-stream body: NDJSON line by line as
/// it arrives, or the elements of one JSON array (see `protocol::inbound`).
pub(super) fn requests<F, M>(
    body: Body,
    ndjson: bool,
    limit: usize,
    build: F,
) -> (impl Stream<Item = M> + Send + 'static, oneshot::Receiver<Error>)
where
    F: Fn(&[u8]) -> Result<M, Error> + Send + 'static,
    M: Send + 'static,
{
    let elements: BoxStream<'static, Result<Bytes, Error>> =
        if ndjson { lines(body, limit).boxed() } else { array_elements(body, limit).boxed() };
    crate::protocol::inbound::messages(elements, build)
}

/// Non-empty NDJSON lines, each at most `limit` bytes.
fn lines(body: Body, limit: usize) -> impl Stream<Item = Result<Bytes, Error>> + Send {
    futures_util::stream::unfold(Some((body.into_data_stream(), BytesMut::new())), move |state| async move {
        let (mut data, mut buffer) = state?;
        loop {
            if let Some(end) = buffer.iter().position(|&b| b == b'\n') {
                let line = buffer.split_to(end + 1).freeze();
                let line = line.slice(..line.len() - 1);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Some((Ok(line), Some((data, buffer))));
            }
            if buffer.len() > limit {
                return Some((Err(Error::payload_too_large(limit)), None));
            }
            match data.next().await {
                Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    return Some((Err(Error::bad_request(format!("cannot read the request body: {e}"))), None));
                }
                None if buffer.iter().all(u8::is_ascii_whitespace) => return None,
                None => return Some((Ok(std::mem::take(&mut buffer).freeze()), None)),
            }
        }
    })
}

/// The messages of an `application/json` client-stream body (read whole,
/// at most `limit` bytes): one JSON array, or JSON objects one after
/// another separated by whitespace, as grpc-gateway clients send them; an
/// empty body is zero messages.
fn array_elements(body: Body, limit: usize) -> impl Stream<Item = Result<Bytes, Error>> + Send {
    futures_util::stream::once(async move {
        let bytes = super::super::read_body(body, limit).await?;
        let invalid = |e: serde_json::Error| {
            Error::bad_request(format!("a client stream body must be a JSON array, JSON objects or NDJSON: {e}"))
        };
        let values: Vec<Box<serde_json::value::RawValue>> = match bytes.trim_ascii_start().first() {
            None => Vec::new(),
            Some(b'[') => serde_json::from_slice(&bytes).map_err(invalid)?,
            Some(_) => {
                serde_json::Deserializer::from_slice(&bytes).into_iter().collect::<Result<_, _>>().map_err(invalid)?
            }
        };
        Ok(values)
    })
    .flat_map(|parsed| {
        let items: Vec<Result<Bytes, Error>> = match parsed {
            Ok(values) => values.into_iter().map(|v| Ok(Bytes::copy_from_slice(v.get().as_bytes()))).collect(),
            Err(error) => vec![Err(error)],
        };
        futures_util::stream::iter(items)
    })
}

/// Whether a client-stream body is NDJSON (else a JSON array).
pub(super) fn is_ndjson(content_type: Option<&str>) -> bool {
    content_type
        .is_some_and(|ct| ct.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/x-ndjson")))
}
