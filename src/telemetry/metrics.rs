//! Prometheus metrics, served by the admin listener at `/metrics`. Latency is
//! split into the time spent transcoding and the time waiting on backends.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric the gateway exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub transcode: HistogramVec,
    pub backend: HistogramVec,
    /// Each backend call a composite made, by composite route and call name.
    pub composite_calls: HistogramVec,
    pub request_bytes: HistogramVec,
    pub response_bytes: HistogramVec,
    pub in_flight: IntGauge,
    pub upstream_errors: IntCounterVec,
    pub snapshot_generation: IntGauge,
    pub rate_limited: IntCounterVec,
    pub auth_rejected: IntCounterVec,
    /// 1 while the distributed rate-limit store answers.
    pub rate_limit_store_up: IntGauge,
    pub rate_limit_fallbacks: IntCounterVec,
    pub config_reloads: IntCounterVec,
    /// Messages the fast transcoder took, or handed over to prost-reflect.
    pub fast_transcode: IntCounterVec,
    /// Request tasks that panicked and were answered 500 / INTERNAL.
    pub panics: IntCounter,
    /// Routes the active snapshot left out (lenient mode).
    pub skipped_routes: IntGauge,
    /// Requests whose unknown JSON fields or query parameters were ignored.
    pub ignored_unknown: IntCounter,
    /// Rate-limit decisions made on the shared overflow bucket.
    pub rate_limit_overflow: IntCounter,
    /// Local rate-limit buckets per rule, as of the last sweep.
    pub rate_limit_buckets: IntGaugeVec,
    /// Log lines dropped because the log writer's queue was full.
    pub log_lines_dropped: IntCounter,
    /// Its four series, resolved once: [request, response] × [fast, handover].
    transcode_paths: [[IntCounter; 2]; 2],
}

/// Which way a message was transcoded.
#[derive(Debug, Clone, Copy)]
pub enum Direction {
    Request,
    Response,
}

const LATENCY_BUCKETS: [f64; 14] =
    [0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0];
const SIZE_BUCKETS: [f64; 8] = [64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262_144.0, 1_048_576.0];

