//! The example backend: the library service behind `protogate demo`,
//! `examples/library_server.rs` and the integration tests.

pub mod echo;
pub mod library;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;

use crate::pb::library::v1::library_service_server::LibraryServiceServer;

pub use library::Library;

/// Serves a seeded library on `listener` until the task is dropped or
/// aborted, with the standard gRPC health service (reporting SERVING).
pub fn serve_library(listener: TcpListener) -> JoinHandle<Result<(), tonic::transport::Error>> {
    let service = LibraryServiceServer::new(Library::seeded());
    let (_reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .add_service(service)
            .serve_with_incoming(incoming(listener)),
    )
}

/// Accepted connections with TCP_NODELAY, as gRPC servers set it (grpc-go
/// and grpc-java do): without it a multi-segment answer waits for the
/// gateway's delayed ACK, 40 ms a time (seen in scripts/load.py).
pub fn incoming(
    listener: TcpListener,
) -> impl futures_util::Stream<Item = std::io::Result<tokio::net::TcpStream>> + Send + 'static {
    use futures_util::StreamExt;
    TcpListenerStream::new(listener).map(|accepted| {
        let stream = accepted?;
        stream.set_nodelay(true)?;
        Ok(stream)
    })
}
