//! Per-route timeouts shared by every protocol: the call deadline (a
//! client's own timeout, capped, else the route's unary deadline or stream
//! lifetime) and the idle timeout between two messages of a response stream.
//! gRPC pass-through has no decoded messages, so its response body is paced
//! frame by frame and ends with a DEADLINE_EXCEEDED trailer.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};
use tonic::Code;

use crate::config::RouteTimeouts;
use crate::error::Error;
use crate::gateway::Deadlines;

/// The idle-timeout error, the same text for every protocol.
pub const IDLE_MESSAGE: &str = "no message within the stream's idle timeout";
const LIFETIME_MESSAGE: &str = "stream outlived its deadline";

/// The client's `grpc-timeout`, or a 400 naming a malformed one.
pub fn requested_timeout(headers: &http::HeaderMap) -> Result<Option<Duration>, Error> {
    let Some(value) = headers.get("grpc-timeout") else { return Ok(None) };
    let parsed = value.to_str().ok().and_then(crate::upstream::metadata::parse_grpc_timeout);
    parsed.map(Some).ok_or_else(|| {
        Error::bad_request(format!("invalid Grpc-Timeout {value:?}; expected digits and a unit such as 500m or 10S"))
    })
}

/// A stream's next answer within its idle timeout and lifetime, unless the
/// request reader fails first (`aborted`, see `inbound::messages`).
pub async fn next_answer(
    messages: &mut tonic::Streaming<Bytes>,
    (idle, deadline): (Option<Duration>, Option<Instant>),
    aborted: &mut Option<tokio::sync::oneshot::Receiver<Error>>,
) -> Result<Result<Option<Bytes>, tonic::Status>, Error> {
    let next = within_deadline(deadline, next_within(idle, messages.message()));
    tokio::select! {
        next = next => next,
        error = super::aborted(aborted) => Err(error),
    }
}

/// The deadline of one call: what the client asked for (capped by the
/// configured maximum), else the route's unary deadline (or the default)
/// for unary calls and the route's lifetime for streams.
pub fn call_deadline(
    requested: Option<Duration>,
    route: &RouteTimeouts,
    streaming: bool,
    deadlines: &Deadlines,
) -> Option<Duration> {
    match requested {
        Some(requested) => Some(requested.min(deadlines.max)),
        None if streaming => route.stream_lifetime,
        None => Some(route.unary.unwrap_or(deadlines.default)),
    }
}

/// Awaits the next message of a stream, unless it takes longer than `idle`.
pub async fn next_within<F: Future>(idle: Option<Duration>, next: F) -> Result<F::Output, Error> {
    match idle {
        Some(idle) => tokio::time::timeout(idle, next).await.map_err(|_| idle_error()),
        None => Ok(next.await),
    }
}

/// Awaits the start of a stream (the backend's response headers) within
/// the idle timeout too: a backend that accepts a call and never answers is
/// as idle as one that stops between messages.
pub async fn started_within<T>(
    idle: Option<Duration>,
    start: impl Future<Output = Result<T, tonic::Status>>,
) -> Result<T, Error> {
    next_within(idle, start).await?.map_err(Error::from_upstream)
}

/// A unary call, answer included, within its deadline.
pub async fn within<T, E: Into<Error>>(
    timeout: Option<Duration>,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, Error> {
    match timeout {
        Some(timeout) => tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| Error::gateway(Code::DeadlineExceeded, format!("no answer within {timeout:?}")))?,
        None => call.await,
    }
    .map_err(Into::into)
}

/// The next step of a stream, unless the whole call's deadline passes
/// first.
pub async fn within_deadline<T>(
    deadline: Option<Instant>,
    next: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match deadline {
        Some(at) => tokio::time::timeout_at(at, next).await.unwrap_or_else(|_| Err(lifetime_error())),
        None => next.await,
    }
}

pub fn idle_error() -> Error {
    Error::client(Code::DeadlineExceeded, IDLE_MESSAGE)
}

pub fn lifetime_error() -> Error {
    Error::gateway(Code::DeadlineExceeded, LIFETIME_MESSAGE)
}

