//! The shared connection to one upstream as every call path uses it: tonic's
//! `Channel`, with the backend's status metadata checked before anything
//! reads it. tonic's `Status::from_header_map` panics on a
//! `grpc-status-details-bin` that is not base64 (a backend bug, or a hostile
//! backend), which took down the request task of every protocol; a malformed
//! value is dropped here and logged, so the status code and message still
//! reach the client.
//!
//! For the gateway's own tonic clients it also marks the statuses the
//! backend sent (`BACKEND_STATUS` next to `grpc-status`), so a status tonic
//! made up — a protocol or decoding error whose text describes gateway
//! internals — can be told from the backend's own words (`Error::from_upstream`).

use std::pin::Pin;
use std::task::{Context, Poll};

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use futures_util::TryFutureExt;
use futures_util::future::MapOk;
use http::{HeaderMap, Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;
use tonic::transport::Channel;
use tower::Service;

/// tonic's own reading of the header: either padding, standard alphabet.
const DETAILS_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const DETAILS: &str = "grpc-status-details-bin";
use crate::error::BACKEND_STATUS;

/// One upstream's shared HTTP/2 channel, cheap to clone.
#[derive(Debug, Clone)]
pub struct Backend {
    channel: Channel,
    marks_statuses: bool,
}

impl Backend {
    pub fn new(channel: Channel) -> Self {
        Self { channel, marks_statuses: false }
    }

    /// The same channel, marking the backend's statuses (for tonic clients;
    /// pass-through forwards the backend's headers as they came).
    pub fn marking_statuses(&self) -> Self {
        Self { channel: self.channel.clone(), marks_statuses: true }
    }
}

type Checked = fn(Response<Body>) -> Response<Body>;

impl Service<Request<Body>> for Backend {
    type Response = Response<Body>;
    type Error = tonic::transport::Error;
    type Future = MapOk<tonic::transport::channel::ResponseFuture, Checked>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.channel.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let check: Checked = if self.marks_statuses { checked::<true> } else { checked::<false> };
        self.channel.call(request).map_ok(check)
    }
}

/// The response with its headers checked now and its trailers as they come.
fn checked<const MARK: bool>(response: Response<Body>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    check_status::<MARK>(&mut parts.headers);
    Response::from_parts(parts, Body::new(CheckedTrailers::<MARK> { inner: body }))
}

fn check_status<const MARK: bool>(headers: &mut HeaderMap) {
    drop_malformed_details(headers);
    if MARK && headers.contains_key("grpc-status") {
        headers.insert(BACKEND_STATUS, http::HeaderValue::from_static("1"));
    }
}

/// Removes a `grpc-status-details-bin` that is not base64; true if it did.
pub fn drop_malformed_details(headers: &mut HeaderMap) -> bool {
    let malformed = headers.get(DETAILS).is_some_and(|value| DETAILS_BASE64.decode(value.as_bytes()).is_err());
    if malformed {
        headers.remove(DETAILS);
        tracing::warn!("the backend sent a grpc-status-details-bin that is not base64; dropped it");
    }
    malformed
}

struct CheckedTrailers<const MARK: bool> {
    inner: Body,
}

impl<const MARK: bool> HttpBody for CheckedTrailers<MARK> {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        Poll::Ready(frame.map(|frame| {
            frame.map(|frame| match frame.into_trailers() {
                Ok(mut trailers) => {
                    check_status::<MARK>(&mut trailers);
                    Frame::trailers(trailers)
                }
                Err(frame) => frame,
            })
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_malformed_details_are_dropped() {
        let cases = [
            ("CAMSBGJhZCE", false),
            ("CAMSBGJhZCE=", false),
            ("", false),
            ("!!not base64!!", true),
            ("CAMSBGJhZCE===", true),
            ("CAMSBGJhZCE-_", true),
        ];
        for (value, dropped) in cases {
            let mut headers = HeaderMap::new();
            headers.insert(DETAILS, value.parse().unwrap());
            assert_eq!(drop_malformed_details(&mut headers), dropped, "{value:?}");
            assert_eq!(headers.contains_key(DETAILS), !dropped, "{value:?}");
        }
    }
}
