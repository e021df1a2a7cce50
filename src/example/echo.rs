//! The echo backend of the tests and the load benchmark
//! (`examples/echo_server.rs`): returns what it received, streams as many
//! copies as asked, counts calls, and sends the trailers a request asks for.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::pb::google::api::HttpBody;
use crate::pb::google::rpc;
use crate::pb::protogate::test::v1::echo_service_server::EchoService;
use crate::pb::protogate::test::v1::*;
use futures_util::Stream;
use http_body_util::BodyExt;
use prost::Message;
use tonic::{Code, Request, Response, Status, Streaming};

/// Calls the backend has received, to prove bad input never reached it.
#[derive(Debug, Clone, Default)]
pub struct Echo {
    pub calls: Arc<AtomicUsize>,
}

type EverythingStream = Pin<Box<dyn Stream<Item = Result<Everything, Status>> + Send>>;

#[tonic::async_trait]
impl EchoService for Echo {
    async fn echo(&self, request: Request<Everything>) -> Result<Response<Everything>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(Response::new(request.into_inner()))
    }

    type EchoStreamStream = EverythingStream;

    async fn echo_stream(&self, request: Request<EchoStreamRequest>) -> Result<Response<EverythingStream>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let request = request.into_inner();
        let message = request.message.clone().unwrap_or_default();
        let interval = Duration::from_millis(u64::try_from(request.interval_ms).unwrap_or(0));
        let stream = async_stream_of(request, message, interval);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn fail(&self, request: Request<FailRequest>) -> Result<Response<Everything>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let request = request.into_inner();
        tokio::time::sleep(Duration::from_millis(u64::try_from(request.delay_ms).unwrap_or(0))).await;
        if request.code == 0 {
            return Ok(Response::new(Everything::default()));
        }
        let mut details = Vec::new();
        if !request.reason.is_empty() {
            let info =
                rpc::ErrorInfo { reason: request.reason.clone(), domain: "test".into(), metadata: Default::default() };
            details.push(any("google.rpc.ErrorInfo", &info));
        }
        if !request.bad_field.is_empty() {
            let violation = rpc::bad_request::FieldViolation {
                field: request.bad_field.clone(),
                description: "is wrong".into(),
                ..Default::default()
            };
            details.push(any("google.rpc.BadRequest", &rpc::BadRequest { field_violations: vec![violation] }));
        }
        if request.unknown_detail {
            details.push(prost_types::Any { type_url: "type.googleapis.com/acme.Secret".into(), value: vec![1, 2, 3] });
        }
        let code = Code::from(request.code);
        let status = rpc::Status { code: request.code, message: request.message.clone(), details };
        Err(Status::with_details(code, request.message, status.encode_to_vec().into()))
    }

    async fn echo_metadata(&self, request: Request<()>) -> Result<Response<Metadata>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut entries = std::collections::HashMap::new();
        let mut reply_headers = tonic::metadata::MetadataMap::new();
        for (name, value) in request.metadata().clone().into_headers().iter() {
            let value = value.to_str().unwrap_or("(binary)").to_string();
            if let Some(header) = name.as_str().strip_prefix("echo-header-")
                && let (Ok(k), Ok(v)) = (header.parse::<tonic::metadata::AsciiMetadataKey>(), value.parse())
            {
                reply_headers.insert(k, v);
            }
            entries.insert(name.to_string(), value);
        }
        let mut response = Response::new(Metadata { entries });
        *response.metadata_mut() = reply_headers;
        Ok(response)
    }

    async fn echo_body(&self, request: Request<HttpBody>) -> Result<Response<HttpBody>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(Response::new(request.into_inner()))
    }

    async fn collect(&self, request: Request<Streaming<Everything>>) -> Result<Response<Everything>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut stream = request.into_inner();
        let mut last = Everything::default();
        let mut names = Vec::new();
        while let Some(message) = stream.message().await? {
            names.push(message.f_string.clone());
            last = message;
        }
        last.r_string = names;
        Ok(Response::new(last))
    }

    type ChatStream = EverythingStream;

    async fn chat(&self, request: Request<Streaming<Everything>>) -> Result<Response<EverythingStream>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let incoming = request.into_inner();
        let replies = futures_util::stream::unfold(Some(incoming), |state| async move {
            let mut incoming = state?;
            match incoming.message().await {
                Ok(Some(message)) if message.f_int32 != 0 => {
                    Some((Err(Status::new(Code::from(message.f_int32), message.f_string)), None))
                }
                Ok(Some(message)) => Some((Ok(message), Some(incoming))),
                Ok(None) => None,
                Err(status) => Some((Err(status), None)),
            }
        });
        Ok(Response::new(Box::pin(replies)))
    }
}

fn async_stream_of(
    request: EchoStreamRequest,
    message: Everything,
    interval: Duration,
) -> impl Stream<Item = Result<Everything, Status>> + Send {
    let count = usize::try_from(request.count).unwrap_or(0);
    futures_util::stream::unfold(0usize, move |sent| {
        let (message, request) = (message.clone(), request.clone());
        async move {
            if sent < count {
                if sent > 0 {
                    tokio::time::sleep(interval).await;
                }
                return Some((Ok(message), sent + 1));
            }
            if sent == count && request.fail_code != 0 {
                return Some((Err(Status::new(Code::from(request.fail_code), request.fail_message)), sent + 1));
            }
            None
        }
    })
}

fn any(type_name: &str, message: &impl Message) -> prost_types::Any {
    prost_types::Any { type_url: format!("type.googleapis.com/{type_name}"), value: message.encode_to_vec() }
}

/// A layer that appends the trailers a request names in `echo-trailer-<k>`
/// headers, since tonic has no API for custom trailers on a unary answer.
#[derive(Debug, Clone, Default)]
pub struct TrailerEchoLayer;

#[derive(Debug, Clone)]
pub struct TrailerEcho<S> {
    inner: S,
}

impl<S> tower::Layer<S> for TrailerEchoLayer {
    type Service = TrailerEcho<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TrailerEcho { inner }
    }
}

impl<S, B> tower::Service<http::Request<B>> for TrailerEcho<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let mut extra = http::HeaderMap::new();
        for (name, value) in request.headers() {
            if let Some(key) = name.as_str().strip_prefix("echo-trailer-")
                && let Ok(key) = http::HeaderName::try_from(key)
            {
                extra.insert(key, value.clone());
            }
        }
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| {
                tonic::body::Body::new(body.map_frame(move |frame| match frame.into_trailers() {
                    Ok(mut trailers) => {
                        trailers.extend(extra.clone());
                        http_body::Frame::trailers(trailers)
                    }
                    Err(frame) => frame,
                }))
            }))
        })
    }
}
