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
            .serve_with_incoming(TcpListenerStream::new(listener)),
    )
}
