//! gRPC-Web (binary and base64 text): tonic-web translates to gRPC and back
//! (trailers in the final frame, errors as trailers-only responses) around
//! the same pass-through as native gRPC.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use http::{Request, Response};
use tower::{Layer, ServiceExt};

use super::grpc::GrpcProxy;
use crate::gateway::Context;

pub async fn serve(context: Arc<Context>, request: Request<Body>) -> Response<Body> {
    let service = tonic_web::GrpcWebLayer::new().layer(GrpcProxy::new(context));
    let response: Result<_, Infallible> = service.oneshot(request).await;
    match response {
        Ok(response) => response.map(Body::new),
        Err(never) => match never {},
    }
}
