//! `[rate_limit]`: GCRA quotas per route selector, keyed by caller.

use std::time::Duration;

use serde::Deserialize;

/// Validated rate-limit settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimitConfig {
    pub key: RateKey,
    /// `X-Forwarded-For` hops set by proxies this gateway trusts.
    pub trusted_proxies: usize,
    /// For routes without a rule; none means unlimited.
    pub default: Option<QuotaConfig>,
    pub rules: Vec<(String, QuotaConfig)>,
    /// Counters shared by every replica, when set.
    pub store: Option<RateStoreConfig>,
    /// Most local buckets kept per rule; past it, new callers share one.
    pub max_keys: usize,
}

/// Distributed mode: GCRA state in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateStoreConfig {
    pub redis: String,
    pub key_prefix: String,
    /// How long one decision may wait on Redis before it counts as down.
    pub timeout: Duration,
    /// While Redis is unreachable: local limits (true) or 503 (false).
    pub fall_back_to_local: bool,
}

/// What one bucket belongs to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RateKey {
    /// The API key's consumer, else the JWT subject, else the client IP.
    Consumer,
    /// The JWT subject, else the client IP.
    Subject,
    #[default]
    Ip,
    /// One bucket per route for everyone.
    Route,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaConfig {
    pub per_second: u32,
    pub burst: u32,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub(super) struct RawRateLimit {
    key: String,
    trusted_proxies: usize,
    per_second: u32,
    burst: u32,
    rules: Vec<RawRule>,
    redis: Option<String>,
    redis_key_prefix: String,
    redis_timeout: String,
    on_redis_error: String,
    max_keys: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    selector: String,
    per_second: u32,
    #[serde(default)]
    burst: u32,
}

impl Default for RawRateLimit {
    fn default() -> Self {
        Self {
            key: "ip".into(),
            trusted_proxies: 0,
            per_second: 0,
            burst: 0,
            rules: Vec::new(),
            redis: None,
            redis_key_prefix: "protogate:ratelimit:".into(),
            redis_timeout: "100ms".into(),
            on_redis_error: "local".into(),
            max_keys: 100_000,
        }
    }
}

fn quota(per_second: u32, burst: u32) -> Option<QuotaConfig> {
    (per_second > 0).then_some(QuotaConfig { per_second, burst: if burst == 0 { per_second } else { burst } })
}

pub(super) fn validate(raw: RawRateLimit, location: &str, errors: &mut Vec<String>) -> RateLimitConfig {
    let key = match raw.key.as_str() {
        "consumer" => RateKey::Consumer,
        "subject" => RateKey::Subject,
        "ip" => RateKey::Ip,
        "route" => RateKey::Route,
        other => {
            errors.push(format!("{location}: `rate_limit.key`: {other:?} is not consumer, subject, ip or route"));
            RateKey::Ip
        }
    };
    let mut rules = Vec::new();
    for rule in &raw.rules {
        match quota(rule.per_second, rule.burst) {
            Some(quota) => rules.push((rule.selector.clone(), quota)),
            None => {
                errors.push(format!("{location}: `rate_limit.rules`: {}: per_second must be at least 1", rule.selector))
            }
        }
    }
    let store = raw.redis.clone().map(|redis| store(&raw, redis, location, errors));
    if raw.max_keys == 0 {
        errors.push(format!("{location}: `rate_limit.max_keys` must be at least 1"));
    }
    RateLimitConfig {
        max_keys: raw.max_keys,
        key,
        trusted_proxies: raw.trusted_proxies,
        default: quota(raw.per_second, raw.burst),
        rules,
        store,
    }
}

fn store(raw: &RawRateLimit, redis: String, location: &str, errors: &mut Vec<String>) -> RateStoreConfig {
    if let Err(e) = redis::Client::open(redis.as_str()) {
        errors.push(format!("{location}: `rate_limit.redis`: {e}"));
    }
    let timeout = humantime::parse_duration(&raw.redis_timeout)
        .map_err(|e| {
            errors.push(format!(
                "{location}: `rate_limit.redis_timeout`: {:?} is not a duration ({e})",
                raw.redis_timeout
            ))
        })
        .unwrap_or_default();
    let fall_back_to_local = match raw.on_redis_error.as_str() {
        "local" => true,
        "reject" => false,
        other => {
            errors.push(format!("{location}: `rate_limit.on_redis_error`: {other:?} is not local or reject"));
            true
        }
    };
    RateStoreConfig { redis, key_prefix: raw.redis_key_prefix.clone(), timeout, fall_back_to_local }
}

impl RateLimitConfig {
    pub fn enabled(&self) -> bool {
        self.default.is_some() || !self.rules.is_empty()
    }
}
