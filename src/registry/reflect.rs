//! Descriptor sets from a backend's gRPC server reflection (v1, falling back
//! to v1alpha), and the task that re-reads them on an interval.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::upstream::Backend as Channel;
use http::uri::PathAndQuery;
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};

use super::{ChangeError, Registry};

/// v1alpha is wire-compatible with v1; only the method path differs.
const PATHS: [&str; 2] = [
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// `FileDescriptorProto` fields the walk needs, the rest left encoded.
#[derive(Clone, PartialEq, prost::Message)]
struct FileHeader {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(string, repeated, tag = "3")]
    dependency: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct EncodedSet {
    #[prost(bytes = "vec", repeated, tag = "1")]
    file: Vec<Vec<u8>>,
}

/// One reflection stream: a request, then its response, in turn.
struct Conversation {
    requests: mpsc::Sender<ServerReflectionRequest>,
    responses: tonic::Streaming<ServerReflectionResponse>,
}

/// Reads every service the backend exposes (reflection itself excepted) with
/// all the files they need, as an encoded `FileDescriptorSet` whose files are
/// sorted by name, so the same schema always gives the same digest.
pub async fn fetch(url: &str, connect_timeout: Duration) -> Result<Vec<u8>, String> {
    // A whole fetch — the admin call and every `--reflect` refresh — ends
    // within this, whatever the backend does.
    let deadline = connect_timeout + FETCH_TIMEOUT;
    tokio::time::timeout(deadline, fetch_within(url, connect_timeout))
        .await
        .unwrap_or_else(|_| Err(format!("{url}: reflection did not finish within {deadline:?}")))
}

/// Longest a reflection fetch may take once connected.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

async fn fetch_within(url: &str, connect_timeout: Duration) -> Result<Vec<u8>, String> {
    let channel = crate::upstream::endpoint(url, connect_timeout)?
        .connect()
        .await
        .map_err(|e| format!("{url}: cannot connect: {e}"))?;
    let channel = Channel::new(crate::upstream::Pool::of_channel(url, channel)?);
    let mut last = String::new();
    for path in PATHS {
        match fetch_with(channel.clone(), path).await {
            Ok(set) => return Ok(set),
            Err(status) if status.code() == Code::Unimplemented => last = status.message().to_string(),
            Err(status) => return Err(format!("{url}: reflection failed: {status}")),
        }
    }
    Err(format!("{url}: the backend does not offer server reflection ({last})"))
}

async fn fetch_with(channel: Channel, path: &'static str) -> Result<Vec<u8>, Status> {
    let mut conversation = Conversation::open(channel, path, MessageRequest::ListServices(String::new())).await?;
    let services = match conversation.answer().await? {
        MessageResponse::ListServicesResponse(list) => list.service,
        other => return Err(unexpected(&other)),
    };
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut wanted: VecDeque<MessageRequest> = services
        .into_iter()
        .filter(|s| !s.name.starts_with("grpc.reflection."))
        .map(|s| MessageRequest::FileContainingSymbol(s.name))
        .collect();
    while let Some(request) = wanted.pop_front() {
        let protos = match conversation.ask(request).await? {
            MessageResponse::FileDescriptorResponse(found) => found.file_descriptor_proto,
            other => return Err(unexpected(&other)),
        };
        for raw in protos {
            let header = FileHeader::decode(raw.as_slice()).map_err(|e| Status::internal(e.to_string()))?;
            let name = header.name.unwrap_or_default();
            for dependency in header.dependency {
                let asked = wanted.iter().any(|w| matches!(w, MessageRequest::FileByFilename(f) if *f == dependency));
                if !files.contains_key(&dependency) && !asked && dependency != name {
                    wanted.push_back(MessageRequest::FileByFilename(dependency));
                }
            }
            files.insert(name, raw);
        }
    }
    Ok(EncodedSet { file: files.into_values().collect() }.encode_to_vec())
}

impl Conversation {
    /// Opens the stream with its first request already sent: grpc-go and
    /// grpc-core servers send response headers only with their first
    /// response, so awaiting the headers before asking waited for good
    /// (each side waiting for the other; ~150 s, then "Too many pings").
    async fn open(channel: Channel, path: &'static str, first: MessageRequest) -> Result<Self, Status> {
        let (requests, receiver) = mpsc::channel(1);
        let first = ServerReflectionRequest { host: String::new(), message_request: Some(first) };
        requests.send(first).await.map_err(|_| Status::unavailable("reflection stream closed"))?;
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.map_err(|e| Status::unavailable(e.to_string()))?;
        let codec = tonic_prost::ProstCodec::default();
        let responses = grpc
            .streaming(tonic::Request::new(ReceiverStream::new(receiver)), PathAndQuery::from_static(path), codec)
            .await?
            .into_inner();
        Ok(Self { requests, responses })
    }

    async fn ask(&mut self, request: MessageRequest) -> Result<MessageResponse, Status> {
        let request = ServerReflectionRequest { host: String::new(), message_request: Some(request) };
        self.requests.send(request).await.map_err(|_| Status::unavailable("reflection stream closed"))?;
        self.answer().await
    }

    /// The response to the request sent last.
    async fn answer(&mut self) -> Result<MessageResponse, Status> {
        let response = self
            .responses
            .message()
            .await?
            .and_then(|r| r.message_response)
            .ok_or_else(|| Status::unavailable("reflection stream ended"))?;
        match response {
            MessageResponse::ErrorResponse(e) => Err(Status::new(Code::from(e.error_code), e.error_message)),
            other => Ok(other),
        }
    }
}

fn unexpected(response: &MessageResponse) -> Status {
    Status::internal(format!("unexpected reflection response: {response:?}"))
}

/// The name a reflected backend's set is registered under.
pub fn set_name(url: &str) -> String {
    let host: String = url
        .trim_start_matches("http://")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' })
        .collect();
    format!("reflect-{}", host.trim_matches('-'))
}

/// Registers each backend's reflected schema now, then re-reads it every
/// `interval`; a changed schema (a redeploy) becomes a new version, a failed
/// read keeps what is registered.
pub fn spawn_refresh(
    registry: Arc<Registry>,
    urls: Vec<String>,
    interval: Duration,
    connect_timeout: Duration,
    shutdown: watch::Receiver<bool>,
) {
    for url in urls {
        let registry = registry.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let name = set_name(&url);
            loop {
                match fetch(&url, connect_timeout).await {
                    Ok(set) => match registry.register(&name, set, Some(url.clone())).await {
                        Ok(change) => {
                            tracing::debug!(set = %name, version = change.set.active, "reflection refreshed")
                        }
                        Err(ChangeError::Invalid(e) | ChangeError::Conflict(e)) => {
                            tracing::warn!(set = %name, errors = ?e, "reflected schema rejected; keeping the registered one")
                        }
                        Err(e) => {
                            tracing::warn!(set = %name, error = ?e, "reflected schema not registered")
                        }
                    },
                    Err(e) => {
                        tracing::warn!(set = %name, error = %e, "reflection failed; keeping the registered schema")
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn set_names_are_valid_registry_names() {
        let cases = [
            ("http://127.0.0.1:50051", "reflect-127.0.0.1-50051"),
            ("http://users.internal:9000/", "reflect-users.internal-9000"),
        ];
        for (url, expected) in cases {
            assert_eq!(super::set_name(url), expected);
            assert!(super::super::sets::validate_name(expected).is_ok());
        }
    }
}
