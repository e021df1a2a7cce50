//! Which failed calls may be tried again, and the budget that keeps retries
//! from multiplying an outage: over each 10 s window, retries may be
//! `budget_ratio` of the calls plus `min_per_second` × 10 (linkerd's shape).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::{Code, Status};

use crate::config::RetryPolicy;
use crate::error::{BACKEND_STATUS, TRANSPORT};

/// How a call failed before the backend answered it, as `upstream::Backend`
/// marks it on the status (`TRANSPORT` metadata).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The request never reached the backend: no connection, a refused
    /// stream, a GOAWAY before the backend took the stream.
    NotSent,
    /// The connection broke while the call was under way.
    Broken,
    /// The upstream is at `max_requests`.
    Overloaded,
    /// The upstream has no endpoints.
    NoEndpoints,
}

impl Failure {
    pub fn mark(self) -> &'static str {
        match self {
            Self::NotSent => "not-sent",
            Self::Broken => "broken",
            Self::Overloaded => "overloaded",
            Self::NoEndpoints => "no-endpoints",
        }
    }

    pub fn of(status: &Status) -> Option<Self> {
        match status.metadata().get(TRANSPORT)?.to_str().ok()? {
            "not-sent" => Some(Self::NotSent),
            "broken" => Some(Self::Broken),
            "overloaded" => Some(Self::Overloaded),
            "no-endpoints" => Some(Self::NoEndpoints),
            _ => None,
        }
    }
}

/// A call may be retried when it never reached the backend (any method);
/// an idempotent one also when its connection broke under it or the backend
/// itself answered UNAVAILABLE.
pub fn may_retry(status: &Status, idempotent: bool) -> bool {
    match Failure::of(status) {
        Some(Failure::NotSent) => true,
        Some(Failure::Broken) => idempotent,
        Some(_) => false,
        None => idempotent && status.code() == Code::Unavailable && status.metadata().contains_key(BACKEND_STATUS),
    }
}

/// The wait before retry number `retry` (1-based): full jitter over an
/// exponentially growing bound, so retries of many calls spread out.
pub fn backoff(first: Duration, retry: u32) -> Duration {
    let bound = first.saturating_mul(1u32 << retry.saturating_sub(1).min(10));
    let bound_micros = u64::try_from(bound.as_micros()).unwrap_or(u64::MAX);
    Duration::from_micros(fastrand::u64(..=bound_micros))
}

const WINDOW: Duration = Duration::from_secs(10);

/// Whether `path` (`/package.Service/Method`) is in `names`, by its method
/// or its service.
pub fn listed(names: &[String], path: &str) -> bool {
    let method = path.trim_start_matches('/');
    let service = method.rsplit_once('/').map_or(method, |(service, _)| service);
    names.iter().any(|name| name == method || name == service)
}

#[derive(Debug)]
pub struct Budget {
    calls: AtomicU64,
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    calls_before: u64,
    retries: u64,
}

impl Default for Budget {
    fn default() -> Self {
        Self::new()
    }
}

impl Budget {
    pub fn new() -> Self {
        let window = Window { started: Instant::now(), calls_before: 0, retries: 0 };
        Self { calls: AtomicU64::new(0), window: Mutex::new(window) }
    }

    /// Counts a call (its first attempt).
    pub fn deposit(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry from the budget `policy` sets (the one in force:
    /// a reload may change it); false when it is spent.
    pub fn withdraw(&self, policy: &RetryPolicy) -> bool {
        let Ok(mut window) = self.window.lock() else { return false };
        let calls = self.calls.load(Ordering::Relaxed);
        if window.started.elapsed() >= WINDOW {
            *window = Window { started: Instant::now(), calls_before: calls, retries: 0 };
        }
        let min_per_window = u64::from(policy.min_per_second) * WINDOW.as_secs();
        let allowed = min_per_window + ((calls - window.calls_before) as f64 * policy.budget_ratio) as u64;
        if window.retries < allowed {
            window.retries += 1;
            true
        } else {
            false
        }
    }
}

/// The endpoints one call has tried, carried in the request's extensions so
/// each attempt goes to another endpoint while there is one.
#[derive(Debug, Clone, Default)]
pub struct Tried(Arc<Mutex<Vec<String>>>);

impl Tried {
    pub fn urls(&self) -> Vec<String> {
        self.0.lock().map(|t| t.clone()).unwrap_or_default()
    }

    pub fn add(&self, url: &str) {
        if let Ok(mut tried) = self.0.lock() {
            tried.push(url.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marked(failure: Option<Failure>, backend: bool, code: Code) -> Status {
        let mut status = Status::new(code, "x");
        if let Some(failure) = failure {
            status.metadata_mut().insert(TRANSPORT, failure.mark().parse().unwrap());
        }
        if backend {
            status.metadata_mut().insert(BACKEND_STATUS, "1".parse().unwrap());
        }
        status
    }

    #[test]
    fn only_safe_failures_are_retried() {
        let cases = [
            (marked(Some(Failure::NotSent), false, Code::Unavailable), false, true),
            (marked(Some(Failure::Broken), false, Code::Unavailable), true, true),
            (marked(Some(Failure::Broken), false, Code::Unavailable), false, false),
            (marked(Some(Failure::Overloaded), false, Code::Unavailable), true, false),
            (marked(Some(Failure::NoEndpoints), false, Code::Unavailable), true, false),
            (marked(None, true, Code::Unavailable), true, true),
            (marked(None, true, Code::Unavailable), false, false),
            (marked(None, true, Code::Internal), true, false),
            // Made up by tonic, not sent by the backend.
            (marked(None, false, Code::Unavailable), true, false),
        ];
        for (i, (status, idempotent, expected)) in cases.iter().enumerate() {
            assert_eq!(may_retry(status, *idempotent), *expected, "case {i}");
        }
    }

    #[test]
    fn the_budget_allows_its_share_and_no_more() {
        let policy = RetryPolicy {
            attempts: 3,
            budget_ratio: 0.2,
            min_per_second: 0,
            backoff: Duration::ZERO,
            idempotent: Vec::new(),
        };
        let budget = Budget::new();
        assert!(!budget.withdraw(&policy));
        for _ in 0..50 {
            budget.deposit();
        }
        let granted = (0..50).filter(|_| budget.withdraw(&policy)).count();
        assert_eq!(granted, 10);
    }

    #[test]
    fn backoff_stays_under_its_bound() {
        for retry in 1..5 {
            let bound = Duration::from_millis(10) * (1 << (retry - 1));
            assert!(backoff(Duration::from_millis(10), retry) <= bound);
        }
    }
}