impl Metrics {
    /// Adds metrics another module keeps (the upstream pools').
    pub fn register(&self, collector: Box<dyn prometheus::core::Collector>) -> Result<(), prometheus::Error> {
        self.registry.register(collector)
    }

    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("protogate".into()), None)?;
        let labels = ["protocol", "route", "rpc", "http_status", "grpc_code"];
        let requests = IntCounterVec::new(Opts::new("requests_total", "Requests served"), &labels)?;
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), &["protocol", "rpc"])
        };
        let fast_transcode = IntCounterVec::new(
            Opts::new("fast_transcode_total", "Messages transcoded by the fast path or handed over to prost-reflect"),
            &["direction", "path"],
        )?;
        let metrics = Self {
            requests,
            duration: histogram(
                "request_duration_seconds",
                "Time from request to the end of the response",
                &LATENCY_BUCKETS,
            )?,
            transcode: histogram(
                "transcode_duration_seconds",
                "Time spent transcoding requests and responses",
                &LATENCY_BUCKETS,
            )?,
            backend: histogram(
                "backend_duration_seconds",
                "Time waiting on the backend for its answer",
                &LATENCY_BUCKETS,
            )?,
            composite_calls: HistogramVec::new(
                HistogramOpts::new(
                    "composite_call_duration_seconds",
                    "Time each backend call of a composite took, by its route, call name and gRPC code",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["route", "call", "grpc_code"],
            )?,
            request_bytes: histogram("request_bytes", "Request body sizes", &SIZE_BUCKETS)?,
            response_bytes: histogram("response_bytes", "Response body sizes", &SIZE_BUCKETS)?,
            in_flight: IntGauge::new("requests_in_flight", "Requests being served")?,
            upstream_errors: IntCounterVec::new(
                Opts::new("upstream_errors_total", "Calls that could not reach a backend"),
                &["upstream"],
            )?,
            snapshot_generation: IntGauge::new("snapshot_generation", "Generation of the active registry snapshot")?,
            rate_limited: IntCounterVec::new(
                Opts::new("rate_limited_total", "Requests refused by a rate limit"),
                &["rpc"],
            )?,
            auth_rejected: IntCounterVec::new(
                Opts::new("auth_rejected_total", "Requests refused by authentication (401) or authorization (403)"),
                &["reason"],
            )?,
            rate_limit_store_up: IntGauge::new("rate_limit_store_up", "1 while the shared rate-limit store answers")?,
            rate_limit_fallbacks: IntCounterVec::new(
                Opts::new(
                    "rate_limit_store_fallbacks_total",
                    "Rate-limit decisions made without the shared store (local limits or rejected)",
                ),
                &["mode"],
            )?,
            config_reloads: IntCounterVec::new(
                Opts::new("config_reloads_total", "Configuration reloads, applied or rejected"),
                &["outcome"],
            )?,
            transcode_paths: ["request", "response"]
                .map(|direction| ["fast", "handover"].map(|path| fast_transcode.with_label_values(&[direction, path]))),
            fast_transcode,
            rate_limit_overflow: IntCounter::new(
                "rate_limit_overflow_total",
                "Rate-limit decisions on the shared overflow bucket because the bucket table was full",
            )?,
            rate_limit_buckets: IntGaugeVec::new(
                Opts::new("rate_limit_buckets", "Local rate-limit buckets kept, per rule, as of the last sweep"),
                &["rule"],
            )?,
            ignored_unknown: IntCounter::new(
                "ignored_unknown_input_total",
                "Requests whose unknown JSON fields or query parameters were ignored (grpc-gateway profile)",
            )?,
            skipped_routes: IntGauge::new(
                "skipped_routes",
                "Routes the active snapshot left out (registry.lenient_routes)",
            )?,
            panics: IntCounter::new("panics_total", "Request handlers that panicked (a bug; answered as INTERNAL)")?,
            log_lines_dropped: IntCounter::new(
                "log_lines_dropped_total",
                "Log lines (the access log included) dropped because the log writer's queue was full",
            )?,
            registry,
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 22] = [
            Box::new(metrics.composite_calls.clone()),
            Box::new(metrics.log_lines_dropped.clone()),
            Box::new(metrics.ignored_unknown.clone()),
            Box::new(metrics.skipped_routes.clone()),
            Box::new(metrics.rate_limit_buckets.clone()),
            Box::new(metrics.panics.clone()),
            Box::new(metrics.rate_limit_overflow.clone()),
            Box::new(metrics.fast_transcode.clone()),
            Box::new(metrics.rate_limit_store_up.clone()),
            Box::new(metrics.rate_limit_fallbacks.clone()),
            Box::new(metrics.config_reloads.clone()),
            Box::new(metrics.rate_limited.clone()),
            Box::new(metrics.auth_rejected.clone()),
            Box::new(metrics.requests.clone()),
            Box::new(metrics.duration.clone()),
            Box::new(metrics.transcode.clone()),
            Box::new(metrics.backend.clone()),
            Box::new(metrics.request_bytes.clone()),
            Box::new(metrics.response_bytes.clone()),
            Box::new(metrics.in_flight.clone()),
            Box::new(metrics.upstream_errors.clone()),
            Box::new(metrics.snapshot_generation.clone()),
        ];
        for collector in collectors {
            metrics.registry.register(collector)?;
        }
        Ok(metrics)
    }

    /// Counts one message by direction and path, without a label lookup.
    pub fn count_transcode(&self, direction: Direction, fast: bool) {
        self.transcode_paths[direction as usize][usize::from(!fast)].inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<Vec<u8>, prometheus::Error> {
        let dropped = super::log_writer::dropped_lines();
        self.log_lines_dropped.inc_by(dropped.saturating_sub(self.log_lines_dropped.get()));
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(out)
    }
}
