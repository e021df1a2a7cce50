//! Calls of every kind over a shared channel.

use futures_util::Stream;
use http::uri::PathAndQuery;
use prost_reflect::{DynamicMessage, MessageDescriptor};
use tonic::metadata::MetadataMap;
use tonic::{Request, Status, Streaming};

use tracing::Instrument;

use super::codec::{DynamicCodec, RawCodec};
use crate::error::Error;
use crate::middleware::otel::upstream_span;

/// Where and how to call one method.
#[derive(Debug, Clone)]
pub struct Call {
    pub channel: super::Backend,
    /// `/package.Service/Method`, built once per snapshot.
    pub path: PathAndQuery,
    pub output: MessageDescriptor,
    /// Largest message sent or accepted, either way.
    pub max_message_size: usize,
}

/// A unary answer with its header and trailer metadata kept apart; the
/// message decoded, or its wire bytes.
#[derive(Debug)]
pub struct UnaryReply<M = DynamicMessage> {
    pub headers: MetadataMap,
    pub message: M,
    pub trailers: MetadataMap,
}

impl Call {
    /// A unary call. It runs as a server stream of one message so headers and
    /// trailers stay distinguishable (tonic's unary merges them).
    pub async fn unary(&self, request: Request<DynamicMessage>) -> Result<UnaryReply, Error> {
        single_reply(self.server_streaming(request).await?).await
    }

    /// A unary call with the request and the answer in wire form.
    pub async fn unary_raw(&self, mut request: Request<bytes::Bytes>) -> Result<UnaryReply<bytes::Bytes>, Error> {
        let span = upstream_span(self.path.as_str(), request.metadata_mut());
        let call = async {
            let mut grpc = self.client().await?;
            grpc.server_streaming(request, self.path.clone(), RawCodec).await
        };
        single_reply(call.instrument(span).await?).await
    }

    pub async fn server_streaming(
        &self,
        mut request: Request<DynamicMessage>,
    ) -> Result<tonic::Response<Streaming<DynamicMessage>>, Status> {
        let span = upstream_span(self.path.as_str(), request.metadata_mut());
        let call = async {
            let mut grpc = self.client().await?;
            grpc.server_streaming(request, self.path.clone(), DynamicCodec::new(self.output.clone())).await
        };
        call.instrument(span).await
    }

    /// A client-streaming call: many messages in, one reply.
    pub async fn client_streaming<S>(&self, request: Request<S>) -> Result<UnaryReply, Error>
    where
        S: Stream<Item = DynamicMessage> + Send + 'static,
    {
        single_reply(self.streaming(request).await?).await
    }

    /// A bidirectional call (any call with a stream of requests).
    pub async fn streaming<S>(
        &self,
        mut request: Request<S>,
    ) -> Result<tonic::Response<Streaming<DynamicMessage>>, Status>
    where
        S: Stream<Item = DynamicMessage> + Send + 'static,
    {
        let span = upstream_span(self.path.as_str(), request.metadata_mut());
        let call = async {
            let mut grpc = self.client().await?;
            grpc.streaming(request, self.path.clone(), DynamicCodec::new(self.output.clone())).await
        };
        call.instrument(span).await
    }

    async fn client(&self) -> Result<tonic::client::Grpc<super::Backend>, Status> {
        let mut grpc = tonic::client::Grpc::new(self.channel.marking_statuses())
            .max_decoding_message_size(self.max_message_size)
            .max_encoding_message_size(self.max_message_size);
        grpc.ready().await.map_err(|e| Status::from_error(Box::new(e)))?;
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
