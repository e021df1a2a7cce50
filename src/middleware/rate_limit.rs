//! Rate limits: GCRA buckets (governor) per route rule, keyed by consumer,
//! JWT subject, client IP (behind a configured number of trusted proxies) or
//! route. A refusal is 429 with `Retry-After`; every limited response carries
//! `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use tonic::Code;

use super::metrics::Metrics;
use super::route_info::{Caller, route_info};
use crate::config::{QuotaConfig, RateKey, RateLimitConfig};
use crate::error::Error;
use crate::protocol::refusal;
use crate::registry::Registry;

type Buckets = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// The quotas in force, one bucket set per rule.
#[derive(Debug)]
pub struct Limiter {
    metrics: Arc<Metrics>,
    key: RateKey,
    trusted_proxies: usize,
    registry: Arc<Registry>,
    rules: HashMap<String, (QuotaConfig, Buckets)>,
    default: Option<(QuotaConfig, Buckets)>,
}

impl Limiter {
    pub fn new(config: &RateLimitConfig, registry: Arc<Registry>, metrics: Arc<Metrics>) -> Self {
        let rules = config.rules.iter().map(|(selector, quota)| (selector.clone(), (*quota, buckets(quota)))).collect();
        Self {
            metrics,
            key: config.key,
            trusted_proxies: config.trusted_proxies,
            registry,
            rules,
            default: config.default.map(|quota| (quota, buckets(&quota))),
        }
    }
}

fn buckets(quota: &QuotaConfig) -> Buckets {
    let per_second = NonZeroU32::new(quota.per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(quota.burst).unwrap_or(per_second);
    RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)).with_middleware::<StateInformationMiddleware>()
}

/// The tower layer's function.
pub async fn limit(State(limiter): State<Arc<Limiter>>, mut request: Request, next: Next) -> Response<Body> {
    if super::cors::is_preflight(&request) {
        return next.run(request).await;
    }
    let route = route_info(&limiter.registry, &mut request);
    let rule = route.selectors().into_iter().flatten().find_map(|s| limiter.rules.get(s).map(|r| (s.to_string(), r)));
    let (selector, (quota, buckets)) = match (rule, &limiter.default) {
        (Some((selector, rule)), _) => (selector, rule),
        (None, Some(default)) => (route.rpc.clone().unwrap_or_default(), default),
        (None, None) => return next.run(request).await,
    };
    let key = format!("{selector}|{}", limiter.bucket_key(&request));
    match buckets.check_key(&key) {
        Ok(state) => {
            let mut response = next.run(request).await;
            headers(response.headers_mut(), quota, state.remaining_burst_capacity(), 0);
            response
        }
        Err(refused) => {
            limiter.metrics.rate_limited.with_label_values(&[route.rpc.as_deref().unwrap_or("")]).inc();
            let wait = refused.wait_time_from(DefaultClock::default().now());
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let mut error = Error::client(Code::ResourceExhausted, format!("rate limit exceeded; retry in {seconds}s"));
            error.http_status = Some(StatusCode::TOO_MANY_REQUESTS);
            let mut response = refusal(&request, error);
            headers(response.headers_mut(), quota, 0, seconds);
            response.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
            response
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
