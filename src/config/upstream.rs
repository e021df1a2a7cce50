//! `[upstream]`: which endpoints serve which service, and how the gateway
//! spreads, checks, retries and limits its calls to them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::Flags;

/// Which upstream serves which service, from the configuration: per-service
/// entries, then a set's own upstream, then the default. An upstream is its
/// spec text: endpoints separated by commas.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamMap {
    pub default: Option<String>,
    pub services: BTreeMap<String, String>,
}

impl UpstreamMap {
    pub fn for_service<'a>(&'a self, service: &str, set_upstream: Option<&'a str>) -> Option<&'a str> {
        self.services.get(service).map(String::as_str).or(set_upstream).or(self.default.as_deref())
    }
}

/// One entry of an upstream spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// `http://host:port` or `https://host:port`, used as written.
    Url(String),
    /// `dns:///host:port`: every address the name resolves to, re-resolved
    /// every `dns_refresh`; plain HTTP/2 unless `upstream.tls.dns` is set.
    Dns { host: String, port: u16 },
}

/// Parses an upstream spec (`URL[,URL…]`), naming the entry that is wrong.
pub fn parse_spec(spec: &str) -> Result<Vec<Address>, String> {
    let entries: Vec<&str> = spec.split(',').map(str::trim).collect();
    if entries.iter().any(|e| e.is_empty()) {
        return Err(format!("upstream {spec:?} has an empty entry; separate URLs with single commas"));
    }
    let mut addresses = Vec::with_capacity(entries.len());
    for entry in entries {
        let address = parse_address(entry)?;
        if addresses.contains(&address) {
            return Err(format!("upstream {spec:?} lists {entry:?} twice"));
        }
        addresses.push(address);
    }
    Ok(addresses)
}

fn parse_address(entry: &str) -> Result<Address, String> {
    if let Some(target) = entry.strip_prefix("dns:///") {
        let (host, port) = target
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
            .filter(|(host, _)| !host.is_empty() && !host.contains('/'))
            .ok_or_else(|| format!("upstream {entry:?} must be dns:///HOST:PORT"))?;
        return Ok(Address::Dns { host: host.trim_start_matches('[').trim_end_matches(']').to_string(), port });
    }
    check_url(entry)?;
    Ok(Address::Url(entry.to_string()))
}

/// Checks one endpoint URL: http:// or https://, a host, nothing else.
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed: http::Uri = url.parse().map_err(|e| format!("invalid upstream URL {url:?}: {e}"))?;
    match parsed.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(format!("upstream URL {url:?} must start with http://, https:// or dns:///")),
    }
    if parsed.host().is_none_or(str::is_empty) {
        return Err(format!("upstream URL {url:?} has no host"));
    }
    if parsed.path_and_query().is_some_and(|p| p.as_str() != "/") {
        return Err(format!("upstream URL {url:?} has a path; give scheme, host and port only"));
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub map: UpstreamMap,
    /// Deadline of unary calls when the client sends no `Grpc-Timeout`.
    pub timeout: Duration,
    /// Upper bound on any deadline a client asks for.
    pub max_timeout: Duration,
    pub connect_timeout: Duration,
    /// Largest gRPC message sent to or accepted from a backend.
    pub max_message_size: usize,
    pub pool: PoolSettings,
}

