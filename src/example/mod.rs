//! The example backend: the library service behind `protogate demo`,
//! `examples/library_server.rs` and the integration tests.

pub mod library;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;

use crate::pb::library::v1::library_service_server::LibraryServiceServer;

pub use library::Library;

/// Serves a seeded library on `listener` until the task is dropped or aborted.
pub fn serve_library(listener: TcpListener) -> JoinHandle<Result<(), tonic::transport::Error>> {
    let service = LibraryServiceServer::new(Library::seeded());
    tokio::spawn(
        tonic::transport::Server::builder().add_service(service).serve_with_incoming(TcpListenerStream::new(listener)),
    )
}
