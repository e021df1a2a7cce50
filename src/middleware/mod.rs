//! Policies: CORS, request limits, authentication and rate limits.

pub mod auth;
pub mod cors;
pub mod limits;
pub mod rate_limit;
