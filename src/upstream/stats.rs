//! The upstream side's own metrics, registered with the gateway's registry:
//! attempts and their outcomes, retries, ejections, fast failures, and each
//! endpoint's state.

use prometheus::core::Collector;
use prometheus::{IntCounterVec, IntGaugeVec, Opts};

#[derive(Debug, Clone)]
pub struct Stats {
    /// Calls sent to an endpoint, by outcome: `answered`, `unavailable`, `failed`.
    pub attempts: IntCounterVec,
    pub retries: IntCounterVec,
    /// Retries the budget refused.
    pub budget_exhausted: IntCounterVec,
    pub ejections: IntCounterVec,
    /// Calls refused at `max_requests`.
    pub overloaded: IntCounterVec,
    /// 1 for the endpoint's current state (`up`, `unhealthy`, `ejected`).
    endpoint_state: IntGaugeVec,
}

const STATES: [&str; 3] = ["up", "unhealthy", "ejected"];

impl Stats {
    pub fn new() -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str, labels: &[&str]| IntCounterVec::new(Opts::new(name, help), labels);
        Ok(Self {
            attempts: counter("upstream_attempts_total", "Calls sent to upstream endpoints", &["upstream", "outcome"])?,
            retries: counter("upstream_retries_total", "Calls retried on another endpoint", &["upstream"])?,
            budget_exhausted: counter(
                "upstream_retry_budget_exhausted_total",
                "Retries refused by the retry budget",
                &["upstream"],
            )?,
            ejections: counter("upstream_ejections_total", "Endpoints ejected for failing calls", &["upstream"])?,
            overloaded: counter("upstream_overloaded_total", "Calls refused at upstream.max_requests", &["upstream"])?,
            endpoint_state: IntGaugeVec::new(
                Opts::new("upstream_endpoint_state", "1 for each endpoint's current state"),
                &["upstream", "endpoint", "state"],
            )?,
        })
    }

    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.attempts.clone()),
            Box::new(self.retries.clone()),
            Box::new(self.budget_exhausted.clone()),
            Box::new(self.ejections.clone()),
            Box::new(self.overloaded.clone()),
            Box::new(self.endpoint_state.clone()),
        ]
    }

    pub(super) fn set_state(&self, upstream: &str, endpoint: &str, state: &str) {
        for candidate in STATES {
            self.endpoint_state.with_label_values(&[upstream, endpoint, candidate]).set(i64::from(candidate == state));
        }
    }

    pub(super) fn forget(&self, upstream: &str, endpoint: &str) {
        for state in STATES {
            let _ = self.endpoint_state.remove_label_values(&[upstream, endpoint, state]);
        }
    }
}
