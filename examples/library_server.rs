//! The example library backend on its own, for trying `protogate serve`:
//!
//! ```sh
//! cargo run --example library_server -- 127.0.0.1:50051
//! cargo run -- serve --descriptor descriptors/library.binpb --upstream http://127.0.0.1:50051
//! ```

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:50051".to_string());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("library backend listening on {}", listener.local_addr()?);
    protogate::example::serve_library(listener).await??;
    Ok(())
}
