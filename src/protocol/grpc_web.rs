//! gRPC-Web (binary and base64 text): tonic-web translates to gRPC and back
//! (trailers in the final frame, errors as trailers-only responses) around
//! the same pass-through as native gRPC.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderValue, Request, Response};
use tower::{Layer, ServiceExt};

use super::grpc::GrpcProxy;
use super::grpc_json::JsonCodec;
use crate::gateway::Context;

pub async fn serve(context: Arc<Context>, mut request: Request<Body>) -> Response<Body> {
    // tonic-web knows only the protobuf codec: a `+json` request is handed
    // to it as `+proto` for its framing, the pass-through transcodes the
    // messages, and the answer says `+json` again.
    let json = proto_variant(request.headers().get(CONTENT_TYPE)).is_some();
    if json {
        for header in [CONTENT_TYPE, ACCEPT] {
            if let Some(proto) = proto_variant(request.headers().get(&header)) {
                request.headers_mut().insert(header, HeaderValue::from_static(proto));
            }
        }
        request.extensions_mut().insert(JsonCodec);
    }
    let service = tonic_web::GrpcWebLayer::new().layer(GrpcProxy::new(context));
    let response: Result<_, Infallible> = service.oneshot(request).await;
    let mut response = match response {
        Ok(response) => response.map(Body::new),
        Err(never) => match never {},
    };
    if json {
        let text = response
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc-web-text"));
        let answered = if text { "application/grpc-web-text+json" } else { "application/grpc-web+json" };
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(answered));
    }
    response
}

/// The `+proto` type of the same framing as a gRPC-Web `+json` one.
fn proto_variant(value: Option<&HeaderValue>) -> Option<&'static str> {
    let value = value?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/grpc-web+json" => Some("application/grpc-web+proto"),
        "application/grpc-web-text+json" => Some("application/grpc-web-text+proto"),
        _ => None,
    }
}
