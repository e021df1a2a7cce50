//! A misbehaving gRPC backend, for the hostile suite: a bare HTTP/2 server
//! that answers every call the way its `x-hostile` metadata asks, so a test
//! can replay what a buggy or malicious backend does.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

type Reply = Response<http_body_util::combinators::BoxBody<Bytes, std::io::Error>>;

/// An empty message in one gRPC frame: valid for every message type.
const EMPTY_MESSAGE: [u8; 5] = [0, 0, 0, 0, 0];

/// Serves on port 0 until the test ends.
pub async fn serve() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(|request| async move { Ok::<_, Infallible>(answer(request).await) });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

async fn answer(request: Request<Incoming>) -> Reply {
    if request.uri().path() == "/grpc.health.v1.Health/Check" {
        // SERVING: readiness sees a healthy backend.
        return reply(vec![0, 0, 0, 0, 2, 8, 1], Some(status_trailers("0", "", "")));
    }
    let mode = request.headers().get("x-hostile").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    // Read the request so the call is a complete one before misbehaving.
    if mode != "silent" {
        let _ = request.into_body().collect().await;
    }
    match mode.as_str() {
        // A status whose details are not base64, in the trailers…
        "details-trailers" => reply(vec![], Some(status_trailers("3", "bad details", "!!!not base64!!!"))),
        // …or in a trailers-only answer.
        "details-headers" => {
            let mut response = reply(vec![], None);
            response.headers_mut().extend(status_trailers("3", "bad details", "!!!not base64!!!"));
            response
        }
        // One message, then the stream breaks (the backend died).
        "die" => {
            let first = stream::iter([Ok(Frame::data(Bytes::from_static(&EMPTY_MESSAGE)))]);
            let death = stream::once(async {
                // After the client has the first message.
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                Err(std::io::Error::other("backend died"))
            });
            let frames = first.chain(death);
            grpc_response(BodyExt::boxed(StreamBody::new(frames)))
        }
        // A frame with an invalid compression flag: tonic's decoder error.
        "garbage" => reply(vec![7, 0, 0, 0, 1, 0], Some(status_trailers("0", "", ""))),
        // An error with header and trailer metadata.
        "error-with-metadata" => {
            let mut trailers = status_trailers("5", "no such thing", "");
            trailers.insert("x-trailer-meta", HeaderValue::from_static("t"));
            let mut response = reply(vec![], Some(trailers));
            response.headers_mut().insert("x-header-meta", HeaderValue::from_static("h"));
            response
        }
        // Accepts the call and never answers.
        "silent" => std::future::pending().await,
        // Streams a message every 50 ms forever, deaf to `grpc-timeout`.
        "endless" => {
            let ticks = stream::unfold((), |()| async {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                Some((Ok(Frame::data(Bytes::from_static(&EMPTY_MESSAGE))), ()))
            });
            grpc_response(BodyExt::boxed(StreamBody::new(ticks)))
        }
        // Sends its headers, then never the message.
        "stall-body" => grpc_response(BodyExt::boxed(StreamBody::new(stream::pending()))),
        _ => reply(EMPTY_MESSAGE.to_vec(), Some(status_trailers("0", "", ""))),
    }
}

fn status_trailers(code: &str, message: &str, details: &str) -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_str(code).unwrap());
    if !message.is_empty() {
        trailers.insert("grpc-message", HeaderValue::from_str(&message.replace(' ', "%20")).unwrap());
    }
    if !details.is_empty() {
        trailers.insert("grpc-status-details-bin", HeaderValue::from_str(details).unwrap());
    }
    trailers
}

fn reply(data: Vec<u8>, trailers: Option<HeaderMap>) -> Reply {
    let mut frames = Vec::new();
    if !data.is_empty() {
        frames.push(Ok(Frame::data(Bytes::from(data))));
    }
    if let Some(trailers) = trailers {
        frames.push(Ok(Frame::trailers(trailers)));
    }
    grpc_response(BodyExt::boxed(StreamBody::new(stream::iter(frames))))
}

fn grpc_response(body: http_body_util::combinators::BoxBody<Bytes, std::io::Error>) -> Reply {
    let mut response = Response::new(body);
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/grpc"));
    response
}
