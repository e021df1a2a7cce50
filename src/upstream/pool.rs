//! One upstream's endpoints: found (a static list, or DNS names re-resolved
//! every `dns_refresh`), checked (active `grpc.health.v1` checks, passive
//! ejection of endpoints that keep failing) and chosen per call by the power
//! of two choices over peak-EWMA latency × (calls in flight + 1).
//!
//! Why not `tower::balance::p2c::Balance`: it is not `Clone`, so every call
//! would cross a `Buffer` worker task (the hop issue 11 measured on tonic's
//! `Channel` already); a retry could not ask for "any endpoint but the one that
//! just failed"; and its `Discover` hides which endpoint served a call, which
//! passive ejection needs. Each endpoint still is a tonic `Channel` (one lazily
//! connected, self-reconnecting HTTP/2 connection).

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use smallvec::SmallVec;
use tonic::transport::Channel;

use super::Connector;
use super::stats::Stats;
use crate::config::{Address, PoolSettings};

/// What the active health check last concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Health {
    /// Not checked yet: taken as up.
    Unknown = 0,
    Serving = 1,
    /// It answers but has no health service: up.
    NoHealthService = 2,
    Down = 3,
}

/// How calls reach an endpoint.
#[derive(Debug)]
pub enum Transport {
    /// hyper's HTTP/2 connection (plain text or TLS), driven by the caller.
    Direct(super::direct::Connection),
    /// A channel made elsewhere (a one-off reflection fetch): tonic's.
    Channel(Channel),
}