/// A gRPC response body under an idle timeout and a total deadline; when
/// one passes, the inner body is dropped (cancelling the upstream stream)
/// and the response ends with `grpc-status: 4`.
pub struct PacedBody<B> {
    inner: Option<B>,
    idle: Option<Duration>,
    idle_timer: Option<Pin<Box<Sleep>>>,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<B> PacedBody<B> {
    /// `deadline` is an instant (the whole call's), `idle` a gap.
    pub fn new(inner: B, idle: Option<Duration>, deadline: Option<Instant>) -> Self {
        Self {
            inner: Some(inner),
            idle,
            idle_timer: idle.map(|idle| Box::pin(tokio::time::sleep(idle))),
            deadline: deadline.map(|at| Box::pin(tokio::time::sleep_until(at))),
        }
    }

    fn expired(&mut self, cx: &mut TaskContext<'_>) -> Option<&'static str> {
        if self.deadline.as_mut().is_some_and(|d| d.as_mut().poll(cx).is_ready()) {
            return Some(LIFETIME_MESSAGE);
        }
        if self.idle_timer.as_mut().is_some_and(|t| t.as_mut().poll(cx).is_ready()) {
            return Some(IDLE_MESSAGE);
        }
        None
    }
}

impl<B> Body for PacedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(frame) = Pin::new(inner).poll_frame(cx) {
            if let (Some(Ok(frame)), Some(idle)) = (&frame, self.idle)
                && frame.is_data()
                && let Some(timer) = self.idle_timer.as_mut()
            {
                timer.as_mut().reset(Instant::now() + idle);
            }
            return Poll::Ready(frame);
        }
        match self.expired(cx) {
            Some(message) => {
                self.inner = None;
                Poll::Ready(Some(Ok(Frame::trailers(super::grpc::status_trailers(Code::DeadlineExceeded, message)))))
            }
            None => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|inner| inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use futures_util::StreamExt;
    use http::HeaderMap;
    use http_body_util::{BodyExt, StreamBody};

    use super::*;

    const DEADLINES: Deadlines = Deadlines { default: Duration::from_secs(15), max: Duration::from_secs(60) };

    #[test]
    fn call_deadlines_prefer_the_client_capped_then_the_route() {
        let secs = Duration::from_secs;
        let route = RouteTimeouts { unary: Some(secs(2)), stream_idle: None, stream_lifetime: Some(secs(600)) };
        let cases = [
            (Some(secs(5)), route, false, Some(secs(5))),
            (Some(secs(500)), route, true, Some(secs(60))),
            (None, route, false, Some(secs(2))),
            (None, route, true, Some(secs(600))),
            (None, RouteTimeouts::default(), false, Some(secs(15))),
            (None, RouteTimeouts::default(), true, None),
        ];
        for (requested, route, streaming, expected) in cases {
            assert_eq!(call_deadline(requested, &route, streaming, &DEADLINES), expected, "{requested:?} {route:?}");
        }
    }

    /// A body that sends one frame, then nothing until dropped.
    fn stalling() -> impl Body<Data = Bytes, Error = Infallible> + Unpin {
        let first = futures_util::stream::iter([Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"one")))]);
        StreamBody::new(first.chain(futures_util::stream::pending()))
    }

    async fn frames(mut body: impl Body<Data = Bytes, Error = Infallible> + Unpin) -> (Vec<Bytes>, HeaderMap) {
        let mut data = Vec::new();
        while let Some(frame) = body.frame().await {
            match frame.unwrap_or_else(|never| match never {}).into_data() {
                Ok(bytes) => data.push(bytes),
                Err(frame) => return (data, frame.into_trailers().unwrap_or_default()),
            }
        }
        (data, HeaderMap::new())
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_grpc_body_ends_with_an_idle_deadline_trailer() {
        let (data, trailers) = frames(PacedBody::new(stalling(), Some(Duration::from_secs(30)), None)).await;
        assert_eq!(data, [Bytes::from_static(b"one")]);
        assert_eq!(trailers["grpc-status"], "4");
        assert_eq!(trailers["grpc-message"], IDLE_MESSAGE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_grpc_body_past_its_lifetime_ends_with_a_deadline_trailer() {
        let deadline = Instant::now() + Duration::from_secs(600);
        let (data, trailers) =
            frames(PacedBody::new(stalling(), Some(Duration::from_secs(3600)), Some(deadline))).await;
        assert_eq!(data.len(), 1);
        assert_eq!(trailers["grpc-message"], LIFETIME_MESSAGE);
        assert!(Instant::now() >= deadline);
    }
}
