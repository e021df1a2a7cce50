//! Rate limits: GCRA buckets (governor) per route rule, keyed by consumer,
//! JWT subject, client IP (behind a configured number of trusted proxies) or
//! route. A refusal is 429 with `Retry-After`; every limited response carries
//! `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`. With a
//! Redis URL the buckets are shared by every replica (`redis`); while Redis
//! is unreachable, local buckets decide or limited requests are refused.

mod redis;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use http::{HeaderMap, HeaderValue, StatusCode};
use tonic::Code;

use self::redis::RedisQuotas;
pub use self::redis::StoreState;
use super::auth::Caller;
use crate::admission::Admitted;
use crate::config::{QuotaConfig, RateKey, RateLimitConfig};
use crate::error::Error;
use crate::telemetry::metrics::Metrics;

type Buckets = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// The quotas in force, one bucket set per rule.
#[derive(Debug)]
pub struct Limiter {
    metrics: Arc<Metrics>,
    key: RateKey,
    trusted_proxies: usize,
    rules: HashMap<String, Rule>,
    default: Option<Rule>,
    /// Shared counters; the local buckets decide only while it is down.
    store: Option<Arc<RedisQuotas>>,
    max_keys: usize,
}

#[derive(Debug)]
struct Rule {
    quota: QuotaConfig,
    local: Buckets,
    /// When the buckets were last swept for idle ones (ms since start).
    swept: AtomicU64,
}

/// How often idle buckets (full again, so indistinguishable from new ones)
/// are dropped: 20 000 callers of one request each kept 81 MiB for good.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);
/// The bucket every new caller shares while a rule's table is full.
const OVERFLOW_KEY: &str = "\u{0}overflow";

/// The rule a route draws from, resolved once per snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateRule {
    pub(crate) selector: Box<str>,
    /// The default quota rather than a rule.
    pub(crate) default: bool,
}

/// One rate-limit decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed {
        remaining: u32,
    },
    Refused {
        wait: Duration,
    },
    /// The shared store is down and the config says reject.
    StoreUnavailable,
}

impl Limiter {
    /// The limiter for a config; `None` when nothing is limited. Fails only
    /// on an unusable Redis URL.
    pub fn new(config: &RateLimitConfig, metrics: Arc<Metrics>) -> Result<Option<Self>, String> {
        if !config.enabled() {
            return Ok(None);
        }
        let store = config.store.clone().map(|store| RedisQuotas::start(store, metrics.clone())).transpose()?;
        let rule = |quota: &QuotaConfig| Rule { quota: *quota, local: buckets(quota), swept: AtomicU64::new(0) };
        Ok(Some(Self {
            key: config.key,
            trusted_proxies: config.trusted_proxies,
            rules: config.rules.iter().map(|(selector, quota)| (selector.clone(), rule(quota))).collect(),
            default: config.default.as_ref().map(rule),
            store,
            metrics,
            max_keys: config.max_keys,
        }))
    }

    /// The shared store's state, when there is one.
    pub fn store_state(&self) -> Option<StoreState> {
        self.store.as_ref().map(|store| store.state())
    }

    async fn decide(&self, rule: &Rule, selector: &str, key: &str) -> Decision {
        if let Some(store) = &self.store {
            if let Ok(decision) = store.check(key, &rule.quota).await {
                return decision;
            }
            let mode = if store.falls_back() { "local" } else { "reject" };
            self.metrics.rate_limit_fallbacks.with_label_values(&[mode]).inc();
            if !store.falls_back() {
                return Decision::StoreUnavailable;
            }
        }
        let key = self.bounded_key(rule, selector, key);
        match rule.local.check_key(&key) {
            Ok(state) => Decision::Allowed { remaining: state.remaining_burst_capacity() },
            Err(refused) => Decision::Refused { wait: refused.wait_time_from(DefaultClock::default().now()) },
        }
    }
}

impl Limiter {
    /// The caller's own bucket while the table has room; idle buckets are
    /// swept every few seconds (and at once when the table is full), and
    /// if it is still full, new callers share one overflow bucket so memory
    /// stays bounded under a flood of distinct keys.
    fn bounded_key(&self, rule: &Rule, selector: &str, key: &str) -> String {
        let now = u64::try_from(START.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = rule.swept.load(Ordering::Relaxed);
        let full = rule.local.len() >= self.max_keys;
        let due = now.saturating_sub(last) >= SWEEP_INTERVAL.as_millis() as u64;
        let recently = now.saturating_sub(last) < 1_000;
        if (due || full && !recently)
            && rule.swept.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            rule.local.retain_recent();
            rule.local.shrink_to_fit();
            let kept = i64::try_from(rule.local.len()).unwrap_or(i64::MAX);
            self.metrics.rate_limit_buckets.with_label_values(&[selector]).set(kept);
        }
        if rule.local.len() >= self.max_keys {
            self.metrics.rate_limit_overflow.inc();
            return format!("{selector}|{OVERFLOW_KEY}");
        }
        key.to_string()
    }
}