impl Transport {
    /// Sends one call; a request that never left comes back with the error
    /// (the direct transport only: tonic's channel keeps it).
    pub(super) async fn send(
        &self,
        request: http::Request<tonic::body::Body>,
    ) -> Result<http::Response<tonic::body::Body>, super::direct::SendError> {
        use tower::ServiceExt;
        match self {
            Self::Direct(connection) => connection.send(request).await,
            Self::Channel(channel) => channel.clone().oneshot(request).await.map_err(super::direct::SendError::sent),
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One endpoint as a service, for the health client.
#[derive(Debug, Clone)]
pub(super) struct Via(pub Arc<Endpoint>);

impl tower::Service<http::Request<tonic::body::Body>> for Via {
    type Response = http::Response<tonic::body::Body>;
    type Error = BoxError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let endpoint = self.0.clone();
        Box::pin(async move { endpoint.transport.send(request).await.map_err(|failed| failed.error) })
    }
}

/// One backend address and what the balancer knows of it.
#[derive(Debug)]
pub struct Endpoint {
    pub url: String,
    pub(super) transport: Transport,
    pending: AtomicUsize,
    /// Peak-EWMA of the time to response headers, in microseconds.
    rtt_micros: AtomicU64,
    failures: AtomicU32,
    ejections: AtomicU32,
    /// Milliseconds since the pool's epoch until which it is ejected; 0: not.
    ejected_until: AtomicU64,
    health: AtomicU8,
    health_streak: AtomicU32,
    /// Why the last health check failed.
    health_reason: Mutex<String>,
}

/// A new endpoint's latency until it has answered: 1 ms.
const INITIAL_RTT_MICROS: u64 = 1_000;

impl Endpoint {
    fn new(url: String, transport: Transport) -> Self {
        Self {
            url,
            transport,
            pending: AtomicUsize::new(0),
            rtt_micros: AtomicU64::new(INITIAL_RTT_MICROS),
            failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            health: AtomicU8::new(Health::Unknown as u8),
            health_streak: AtomicU32::new(0),
            health_reason: Mutex::new(String::new()),
        }
    }

    pub fn health(&self) -> Health {
        match self.health.load(Ordering::Relaxed) {
            1 => Health::Serving,
            2 => Health::NoHealthService,
            3 => Health::Down,
            _ => Health::Unknown,
        }
    }

    fn cost(&self) -> u64 {
        let pending = self.pending.load(Ordering::Relaxed) as u64;
        self.rtt_micros.load(Ordering::Relaxed).max(1).saturating_mul(pending + 1)
    }

    /// Peak-sensitive: a slower answer counts at once, a faster one decays
    /// the estimate by a fifth of the difference.
    pub(super) fn observe_rtt(&self, elapsed: Duration) {
        let sample = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX).max(1);
        let _ = self.rtt_micros.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
            Some(if sample >= old { sample } else { old - (old - sample) / 5 })
        });
    }

    /// Counts the call in flight until the guard drops.
    pub(super) fn start(self: &Arc<Self>) -> InFlight {
        self.pending.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// An endpoint's call in flight.
#[derive(Debug)]
pub struct InFlight(Arc<Endpoint>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An upstream's calls in flight, for its circuit breaker.
#[derive(Debug)]
pub struct Admitted(Arc<Pool>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One upstream: its endpoints and their shared limits.
#[derive(Debug)]
pub struct Pool {
    pub spec: String,
    addresses: Vec<Address>,
    /// Shared with the connector, and swapped by a config reload.
    settings: Arc<ArcSwap<PoolSettings>>,
    connector: Arc<Connector>,
    endpoints: ArcSwap<Vec<Arc<Endpoint>>>,
    /// Flips to true once the endpoints are known (at once for static lists).
    resolved: tokio::sync::watch::Sender<bool>,
    in_flight: AtomicUsize,
    pub(super) budget: super::retry::Budget,
    pub(super) stats: Arc<Stats>,
    epoch: Instant,
    last_checked: Mutex<Option<Instant>>,
}

impl Pool {
    /// The pool for `spec`; endpoints behind DNS names are resolved by a
    /// task that lives as long as the pool.
    pub fn new(spec: &str, connector: Arc<Connector>, stats: Arc<Stats>) -> Result<Arc<Self>, String> {
        let addresses = crate::config::parse_spec(spec)?;
        let mut endpoints = Vec::new();
        for address in &addresses {
            if let Address::Url(url) = address {
                endpoints.push(Arc::new(Endpoint::new(url.clone(), connector.transport(url, None)?)));
            }
        }
        let dynamic = addresses.iter().any(|a| matches!(a, Address::Dns { .. }));
        let pool = Arc::new(Self::assemble(spec, addresses, endpoints, connector, stats, !dynamic));
        pool.publish_states();
        // Always maintained: a reload may turn health checks on.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(maintain(Arc::downgrade(&pool), dynamic))),
            Err(_) if dynamic => return Err(format!("upstream {spec:?}: DNS names need a running runtime")),
            Err(_) => {}
        }
        Ok(pool)
    }

    /// A pool of one connected channel and no background checks, for a
    /// one-off conversation such as a reflection fetch.
    pub fn of_channel(url: &str, channel: Channel) -> Result<Arc<Self>, String> {
        let mut settings = PoolSettings::default();
        settings.health.interval = Duration::ZERO;
        settings.retry.attempts = 1;
        let stats = Arc::new(Stats::new().map_err(|e| e.to_string())?);
        let connector = Arc::new(Connector::new(settings)?);
        let endpoints = vec![Arc::new(Endpoint::new(url.to_string(), Transport::Channel(channel)))];
        let addresses = vec![Address::Url(url.to_string())];
        Ok(Arc::new(Self::assemble(url, addresses, endpoints, connector, stats, true)))
    }

    fn assemble(
        spec: &str,
        addresses: Vec<Address>,
        endpoints: Vec<Arc<Endpoint>>,
        connector: Arc<Connector>,
        stats: Arc<Stats>,
        resolved: bool,
    ) -> Self {
        Self {
            spec: spec.to_string(),
            budget: super::retry::Budget::new(),
            settings: connector.settings.clone(),
            addresses,
            connector,
            endpoints: ArcSwap::from_pointee(endpoints),
            resolved: tokio::sync::watch::Sender::new(resolved),
            in_flight: AtomicUsize::new(0),
            stats,
            epoch: Instant::now(),
            last_checked: Mutex::new(None),
        }
    }

    pub fn endpoints(&self) -> Arc<Vec<Arc<Endpoint>>> {
        self.endpoints.load_full()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX).max(1)
    }

    pub fn is_ejected(&self, endpoint: &Endpoint) -> bool {
        endpoint.ejected_until.load(Ordering::Relaxed) > self.now_ms()
    }

    /// Healthy and not ejected: a candidate for calls.
    pub fn available(&self, endpoint: &Endpoint) -> bool {
        endpoint.health() != Health::Down && !self.is_ejected(endpoint)
    }

    /// The settings in force (a reload swaps them).
    pub fn settings(&self) -> arc_swap::Guard<Arc<PoolSettings>> {
        self.settings.load()
    }

    /// Takes a place under `max_requests`, or says the upstream is full.
    pub(super) fn admit(self: &Arc<Self>) -> Option<Admitted> {
        let taken = self.in_flight.fetch_add(1, Ordering::Relaxed);
        let admitted = Admitted(self.clone());
        (taken < self.settings().max_requests).then_some(admitted)
    }

    /// The endpoint for the next call: the cheaper of two picked at random
    /// among the available ones not yet tried by this call. When none is
    /// available it falls back to any untried one, then to any one: an
    /// attempt beats a certain failure.
    pub(super) async fn choose(&self, tried: &[String]) -> Option<Arc<Endpoint>> {
        if !*self.resolved.borrow() {
            let mut resolved = self.resolved.subscribe();
            let _ = tokio::time::timeout(self.settings().connect_timeout, resolved.wait_for(|done| *done)).await;
        }
        let endpoints = self.endpoints.load();
        let untried = |e: &&Arc<Endpoint>| !tried.contains(&e.url);
        let mut candidates: SmallVec<[&Arc<Endpoint>; 8]> =
            endpoints.iter().filter(untried).filter(|e| self.available(e)).collect();
        if candidates.is_empty() {
            candidates = endpoints.iter().filter(untried).collect();
        }
        if candidates.is_empty() {
            candidates = endpoints.iter().collect();
        }
        match candidates.len() {
            0 => None,
            1 => Some(candidates[0].clone()),
            n => {
                let first = fastrand::usize(..n);
                let second = (first + 1 + fastrand::usize(..n - 1)) % n;
                let (a, b) = (candidates[first], candidates[second]);
                Some(if a.cost() <= b.cost() { a.clone() } else { b.clone() })
            }
        }
    }

    /// A call that got an answer.
    pub(super) fn succeeded(&self, endpoint: &Endpoint) {
        endpoint.failures.store(0, Ordering::Relaxed);
        if !self.is_ejected(endpoint) {
            endpoint.ejections.store(0, Ordering::Relaxed);
        }
    }

    /// A connection failure or an UNAVAILABLE answer: enough in a row eject
    /// the endpoint, unless that would eject more than `max_percent`.
    pub(super) fn failed(&self, endpoint: &Endpoint) {
        let settings = self.settings();
        let policy = &settings.ejection;
        let failures = endpoint.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if policy.consecutive_failures == 0 || failures < policy.consecutive_failures || self.is_ejected(endpoint) {
            return;
        }
        let endpoints = self.endpoints.load();
        let ejected = endpoints.iter().filter(|e| self.is_ejected(e)).count();
        let allowed = endpoints.len() * policy.max_percent as usize / 100;
        if ejected >= allowed {
            return;
        }
        let times = endpoint.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let time = policy.base_time.saturating_mul(times).min(policy.max_time);
        let until = self.now_ms() + u64::try_from(time.as_millis()).unwrap_or(u64::MAX / 2);
        endpoint.ejected_until.store(until, Ordering::Relaxed);
        endpoint.failures.store(0, Ordering::Relaxed);
        self.stats.ejections.with_label_values(&[&self.spec]).inc();
        tracing::warn!(upstream = %self.spec, endpoint = %endpoint.url, failures, ?time, "endpoint ejected");
        self.publish_states();
    }

    /// Runs a round of health checks unless one ran in the last 2 s, so
    /// readiness always reports fresh states without becoming a load.
    pub async fn ensure_checked(&self) {
        let fresh = self.last_checked.lock().ok().and_then(|at| *at).is_some_and(|at| at.elapsed() < FRESH);
        if !fresh {
            self.check_all().await;
        }
    }

    async fn check_all(&self) {
        let endpoints = self.endpoints();
        let checks = endpoints.iter().map(|endpoint| self.check(endpoint));
        futures_util::future::join_all(checks).await;
        if let Ok(mut at) = self.last_checked.lock() {
            *at = Some(Instant::now());
        }
        self.publish_states();
    }

    async fn check(&self, endpoint: &Arc<Endpoint>) {
        let settings = self.settings();
        let policy = &settings.health;
        let timeout = if policy.timeout.is_zero() { Duration::from_secs(1) } else { policy.timeout };
        let outcome = super::health::check(Via(endpoint.clone()), timeout).await;
        let previous = endpoint.health();
        let (next, needed) = match &outcome {
            Ok(health) => (*health, policy.healthy_threshold),
            Err(_) => (Health::Down, policy.unhealthy_threshold),
        };
        let up = |h: Health| h != Health::Down;
        // The first check decides at once; a later flip needs its streak.
        if previous == Health::Unknown || up(next) == up(previous) {
            endpoint.health.store(next as u8, Ordering::Relaxed);
            endpoint.health_streak.store(0, Ordering::Relaxed);
        } else if endpoint.health_streak.fetch_add(1, Ordering::Relaxed) + 1 >= needed {
            endpoint.health.store(next as u8, Ordering::Relaxed);
            endpoint.health_streak.store(0, Ordering::Relaxed);
            tracing::warn!(upstream = %self.spec, endpoint = %endpoint.url, healthy = up(next), "endpoint health changed");
        }
        if let (Err(reason), Ok(mut slot)) = (outcome, endpoint.health_reason.lock()) {
            *slot = reason;
        }
    }

    /// What `/readyz` shows of one endpoint.
    pub fn describe(&self, endpoint: &Endpoint) -> String {
        if self.is_ejected(endpoint) {
            return "ejected (failing calls)".into();
        }
        match endpoint.health() {
            Health::Unknown => "not checked yet".into(),
            Health::Serving => "serving".into(),
            Health::NoHealthService => "up (no grpc.health.v1 service)".into(),
            Health::Down => endpoint.health_reason.lock().map(|r| r.clone()).unwrap_or_default(),
        }
    }

    /// Ready when some endpoint can take calls.
    pub fn is_ready(&self) -> bool {
        self.endpoints.load().iter().any(|e| self.available(e) && e.health() != Health::Unknown)
    }

    fn publish_states(&self) {
        for endpoint in self.endpoints.load().iter() {
            let state = if self.is_ejected(endpoint) {
                "ejected"
            } else if endpoint.health() == Health::Down {
                "unhealthy"
            } else {
                "up"
            };
            self.stats.set_state(&self.spec, &endpoint.url, state);
        }
    }

    /// Re-resolves the DNS names; keeps the last list when resolution fails.
    async fn resolve(&self) {
        let mut endpoints = Vec::new();
        let current = self.endpoints();
        for address in &self.addresses {
            match address {
                Address::Url(url) => endpoints.extend(current.iter().find(|e| &e.url == url).cloned()),
                Address::Dns { host, port } => match tokio::net::lookup_host((host.as_str(), *port)).await {
                    Ok(found) => {
                        let scheme = if self.settings().tls.dns { "https" } else { "http" };
                        for ip in found {
                            let url = format!("{scheme}://{ip}");
                            if endpoints.iter().any(|e: &Arc<Endpoint>| e.url == url) {
                                continue;
                            }
                            if let Some(known) = current.iter().find(|e| e.url == url) {
                                endpoints.push(known.clone());
                                continue;
                            }
                            let authority = format!("{scheme}://{host}:{port}");
                            match self.connector.transport(&url, Some(&authority)) {
                                Ok(transport) => endpoints.push(Arc::new(Endpoint::new(url, transport))),
                                Err(e) => {
                                    tracing::warn!(upstream = %self.spec, error = %e, "resolved endpoint unusable")
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(upstream = %self.spec, %host, error = %e, "DNS resolution failed; keeping the last endpoints");
                        return;
                    }
                },
            }
        }
        let changed =
            endpoints.len() != current.len() || endpoints.iter().zip(current.iter()).any(|(a, b)| a.url != b.url);
        if changed {
            tracing::info!(upstream = %self.spec, endpoints = endpoints.len(), "endpoints changed");
            for gone in current.iter().filter(|old| !endpoints.iter().any(|e| e.url == old.url)) {
                self.stats.forget(&self.spec, &gone.url);
            }
            self.endpoints.store(Arc::new(endpoints));
            self.publish_states();
        }
        self.resolved.send_replace(true);
    }
}

const FRESH: Duration = Duration::from_secs(2);

/// Keeps a pool's endpoints resolved and checked while the pool lives,
/// reading the intervals each round so a reload changes them.
async fn maintain(pool: Weak<Pool>, dynamic: bool) {
    let (mut next_resolve, mut next_check) = (Instant::now(), Instant::now());
    loop {
        let Some(current) = pool.upgrade() else { return };
        let (refresh, health) = {
            let settings = current.settings();
            (settings.dns_refresh, settings.health.interval)
        };
        let now = Instant::now();
        if dynamic && now >= next_resolve {
            current.resolve().await;
            next_resolve = Instant::now() + refresh;
        }
        if !health.is_zero() && now >= next_check {
            current.check_all().await;
            next_check = Instant::now() + health;
        }
        drop(current);
        // At least once a second, to notice new intervals.
        let mut wake = Instant::now() + RESETTLE;
        if dynamic {
            wake = wake.min(next_resolve);
        }
        if !health.is_zero() {
            next_check = next_check.min(Instant::now() + health);
            wake = wake.min(next_check);
        }
        tokio::time::sleep_until(wake.into()).await;
    }
}

const RESETTLE: Duration = Duration::from_secs(1);
