//! Request limits that apply before any protocol work: URI length, header
//! size, and concurrency with load shedding. Refusals take the protocol's
//! own form (Status JSON, or a trailers-only gRPC status).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body::{Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Code;

use crate::error::Error;
use crate::protocol::{LiveContext, refusal as refuse};

/// The limits checked per request.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    pub max_uri_length: usize,
    pub max_header_bytes: usize,
    /// Requests (streams included, until their body ends) served at once.
    pub concurrency: Arc<Semaphore>,
}

/// A response body that holds a concurrency permit until it is done.
struct Permitted {
    inner: Body,
    _permit: OwnedSemaphorePermit,
}

/// Refuses oversized URIs (414) and headers (431), and sheds load (503 with
/// `Retry-After`) when every concurrency permit is taken.
pub async fn check(State(live): State<Arc<LiveContext>>, mut request: Request, next: Next) -> Response<Body> {
    let context = live.pinned(&mut request);
    let limits = &context.limits;
    let length = request.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if length > limits.max_uri_length {
        return refuse(&request, Error::uri_too_long(length, limits.max_uri_length));
    }
    let header_bytes: usize = request.headers().iter().map(|(n, v)| n.as_str().len() + v.len()).sum();
    if header_bytes > limits.max_header_bytes {
        let mut error = Error::client(
            Code::InvalidArgument,
            format!("request headers are {header_bytes} bytes, over the limit of {}", limits.max_header_bytes),
        );
        error.http_status = Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        return refuse(&request, error);
    }
    let Ok(permit) = limits.concurrency.clone().try_acquire_owned() else {
        let mut error = Error::client(Code::Unavailable, "the gateway is at capacity; retry shortly");
        error.http_status = Some(StatusCode::SERVICE_UNAVAILABLE);
        let mut response = refuse(&request, error);
        response.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    let response = next.run(request).await;
    response.map(|inner| Body::new(Permitted { inner, _permit: permit }))
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
