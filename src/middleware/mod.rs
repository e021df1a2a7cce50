//! Policies as tower layers: CORS, request limits, the access log and metrics.

pub mod auth;
pub mod cors;
pub mod limits;
pub mod metrics;
pub mod rate_limit;
pub mod route_info;
pub mod telemetry;
