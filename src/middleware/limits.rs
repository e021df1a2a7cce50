//! Request limits that apply before any protocol work: URI length, header
//! size, and concurrency with load shedding. Refusals take the protocol's
//! own form (Status JSON, or a trailers-only gRPC status).

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body::{Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Code;

use crate::error::Error;

/// The limits checked per request.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    pub max_uri_length: usize,
    pub max_header_bytes: usize,
    /// Requests (streams included, until their body ends) served at once.
    pub concurrency: Arc<Semaphore>,
    /// Each client's share of those permits.
    pub per_client: Arc<ClientShares>,
    /// Longest wait for the next piece of a request body.
    pub body_timeout: Duration,
}

/// Requests in flight per client address, so that one peer holding
/// requests open (slow bodies, zero-window HTTP/2 streams) cannot take
/// every permit: 21 such connections made every other client's requests
/// 503 for as long as they liked.
#[derive(Debug)]
pub struct ClientShares {
    max: usize,
    in_flight: Mutex<HashMap<IpAddr, usize>>,
}

/// One request's place in its client's share; freed when dropped.
struct Share {
    shares: Arc<ClientShares>,
    client: IpAddr,
}

/// A response body that holds a concurrency permit and the client's share
/// until it is done.
struct Permitted {
    inner: Body,
    _permit: OwnedSemaphorePermit,
    _share: Option<Share>,
}

impl ClientShares {
    pub fn new(max: usize) -> Self {
        Self { max, in_flight: Mutex::new(HashMap::new()) }
    }

    fn take(self: &Arc<Self>, client: IpAddr) -> Option<Share> {
        let mut in_flight = self.in_flight.lock().ok()?;
        let count = in_flight.entry(client).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Share { shares: self.clone(), client })
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        if let Ok(mut in_flight) = self.shares.in_flight.lock()
            && let Some(count) = in_flight.get_mut(&self.client)
        {
            *count -= 1;
            if *count == 0 {
                in_flight.remove(&self.client);
            }
        }
    }
}

/// What an admitted request holds until its response body is done.
pub struct Permits {
    permit: OwnedSemaphorePermit,
    share: Option<Share>,
}

impl Permits {
    /// The response, holding the permits until its body ends.
    pub fn hold(self, response: Response<Body>) -> Response<Body> {
        response.map(|inner| Body::new(Permitted { inner, _permit: self.permit, _share: self.share }))
    }
}

/// Refuses oversized URIs (414) and headers (431), and sheds load (503 with
/// `Retry-After`) when every concurrency permit is taken; an admitted
/// request's body must then keep coming (`body_timeout`).
pub fn admit(limits: &RequestLimits, request: &mut Request) -> Result<Permits, Error> {
    let length = request.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if length > limits.max_uri_length {
        return Err(Error::uri_too_long(length, limits.max_uri_length));
    }
    let header_bytes: usize = request.headers().iter().map(|(n, v)| n.as_str().len() + v.len()).sum();
    if header_bytes > limits.max_header_bytes {
        let mut error = Error::client(
            Code::InvalidArgument,
            format!("request headers are {header_bytes} bytes, over the limit of {}", limits.max_header_bytes),
        );
        error.http_status = Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        return Err(error);
    }
    let client = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let share = match client {
        Some(client) => match limits.per_client.take(client) {
            Some(share) => Some(share),
            None => return Err(at_capacity("this client has too many requests in flight; retry shortly")),
        },
        None => None,
    };
    let Ok(permit) = limits.concurrency.clone().try_acquire_owned() else {
        return Err(at_capacity("the gateway is at capacity; retry shortly"));
    };
    // gRPC and Connect streams may idle between messages for as long as
    // their stream timeouts allow; every other body must keep coming.
    let content_type = request.headers().get(http::header::CONTENT_TYPE).map(HeaderValue::as_bytes).unwrap_or(b"");
    let streams = content_type.starts_with(b"application/grpc") || content_type.starts_with(b"application/connect+");
    if !streams {
        let inner = std::mem::take(request.body_mut());
        *request.body_mut() = Body::new(Paced { inner, timeout: limits.body_timeout, stalled: None });
    }
    Ok(Permits { permit, share })
}

fn at_capacity(message: &str) -> Error {
    let mut error = Error::client(Code::Unavailable, message);
    error.http_status = Some(StatusCode::SERVICE_UNAVAILABLE);
    error.retry_after = Some(1);
    error
}

/// A request body that must keep arriving: a wait of `timeout` for its next
/// piece fails it with `BodyTimeout`, so the request ends (408) and gives
/// its permit back instead of holding it for a client that stopped sending.
struct Paced {
    inner: Body,
    timeout: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// The request body stalled past `limits.body_timeout`.
#[derive(Debug)]
pub struct BodyTimeout(pub Duration);

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no request body data within {:?}", self.0)
    }
}

impl std::error::Error for BodyTimeout {}

impl http_body::Body for Paced {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.stalled = None;
            return Poll::Ready(frame);
        }
        let timeout = this.timeout;
        let stalled = this.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyTimeout(timeout))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl http_body::Body for Permitted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