static START: std::sync::LazyLock<std::time::Instant> = std::sync::LazyLock::new(std::time::Instant::now);

fn buckets(quota: &QuotaConfig) -> Buckets {
    let per_second = NonZeroU32::new(quota.per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(quota.burst).unwrap_or(per_second);
    RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)).with_middleware::<StateInformationMiddleware>()
}

impl Limiter {
    /// Draws from the request's bucket: the `RateLimit-*` headers for the
    /// answer when allowed, else a refusal (429 with `Retry-After`, or 503
    /// when the shared store is down and the config says reject).
    /// The rule a route draws from: the most specific selector's, else the
    /// default quota (keyed by the method).
    pub fn rule_for(&self, selectors: [Option<&str>; 3], rpc: Option<&str>) -> Option<RateRule> {
        if let Some(selector) = selectors.into_iter().flatten().find(|s| self.rules.contains_key(*s)) {
            return Some(RateRule { selector: selector.into(), default: false });
        }
        self.default.as_ref().map(|_| RateRule { selector: rpc.unwrap_or_default().into(), default: true })
    }

    /// `rule` is the request's, resolved with the route's other policies.
    pub async fn admit(
        &self,
        admitted: &Admitted,
        rule: Option<&RateRule>,
        request: &mut Request,
    ) -> Result<Option<HeaderMap>, Error> {
        let Some(found) = rule else { return Ok(None) };
        let selector = &*found.selector;
        let rule = if found.default { self.default.as_ref() } else { self.rules.get(selector) };
        let Some(rule) = rule else { return Ok(None) };
        let key = format!("{selector}|{}", self.bucket_key(request));
        match self.decide(rule, selector, &key).await {
            Decision::Allowed { remaining } => {
                let mut out = HeaderMap::new();
                headers(&mut out, &rule.quota, remaining, 0);
                Ok(Some(out))
            }
            Decision::Refused { wait } => {
                self.metrics.rate_limited.with_label_values(&[admitted.rpc().unwrap_or("")]).inc();
                let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                let mut error =
                    Error::client(Code::ResourceExhausted, format!("rate limit exceeded; retry in {seconds}s"));
                error.http_status = Some(StatusCode::TOO_MANY_REQUESTS);
                error.retry_after = Some(u32::try_from(seconds).unwrap_or(u32::MAX));
                let mut out = HeaderMap::new();
                headers(&mut out, &rule.quota, 0, seconds);
                error.headers = Some(Box::new(out));
                Err(error)
            }
            Decision::StoreUnavailable => {
                let mut error = Error::gateway(Code::Unavailable, "the rate-limit store is unreachable");
                error.message = "rate limits cannot be checked right now; retry shortly".into();
                error.http_status = Some(StatusCode::SERVICE_UNAVAILABLE);
                error.retry_after = Some(1);
                Err(error)
            }
        }
    }
}

impl Limiter {
    /// Whose bucket a request draws from.
    fn bucket_key(&self, request: &Request) -> String {
        let caller = request.extensions().get::<Caller>();
        let ip = || self.client_ip(request).unwrap_or_default();
        match self.key {
            RateKey::Route => String::new(),
            RateKey::Ip => ip(),
            RateKey::Subject => caller.and_then(|c| c.subject.clone()).unwrap_or_else(ip),
            RateKey::Consumer => caller.and_then(|c| c.consumer.clone().or(c.subject.clone())).unwrap_or_else(ip),
        }
    }

    /// The peer address, or the address the last trusted proxy saw.
    fn client_ip(&self, request: &Request) -> Option<String> {
        let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
        if self.trusted_proxies == 0 {
            return peer;
        }
        let forwarded = request.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok()).unwrap_or("");
        let hops: Vec<&str> = forwarded.split(',').map(str::trim).filter(|h| !h.is_empty()).collect();
        hops.len().checked_sub(self.trusted_proxies).and_then(|i| hops.get(i)).map(|h| h.to_string()).or(peer)
    }
}

fn headers(out: &mut HeaderMap, quota: &QuotaConfig, remaining: u32, reset: u64) {
    out.insert("ratelimit-limit", HeaderValue::from(quota.burst));
    out.insert("ratelimit-remaining", HeaderValue::from(remaining));
    out.insert("ratelimit-reset", HeaderValue::from(reset));
}
