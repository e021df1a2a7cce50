//! The front-end ceiling for `scripts/load.py`: a bare hyper server (HTTP/1.1
//! and h2c on one port, like the gateway's listener) that reads each request
//! body and answers with fixed JSON bytes, so the benchmark can compare the
//! gateway's CPU per request with the least any Rust HTTP server spends on
//! the same exchange.
//!
//! ```sh
//! cargo run --release --example bare_server -- 127.0.0.1:8090 /v1/shelves/1=shelf.json /test/v1/echo=echo.json
//! ```
//!
//! Each `PATH=FILE` answers requests for PATH with FILE's bytes; other paths
//! get 404.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8090".into());
    let mut answers = HashMap::new();
    for pair in args {
        let (path, file) = pair.split_once('=').ok_or_else(|| format!("expected PATH=FILE, got {pair:?}"))?;
        answers.insert(path.to_string(), Bytes::from(std::fs::read(file)?));
    }
    let answers = Arc::new(answers);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("bare server on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let answers = answers.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| answer(answers.clone(), request));
            let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn answer(
    answers: Arc<HashMap<String, Bytes>>,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_string();
    // Read the body like the gateway must, so a POST costs what it costs.
    let _ = request.into_body().collect().await;
    let Some(body) = answers.get(&path) else {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::NOT_FOUND;
        return Ok(response);
    };
    let mut response = Response::new(Full::new(body.clone()));
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    Ok(response)
}