/// How every upstream's endpoints are found, chosen, checked and guarded.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolSettings {
    pub connect_timeout: Duration,
    pub dns_refresh: Duration,
    /// Calls in flight per upstream beyond which new ones fail fast (503).
    pub max_requests: usize,
    /// Calls waiting for an endpoint's connection to open beyond which new
    /// ones fail fast (503).
    pub max_pending: usize,
    pub retry: RetryPolicy,
    pub health: HealthPolicy,
    pub ejection: EjectionPolicy,
    pub tls: ClientTls,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Tries per call in all, the first included; 1 turns retries off.
    pub attempts: u32,
    /// Retries allowed as a share of calls (0.2 = 20 %), over ten seconds.
    pub budget_ratio: f64,
    /// Retries always allowed per second, so quiet upstreams can retry.
    pub min_per_second: u32,
    /// First backoff; doubles per retry, with full jitter.
    pub backoff: Duration,
    /// `package.Service/Method` or `package.Service` names retried on
    /// UNAVAILABLE besides those declared idempotent in their descriptor.
    pub idempotent: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthPolicy {
    /// Interval of active `grpc.health.v1` checks per endpoint; 0 turns them off.
    pub interval: Duration,
    pub timeout: Duration,
    pub unhealthy_threshold: u32,
    pub healthy_threshold: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EjectionPolicy {
    /// Consecutive connection failures or UNAVAILABLE answers that eject an
    /// endpoint; 0 turns ejection off.
    pub consecutive_failures: u32,
    /// First ejection time; the n-th ejection in a row lasts n times this.
    pub base_time: Duration,
    pub max_time: Duration,
    /// Largest share of an upstream's endpoints ejected at once (percent).
    pub max_percent: u32,
}

/// TLS towards `https://` endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM roots to verify backends by; the system roots when none.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for mTLS backends.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Name checked against the certificate (and sent as SNI) instead of the URL's host.
    pub server_name: Option<String>,
    /// Use TLS for `dns:///` endpoints too.
    pub dns: bool,
}

/// A URL or a list of URLs in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum Endpoints {
    One(String),
    Many(Vec<String>),
}

