//! Calls of every kind over a shared channel.

use futures_util::Stream;
use http::uri::PathAndQuery;
use prost_reflect::{DynamicMessage, MessageDescriptor};
use tonic::metadata::MetadataMap;
use tonic::{Request, Status, Streaming};

use tracing::Instrument;

use bytes::Bytes;
use tonic::codec::Codec;

use super::codec::{DynamicCodec, Outgoing, RawCodec, WireCodec};
use super::retry::{self, Tried};
use crate::error::Error;
use crate::telemetry::otel::upstream_span;

/// Where and how to call one method.
#[derive(Debug, Clone)]
pub struct Call {
    pub channel: super::Backend,
    /// `/package.Service/Method`, built once per snapshot.
    pub path: PathAndQuery,
    pub output: MessageDescriptor,
    /// Largest message sent or accepted, either way.
    pub max_message_size: usize,
    /// Declared idempotent in its descriptor, so retried on UNAVAILABLE
    /// (as are those `upstream.retry.idempotent_methods` lists, read per
    /// call so a reload applies).
    pub idempotent: bool,
}

/// In a request's extensions: retry this call on UNAVAILABLE although its
/// method is not declared idempotent (a REST GET or HEAD).
#[derive(Debug, Clone, Copy)]
pub struct RetryUnavailable;

/// A unary answer with its header and trailer metadata kept apart; the
/// message decoded, or its wire bytes.
#[derive(Debug)]
pub struct UnaryReply<M = DynamicMessage> {
    pub headers: MetadataMap,
    pub message: M,
    pub trailers: MetadataMap,
}

impl Call {
    /// A unary call, the answer decoded (for callers that read its fields).
    /// It runs as a server stream of one message so headers and trailers
    /// stay distinguishable (tonic's unary merges them).
    pub async fn unary(&self, request: Request<DynamicMessage>) -> Result<UnaryReply, Error> {
        let codec = || DynamicCodec::new(self.output.clone());
        single_reply(self.one_request(request, codec).await?).await
    }

    /// A unary call with the request and the answer in wire form.
    pub async fn unary_raw(&self, request: Request<Bytes>) -> Result<UnaryReply<Bytes>, Error> {
        single_reply(self.one_request(request, RawCodec::default).await?).await
    }

    /// A call with one request message, its answers in wire form.
    pub async fn server_streaming<M>(&self, request: Request<M>) -> Result<tonic::Response<Streaming<Bytes>>, Status>
    where
        M: Outgoing + Clone + Sync,
    {
        self.one_request(request, WireCodec::default).await
    }

    /// A call with one request message; retried (see `with_retries`) until
    /// the backend's response headers arrive, never after.
    async fn one_request<M, C>(
        &self,
        request: Request<M>,
        codec: impl Fn() -> C,
    ) -> Result<tonic::Response<Streaming<C::Decode>>, Status>
    where
        M: Outgoing + Clone + Sync,
        C: Codec<Encode = M> + Send + 'static,
        C::Decode: Send + Sync + 'static,
    {
        self.with_retries(request, |mut request| {
            let codec = codec();
            async {
                let span = upstream_span(self.path.as_str(), request.metadata_mut());
                let call = async {
                    let mut grpc = self.client().await?;
                    grpc.server_streaming(request, self.path.clone(), codec).await
                };
                call.instrument(span).await
            }
        })
        .await
    }

