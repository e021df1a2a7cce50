//! The echo backend lives in the library (also used by examples/echo_server.rs).

pub use protogate::example::echo::*;
