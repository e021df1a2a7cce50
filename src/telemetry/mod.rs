//! What the gateway tells its operators: the access record and metrics of
//! every request, OpenTelemetry spans, and where log lines go. Not policy:
//! nothing here refuses a request.

pub mod access;
pub mod log_writer;
pub mod metrics;
pub mod otel;
