//! protogate: a gRPC/REST transcoding API gateway.
//!
//! Data flow: `server` accepts a request and runs the tower stack,
//! `protocol` classifies it once, `registry` hands out the current
//! `Snapshot`, `route` matches it to a binding, `transcode` builds the request
//! message, `upstream` calls the backend and `transcode` renders the answer.

pub mod admin;
pub mod admission;
pub mod compose;
pub mod config;
pub mod error;
pub mod example;
pub mod gateway;
pub mod middleware;
pub mod openapi;
pub mod pb;
pub mod protocol;
pub mod readiness;
pub mod registry;
pub mod route;
pub mod server;
pub mod services;
pub mod telemetry;
pub mod transcode;
pub mod upstream;
