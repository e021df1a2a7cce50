//! Unary and server-streaming calls over a shared channel.

use http::uri::PathAndQuery;
use prost_reflect::{DynamicMessage, MessageDescriptor};
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;
use tonic::{Request, Status, Streaming};

use super::codec::DynamicCodec;

/// Where and how to call one method.
#[derive(Debug, Clone)]
pub struct Call {
    pub channel: Channel,
    /// `/package.Service/Method`, built once per snapshot.
    pub path: PathAndQuery,
    pub output: MessageDescriptor,
}

/// A unary answer with its header and trailer metadata kept apart.
#[derive(Debug)]
pub struct UnaryReply {
    pub headers: MetadataMap,
    pub message: DynamicMessage,
    pub trailers: MetadataMap,
}

impl Call {
    /// A unary call. It runs as a server stream of one message so headers and
    /// trailers stay distinguishable (tonic's unary merges them).
    pub async fn unary(&self, request: Request<DynamicMessage>) -> Result<UnaryReply, Status> {
        let response = self.server_streaming(request).await?;
        let (headers, mut stream, _) = response.into_parts();
        let message = stream.message().await?.ok_or_else(|| {
            Status::internal("backend closed a unary call without a response message")
        })?;
        if stream.message().await?.is_some() {
            return Err(Status::internal(
                "backend sent more than one message on a unary call",
            ));
        }
        let trailers = stream.trailers().await?.unwrap_or_default();
        Ok(UnaryReply {
            headers,
            message,
            trailers,
        })
    }

    pub async fn server_streaming(
        &self,
        request: Request<DynamicMessage>,
    ) -> Result<tonic::Response<Streaming<DynamicMessage>>, Status> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready()
            .await
            .map_err(|e| Status::from_error(Box::new(e)))?;
        let codec = DynamicCodec::new(self.output.clone());
        grpc.server_streaming(request, self.path.clone(), codec)
            .await
    }
}
