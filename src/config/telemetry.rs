//! `[tracing]`: OpenTelemetry span export over OTLP/gRPC.

use std::time::Duration;

use serde::Deserialize;

/// Validated tracing settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    /// The collector's OTLP/gRPC endpoint; none exports nothing.
    pub otlp_endpoint: Option<String>,
    pub service_name: String,
    /// Share of new traces sampled; a client's sampled flag wins.
    pub sample_ratio: f64,
    pub export_timeout: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub(super) struct RawTracing {
    otlp_endpoint: Option<String>,
    service_name: String,
    sample_ratio: f64,
    export_timeout: String,
}

impl Default for RawTracing {
    fn default() -> Self {
        Self { otlp_endpoint: None, service_name: "protogate".into(), sample_ratio: 1.0, export_timeout: "10s".into() }
    }
}

pub(super) fn validate(raw: RawTracing, location: &str, errors: &mut Vec<String>) -> TracingConfig {
    if let Some(endpoint) = &raw.otlp_endpoint
        && let Err(e) = super::check_url(endpoint)
    {
        errors.push(format!("{location}: `tracing.otlp_endpoint`: {e}"));
    }
    if !(0.0..=1.0).contains(&raw.sample_ratio) {
        errors.push(format!("{location}: `tracing.sample_ratio`: {} is not between 0 and 1", raw.sample_ratio));
    }
    let export_timeout = humantime::parse_duration(&raw.export_timeout)
        .map_err(|e| {
            errors
                .push(format!("{location}: `tracing.export_timeout`: {:?} is not a duration ({e})", raw.export_timeout))
        })
        .unwrap_or_default();
    TracingConfig {
        otlp_endpoint: raw.otlp_endpoint,
        service_name: raw.service_name,
        sample_ratio: raw.sample_ratio,
        export_timeout,
    }
}
