//! Transcoding between HTTP/JSON and protobuf messages. Pure: no I/O, no
//! tonic or axum types.

pub mod exact;
pub mod fast;
pub mod field_mask;
pub mod field_path;
pub mod form;
pub mod json;
pub mod query;
pub mod request;
pub mod response;
pub mod status;
pub mod stream;
pub mod value;
pub mod wkt;

pub use crate::config::{JsonOptions, Unknown};

#[cfg(test)]
mod form_tests;
#[cfg(test)]
mod tests;