    /// Sends `request` and, while the upstream's policy and budget allow,
    /// sends it again to another endpoint when the call never reached a
    /// backend, or (idempotent calls only) a backend answered UNAVAILABLE.
    /// Each attempt carries the time left of the deadline in `grpc-timeout`.
    async fn with_retries<M, R, F, Fut>(&self, request: Request<M>, mut attempt: F) -> Result<R, Status>
    where
        M: Clone,
        F: FnMut(Request<M>) -> Fut,
        Fut: std::future::Future<Output = Result<R, Status>>,
    {
        let pool = self.channel.pool();
        // Owned: the policy is read across every attempt's awaits.
        let settings = arc_swap::Guard::into_inner(pool.settings());
        let policy = &settings.retry;
        pool.budget.deposit();
        let (metadata, mut extensions, message) = request.into_parts();
        let idempotent = self.idempotent
            || extensions.get::<RetryUnavailable>().is_some()
            || retry::listed(&policy.idempotent, self.path.as_str());
        let tried = Tried::default();
        extensions.insert(tried.clone());
        let started = tokio::time::Instant::now();
        let deadline = metadata
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(super::metadata::parse_grpc_timeout)
            .map(|timeout| started + timeout);
        let mut number = 1;
        loop {
            let mut metadata = metadata.clone();
            if let Some(deadline) = deadline.filter(|_| number > 1) {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if let Ok(value) = super::metadata::format_grpc_timeout(left).parse() {
                    metadata.insert("grpc-timeout", value);
                }
            }
            // Boxed: an attempt (tonic's call and the transport's) is most
            // of a call's future, and every future that awaits a call was
            // that much larger and copied whole on each move.
            let request = Request::from_parts(metadata, extensions.clone(), message.clone());
            let status = match Box::pin(attempt(request)).await {
                Ok(response) => return Ok(response),
                Err(status) => status,
            };
            if number >= policy.attempts || !retry::may_retry(&status, idempotent) {
                return Err(status);
            }
            let wait = retry::backoff(policy.backoff, number);
            if deadline.is_some_and(|at| tokio::time::Instant::now() + wait >= at) {
                return Err(status);
            }
            if !pool.budget.withdraw(policy) {
                pool.stats.budget_exhausted.with_label_values(&[&pool.spec]).inc();
                return Err(status);
            }
            pool.stats.retries.with_label_values(&[&pool.spec]).inc();
            tracing::debug!(upstream = %pool.spec, path = %self.path, retry = number, error = %status.message(), "retrying");
            tokio::time::sleep(wait).await;
            number += 1;
        }
    }

    /// A client-streaming call: many messages in, one reply in wire form.
    pub async fn client_streaming<S, M>(&self, request: Request<S>) -> Result<UnaryReply<Bytes>, Error>
    where
        S: Stream<Item = M> + Send + 'static,
        M: Outgoing + Sync,
    {
        single_reply(self.streaming(request).await?).await
    }

    /// A bidirectional call (any call with a stream of requests), its
    /// answers in wire form.
    pub async fn streaming<S, M>(&self, mut request: Request<S>) -> Result<tonic::Response<Streaming<Bytes>>, Status>
    where
        S: Stream<Item = M> + Send + 'static,
        M: Outgoing + Sync,
    {
        let span = upstream_span(self.path.as_str(), request.metadata_mut());
        let call = async {
            let mut grpc = self.client().await?;
            grpc.streaming(request, self.path.clone(), WireCodec::default()).await
        };
        call.instrument(span).await
    }

    async fn client(&self) -> Result<tonic::client::Grpc<super::Backend>, Status> {
        let mut grpc = tonic::client::Grpc::new(self.channel.marking_statuses())
            .max_decoding_message_size(self.max_message_size)
            .max_encoding_message_size(self.max_message_size);
        grpc.ready().await.map_err(Status::from_error)?;
        Ok(grpc)
    }
}

/// Reads the one message of a unary answer, then its trailers; a failure
/// keeps the header metadata that came before it.
async fn single_reply<M>(response: tonic::Response<Streaming<M>>) -> Result<UnaryReply<M>, Error> {
    let (headers, mut stream, _) = response.into_parts();
    let failed = |status: Status| Error::from_upstream(status).with_backend_headers(&headers);
    let message = stream.message().await.map_err(failed)?.ok_or_else(|| {
        Error::gateway(tonic::Code::Internal, "backend closed a unary call without a response message")
    })?;
    if stream.message().await.map_err(failed)?.is_some() {
        return Err(Error::gateway(tonic::Code::Internal, "backend sent more than one message on a unary call"));
    }
    let trailers = stream.trailers().await.map_err(failed)?.unwrap_or_default();
    Ok(UnaryReply { headers, message, trailers })
}
