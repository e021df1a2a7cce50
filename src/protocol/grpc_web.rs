//! gRPC-Web (binary and base64 text): tonic-web translates to gRPC and back
//! (trailers in the final frame, errors as trailers-only responses) around
//! the same pass-through as native gRPC.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response};
use tower::{Layer, ServiceExt};

use super::grpc::GrpcProxy;
use super::grpc_json::JsonCodec;
use crate::gateway::Context;

pub async fn serve(context: Arc<Context>, mut request: Request<Body>) -> Response<Body> {
    // tonic-web knows only the protobuf codec: a `+json` request is handed
    // to it as `+proto` for its framing, the pass-through transcodes the
    // messages, and the answer says `+json` again.
    let json = json_variant(request.headers());
    if let Some((_, proto)) = json {
        request.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(proto));
        request.extensions_mut().insert(JsonCodec);
    }
    let service = tonic_web::GrpcWebLayer::new().layer(GrpcProxy::new(context));
    let response: Result<_, Infallible> = service.oneshot(request).await;
    let mut response = match response {
        Ok(response) => response.map(Body::new),
        Err(never) => match never {},
    };
    if let Some((asked, _)) = json {
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(asked));
    }
    response
}

/// The `+json` content type a request asked for, and the `+proto` one of
/// the same framing.
fn json_variant(headers: &http::HeaderMap) -> Option<(&'static str, &'static str)> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/grpc-web+json" => Some(("application/grpc-web+json", "application/grpc-web+proto")),
        "application/grpc-web-text+json" => Some(("application/grpc-web-text+json", "application/grpc-web-text+proto")),
        _ => None,
    }
}
