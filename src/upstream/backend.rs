//! One upstream as every call path uses it: its endpoints behind the
//! balancer (`pool`), with the backend's status metadata checked before anything
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

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::Status;
use tonic::body::Body;
use tower::Service;

use super::pool::{Admitted, Endpoint, InFlight, Pool};
use super::retry::{Failure, Tried};
use crate::error::{BACKEND_STATUS, TRANSPORT, caused_by};

/// tonic's own reading of the header: either padding, standard alphabet.
const DETAILS_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const DETAILS: &str = "grpc-status-details-bin";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One upstream — its balanced endpoints — as a cheaply cloned service.
/// A failure before the backend answered is a `tonic::Status` marked with
/// its `Failure` kind (`TRANSPORT` metadata), so retries and error
/// classification can tell a request that never left from one that broke.
#[derive(Debug, Clone)]
pub struct Backend {
    pool: Arc<Pool>,
    marks_statuses: bool,
}

impl Backend {
    pub fn new(pool: Arc<Pool>) -> Self {
        Self { pool, marks_statuses: false }
    }

    /// The same upstream, marking the backend's statuses (for tonic clients;
    /// pass-through forwards the backend's headers as they came).
    pub fn marking_statuses(&self) -> Self {
        Self { pool: self.pool.clone(), marks_statuses: true }
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }
}

impl Service<Request<Body>> for Backend {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is per endpoint, decided once one is chosen in `call`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let (pool, mark) = (self.pool.clone(), self.marks_statuses);
        Box::pin(async move { send(pool, request, mark).await.map_err(|status| Box::new(status) as BoxError) })
    }
}

/// Admits the call under `max_requests`, picks an endpoint and sends. A
/// caller that manages its own retries marks the request with `Tried`; for
/// the others (pass-through gRPC, gRPC-Web) a request the transport hands
/// back unsent goes to another endpoint here, within the attempts and the
/// retry budget: whatever its body, none of it left.
async fn send(pool: Arc<Pool>, mut request: Request<Body>, mark: bool) -> Result<Response<Body>, Status> {
    let spec = pool.spec.as_str();
    let Some(admitted) = pool.admit() else {
        pool.stats.overloaded.with_label_values(&[spec]).inc();
        let limit = pool.settings().max_requests;
        return Err(failure(Failure::Overloaded, format!("upstream {spec:?} has {limit} calls in flight, its limit")));
    };
    let tried = match request.extensions().get::<Tried>().cloned() {
        Some(tried) => Some(tried),
        None => {
            pool.budget.deposit();
            None
        }
    };
    let mut tried_here: Vec<String> = Vec::new();
    let mut attempt = 1;
    loop {
        let urls = tried.as_ref().map_or_else(|| tried_here.clone(), Tried::urls);
        let Some(endpoint) = pool.choose(&urls).await else {
            return Err(failure(Failure::NoEndpoints, format!("upstream {spec:?} has no endpoints")));
        };
        match &tried {
            Some(tried) => tried.add(&endpoint.url),
            None => tried_here.push(endpoint.url.clone()),
        }
        let in_flight = endpoint.start();
        let started = Instant::now();
        let failed = match endpoint.transport.send(request).await {
            Ok(response) => {
                let unavailable = response.headers().get("grpc-status").is_some_and(|v| v.as_bytes() == b"14");
                let outcome = if unavailable { "unavailable" } else { "answered" };
                pool.stats.attempts.with_label_values(&[spec, outcome]).inc();
                if unavailable {
                    pool.failed(&endpoint);
                } else {
                    endpoint.observe_rtt(started.elapsed());
                    pool.succeeded(&endpoint);
                }
                let guard = Guard { _admitted: admitted, _in_flight: in_flight, endpoint, pool: pool.clone() };
                return Ok(checked(response, mark, guard));
            }
            Err(failed) => failed,
        };
        if failed.error.is::<super::direct::Saturated>() {
            pool.stats.overloaded.with_label_values(&[spec]).inc();
            let message = format!("upstream {spec:?}, endpoint {}: {}", endpoint.url, failed.error);
            return Err(failure(Failure::Overloaded, message));
        }
        pool.stats.attempts.with_label_values(&[spec, "failed"]).inc();
        pool.failed(&endpoint);
        // The settings' guard is not held across the next attempt's awaits.
        let retry_allowed = || {
            let settings = pool.settings();
            attempt < settings.retry.attempts && pool.budget.withdraw(&settings.retry)
        };
        match failed.request {
            Some(unsent) if tried.is_none() && retry_allowed() => {
                pool.stats.retries.with_label_values(&[spec]).inc();
                tracing::debug!(upstream = %spec, endpoint = %endpoint.url, error = %failed.error, "retrying an unsent call");
                request = unsent;
                attempt += 1;
            }
            _ => return Err(transport_status(&failed.error)),
        }
    }
}

