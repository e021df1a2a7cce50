//! The fast transcoder: proto3 JSON ⇄ protobuf wire bytes directly, without
//! building a `DynamicMessage`, driven by plans compiled once per snapshot.
//! Where it is not certain to match prost-reflect (the reference) exactly,
//! it hands over: the caller then takes the prost-reflect path, which gives
//! the same result or the canonical error. Differential tests and a fuzz
//! target hold the two paths together.

#[doc(hidden)]
pub mod differential;
pub mod from_json;
pub mod plan;
pub mod to_json;
mod to_json_special;
pub mod wire;

pub use plan::Plans;
pub use to_json::{Renderer, Style};

/// The fast path declined; use prost-reflect for this input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handover;

#[cfg(test)]
mod tests;
