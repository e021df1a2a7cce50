//! Protocols spoken on the public listener. A request is classified once by
//! its content type and path, then handled by one module per protocol.

pub mod rest;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{Request, Response};

use crate::registry::Registry;
use crate::transcode::JsonOptions;

/// What every protocol handler needs, shared by all requests.
#[derive(Debug)]
pub struct Context {
    pub registry: Arc<Registry>,
    pub json: JsonOptions,
    pub deadlines: Deadlines,
    pub max_body_size: usize,
}

/// How long calls may take.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// For unary calls when the client sets none.
    pub default: Duration,
    /// Cap on what a client may ask for.
    pub max: Duration,
}

/// Dispatches one request to its protocol.
pub async fn dispatch(context: Arc<Context>, request: Request<Body>) -> Response<Body> {
    rest::serve(&context, request).await
}