fn failure(kind: Failure, message: String) -> Status {
    let mut status = Status::unavailable(message);
    status.metadata_mut().insert(TRANSPORT, tonic::metadata::MetadataValue::from_static(kind.mark()));
    status
}

/// A transport error as a status that keeps what the retry decision needs.
fn transport_status(error: &BoxError) -> Status {
    let chain: &(dyn std::error::Error + 'static) = error.as_ref();
    let (code, kind) = if caused_by::<tonic::TimeoutExpired>(chain) {
        (tonic::Code::DeadlineExceeded, Failure::Broken)
    } else if never_sent(chain) {
        (tonic::Code::Unavailable, Failure::NotSent)
    } else {
        (tonic::Code::Unavailable, Failure::Broken)
    };
    let mut status = Status::new(code, crate::error::describe(chain));
    status.metadata_mut().insert(TRANSPORT, tonic::metadata::MetadataValue::from_static(kind.mark()));
    status
}

/// True when the error proves the backend never took the request: no
/// connection, a refused stream, a graceful GOAWAY that excluded it, or a
/// connection that was gone before the request went out.
fn never_sent(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(error) = source {
        if error.is::<tonic::ConnectError>() || error.is::<super::direct::ConnectFailed>() {
            return true;
        }
        if let Some(h2) = error.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM)
                || (h2.is_go_away() && h2.reason() == Some(h2::Reason::NO_ERROR));
        }
        if let Some(hyper) = error.downcast_ref::<hyper::Error>()
            && hyper.is_canceled()
        {
            return true;
        }
        source = error.source();
    }
    false
}

/// What a response holds while its body is read: its places in the
/// upstream's and the endpoint's counts, and who to tell of an UNAVAILABLE
/// in the trailers.
struct Guard {
    _admitted: Admitted,
    _in_flight: InFlight,
    endpoint: Arc<Endpoint>,
    pool: Arc<Pool>,
}

/// The response with its headers checked now and its trailers as they come.
fn checked(response: Response<Body>, mark: bool, guard: Guard) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    check_status(&mut parts.headers, mark);
    Response::from_parts(parts, Body::new(CheckedTrailers { inner: body, mark, guard: Some(guard) }))
}

fn check_status(headers: &mut HeaderMap, mark: bool) {
    drop_malformed_details(headers);
    if mark && headers.contains_key("grpc-status") {
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

struct CheckedTrailers {
    inner: Body,
    mark: bool,
    guard: Option<Guard>,
}

impl HttpBody for CheckedTrailers {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        let mark = self.mark;
        let frame = frame.map(|frame| {
            frame.map(|frame| match frame.into_trailers() {
                Ok(mut trailers) => {
                    if trailers.get("grpc-status").is_some_and(|v| v.as_bytes() == b"14")
                        && let Some(guard) = &self.guard
                    {
                        guard.pool.failed(&guard.endpoint);
                    }
                    check_status(&mut trailers, mark);
                    Frame::trailers(trailers)
                }
                Err(frame) => frame,
            })
        });
        if frame.is_none() {
            self.guard = None;
        }
        Poll::Ready(frame)
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
