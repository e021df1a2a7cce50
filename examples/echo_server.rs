//! The echo backend (protogate.test.v1.EchoService) on its own, for the load
//! benchmark's streaming runs (scripts/load.py):
//!
//! cargo run --release --example echo_server -- 127.0.0.1:50052

use protogate::example::echo::Echo;
use protogate::pb::protogate::test::v1::echo_service_server::EchoServiceServer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:50052".to_string());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("echo backend on {}", listener.local_addr()?);
    tonic::transport::Server::builder()
        .add_service(EchoServiceServer::new(Echo::default()))
        .serve_with_incoming(protogate::example::incoming(listener))
        .await?;
    Ok(())
}