impl Endpoints {
    fn spec(self) -> String {
        match self {
            Self::One(url) => url,
            Self::Many(urls) => urls.join(","),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub(super) struct RawUpstream {
    default: Option<Endpoints>,
    services: BTreeMap<String, Endpoints>,
    timeout: String,
    max_timeout: String,
    connect_timeout: String,
    max_message_size: usize,
    dns_refresh: String,
    max_requests: usize,
    max_pending: usize,
    retry: RawRetry,
    health: RawHealth,
    ejection: RawEjection,
    tls: ClientTlsRaw,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct RawRetry {
    attempts: u32,
    budget_percent: u32,
    min_per_second: u32,
    backoff: String,
    idempotent_methods: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct RawHealth {
    interval: String,
    timeout: String,
    unhealthy_threshold: u32,
    healthy_threshold: u32,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct RawEjection {
    consecutive_failures: u32,
    base_time: String,
    max_time: String,
    max_percent: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ClientTlsRaw {
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    server_name: Option<String>,
    dns: bool,
}

impl Default for RawUpstream {
    fn default() -> Self {
        Self {
            default: None,
            services: BTreeMap::new(),
            timeout: "15s".into(),
            max_timeout: "5m".into(),
            connect_timeout: "5s".into(),
            max_message_size: 4 * 1024 * 1024,
            dns_refresh: "5s".into(),
            max_requests: 10_000,
            max_pending: 1_000,
            retry: RawRetry::default(),
            health: RawHealth::default(),
            ejection: RawEjection::default(),
            tls: ClientTlsRaw::default(),
        }
    }
}

impl Default for RawRetry {
    fn default() -> Self {
        Self {
            attempts: 3,
            budget_percent: 20,
            min_per_second: 10,
            backoff: "25ms".into(),
            idempotent_methods: Vec::new(),
        }
    }
}

impl Default for RawHealth {
    fn default() -> Self {
        Self { interval: "5s".into(), timeout: "1s".into(), unhealthy_threshold: 2, healthy_threshold: 1 }
    }
}

impl Default for RawEjection {
    fn default() -> Self {
        Self { consecutive_failures: 5, base_time: "10s".into(), max_time: "5m".into(), max_percent: 50 }
    }
}

/// The `[upstream]` table with the `--upstream` flags applied.
pub(super) fn validate(raw: RawUpstream, flags: &Flags, location: &str, errors: &mut Vec<String>) -> UpstreamConfig {
    let map = upstream_map(raw.default.clone(), raw.services.clone(), flags, location, errors);
    let pool = pool_settings(&raw, location, errors);
    let mut duration = |key: &str, text: &str| parse_duration(key, text, location, errors);
    let config = UpstreamConfig {
        map,
        timeout: duration("timeout", &raw.timeout),
        max_timeout: duration("max_timeout", &raw.max_timeout),
        connect_timeout: pool.connect_timeout,
        max_message_size: raw.max_message_size,
        pool,
    };
    check_pool(&config.pool, location, errors);
    config
}

impl Default for PoolSettings {
    fn default() -> Self {
        pool_settings(&RawUpstream::default(), "defaults", &mut Vec::new())
    }
}

fn parse_duration(key: &str, text: &str, location: &str, errors: &mut Vec<String>) -> Duration {
    humantime::parse_duration(text)
        .map_err(|e| errors.push(format!("{location}: `upstream.{key}`: {text:?} is not a duration ({e})")))
        .unwrap_or_default()
}

fn pool_settings(raw: &RawUpstream, location: &str, errors: &mut Vec<String>) -> PoolSettings {
    let mut duration = |key: &str, text: &str| parse_duration(key, text, location, errors);
    PoolSettings {
        connect_timeout: duration("connect_timeout", &raw.connect_timeout),
        dns_refresh: duration("dns_refresh", &raw.dns_refresh),
        max_requests: raw.max_requests,
        max_pending: raw.max_pending,
        retry: RetryPolicy {
            attempts: raw.retry.attempts,
            budget_ratio: f64::from(raw.retry.budget_percent) / 100.0,
            min_per_second: raw.retry.min_per_second,
            backoff: duration("retry.backoff", &raw.retry.backoff),
            idempotent: raw.retry.idempotent_methods.clone(),
        },
        health: HealthPolicy {
            interval: duration("health.interval", &raw.health.interval),
            timeout: duration("health.timeout", &raw.health.timeout),
            unhealthy_threshold: raw.health.unhealthy_threshold,
            healthy_threshold: raw.health.healthy_threshold,
        },
        ejection: EjectionPolicy {
            consecutive_failures: raw.ejection.consecutive_failures,
            base_time: duration("ejection.base_time", &raw.ejection.base_time),
            max_time: duration("ejection.max_time", &raw.ejection.max_time),
            max_percent: raw.ejection.max_percent,
        },
        tls: ClientTls {
            ca_file: raw.tls.ca_file.clone(),
            cert_file: raw.tls.cert_file.clone(),
            key_file: raw.tls.key_file.clone(),
            server_name: raw.tls.server_name.clone(),
            dns: raw.tls.dns,
        },
    }
}

fn upstream_map(
    default: Option<Endpoints>,
    services: BTreeMap<String, Endpoints>,
    flags: &Flags,
    location: &str,
    errors: &mut Vec<String>,
) -> UpstreamMap {
    let services = services.into_iter().map(|(service, endpoints)| (service, endpoints.spec())).collect();
    let mut map = UpstreamMap { default: default.map(Endpoints::spec), services };
    // A flag given twice for one service used to keep the last silently.
    let mut flagged = std::collections::BTreeSet::new();
    for flag in &flags.upstreams {
        let (service, spec) = split_flag(flag);
        if !flagged.insert(service) {
            let what = service.map_or("the default upstream".to_string(), |s| format!("service {s}"));
            errors.push(format!("--upstream: {what} is given more than once; list its endpoints as URL,URL"));
        }
        match service {
            Some(service) => {
                map.services.insert(service.to_string(), spec.to_string());
            }
            None => map.default = Some(spec.to_string()),
        }
    }
    let specs = map
        .default
        .iter()
        .map(|u| ("upstream.default".to_string(), u))
        .chain(map.services.iter().map(|(service, url)| (format!("upstream.services.\"{service}\""), url)));
    for (key, spec) in specs {
        if let Err(e) = parse_spec(spec) {
            errors.push(format!("{location}: `{key}`: {e}"));
        }
    }
    map
}

/// `SERVICE=URL,URL` or `URL,URL`; a `=` inside a URL (a query) is no service.
fn split_flag(flag: &str) -> (Option<&str>, &str) {
    match flag.split_once('=') {
        Some((service, spec)) if !service.contains("://") => (Some(service), spec),
        _ => (None, flag),
    }
}

fn check_pool(pool: &PoolSettings, location: &str, errors: &mut Vec<String>) {
    let mut fail = |problem: &str| errors.push(format!("{location}: `upstream.{problem}"));
    if pool.max_requests == 0 {
        fail("max_requests` must be at least 1");
    }
    if pool.max_pending == 0 {
        fail("max_pending` must be at least 1");
    }
    if pool.dns_refresh.is_zero() {
        fail("dns_refresh` must be more than zero");
    }
    if pool.retry.attempts == 0 {
        fail("retry.attempts` must be at least 1 (1 turns retries off)");
    }
    if pool.retry.budget_ratio > 1.0 {
        fail("retry.budget_percent` must be at most 100");
    }
    if !pool.health.interval.is_zero() && pool.health.timeout.is_zero() {
        fail("health.timeout` must be more than zero");
    }
    if pool.health.unhealthy_threshold == 0 || pool.health.healthy_threshold == 0 {
        fail("health.unhealthy_threshold` and `healthy_threshold` must be at least 1");
    }
    if pool.ejection.max_percent > 100 {
        fail("ejection.max_percent` must be at most 100");
    }
    if pool.ejection.consecutive_failures > 0 && pool.ejection.base_time.is_zero() {
        fail("ejection.base_time` must be more than zero");
    }
    if pool.tls.cert_file.is_some() != pool.tls.key_file.is_some() {
        fail("tls.cert_file` and `tls.key_file` go together");
    }
    for file in [&pool.tls.ca_file, &pool.tls.cert_file, &pool.tls.key_file].into_iter().flatten() {
        if !file.is_file() {
            errors.push(format!("{location}: `upstream.tls`: {} is not a readable file", file.display()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_or_name_the_bad_entry() {
        let dns = |host: &str, port| Address::Dns { host: host.into(), port };
        let url = |u: &str| Address::Url(u.into());
        let cases: [(&str, Result<Vec<Address>, &str>); 9] = [
            ("http://a:1", Ok(vec![url("http://a:1")])),
            ("http://a:1, https://b:2", Ok(vec![url("http://a:1"), url("https://b:2")])),
            ("dns:///svc.ns:50051", Ok(vec![dns("svc.ns", 50051)])),
            ("dns:///[::1]:9", Ok(vec![dns("::1", 9)])),
            ("http://a:1,,http://b:2", Err("upstream \"http://a:1,,http://b:2\" has an empty entry")),
            ("http://a:1,http://a:1", Err("upstream \"http://a:1,http://a:1\" lists \"http://a:1\" twice")),
            ("dns:///svc", Err("upstream \"dns:///svc\" must be dns:///HOST:PORT")),
            ("ftp://a:1", Err("upstream URL \"ftp://a:1\" must start with http://, https:// or dns:///")),
            ("http://a:1/v1", Err("upstream URL \"http://a:1/v1\" has a path")),
        ];
        for (spec, expected) in cases {
            match (parse_spec(spec), expected) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{spec}"),
                (Err(got), Err(want)) => assert!(got.starts_with(want), "{spec}: {got}"),
                (got, want) => panic!("{spec}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn flags_split_service_from_urls() {
        assert_eq!(split_flag("a.B=http://x:1,http://y:2"), (Some("a.B"), "http://x:1,http://y:2"));
        assert_eq!(split_flag("http://x:1"), (None, "http://x:1"));
        assert_eq!(split_flag("dns:///x:1"), (None, "dns:///x:1"));
    }
}
