//! `[rate_limit]`: GCRA quotas per route selector, keyed by caller.

use serde::Deserialize;

/// Validated rate-limit settings.
#[derive(Debug, Clone, Default)]
pub struct RateLimitConfig {
    pub key: RateKey,
    /// `X-Forwarded-For` hops set by proxies this gateway trusts.
    pub trusted_proxies: usize,
    /// For routes without a rule; none means unlimited.
    pub default: Option<QuotaConfig>,
    pub rules: Vec<(String, QuotaConfig)>,
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
        Self { key: "ip".into(), trusted_proxies: 0, per_second: 0, burst: 0, rules: Vec::new() }
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
    for rule in raw.rules {
        match quota(rule.per_second, rule.burst) {
            Some(quota) => rules.push((rule.selector, quota)),
            None => {
                errors.push(format!("{location}: `rate_limit.rules`: {}: per_second must be at least 1", rule.selector))
            }
        }
    }
    RateLimitConfig { key, trusted_proxies: raw.trusted_proxies, default: quota(raw.per_second, raw.burst), rules }
}

impl RateLimitConfig {
    pub fn enabled(&self) -> bool {
        self.default.is_some() || !self.rules.is_empty()
    }
}
