//! Policies as tower layers: CORS, request limits, authentication, rate
//! limits, the access log, metrics and OpenTelemetry spans.

pub mod auth;
pub mod cors;
pub mod limits;
pub mod metrics;
pub mod otel;
pub mod rate_limit;
pub mod route_info;
pub mod telemetry;
