//! Backends: each upstream a pool of endpoints (one lazily connected HTTP/2
//! channel each) behind a balancer, with health, ejection, safe retries and
//! a circuit breaker; the dynamic codec, calls, metadata and deadlines.

pub mod backend;
pub mod call;
pub mod codec;
pub mod direct;
pub mod health;
pub mod metadata;
pub mod pool;
pub mod retry;
pub mod stats;
pub mod tls;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use std::time::Duration;

use tonic::transport::Endpoint;

use crate::config::PoolSettings;
pub use backend::Backend;
pub use pool::Pool;
pub use stats::Stats;
use tls::UpstreamTls;

/// The pools of every upstream seen so far, by spec. Snapshots share them,
/// so a reload never opens new connections for known upstreams.
#[derive(Debug)]
pub struct Upstreams {
    connector: Arc<Connector>,
    pub stats: Arc<Stats>,
    /// Largest message sent to or accepted from a backend.
    pub max_message_size: usize,
    pools: Mutex<HashMap<String, Backend>>,
}

impl Upstreams {
    pub fn new(settings: PoolSettings, max_message_size: usize) -> Result<Self, String> {
        let stats = Arc::new(Stats::new().map_err(|e| format!("upstream metrics: {e}"))?);
        let connector = Arc::new(Connector::new(settings)?);
        Ok(Self { connector, stats, max_message_size, pools: Mutex::new(HashMap::new()) })
    }

    /// Applies reloaded `upstream.*` pool settings (see `Connector::update`).
    pub fn update(&self, settings: PoolSettings) {
        self.connector.update(settings);
    }

    /// The upstream for `spec`, created on first use (without connecting yet).
    pub fn channel(&self, spec: &str) -> Result<Backend, String> {
        let mut pools = self.pools.lock().map_err(|_| "upstream table poisoned".to_string())?;
        if let Some(backend) = pools.get(spec) {
            return Ok(backend.clone());
        }
        let backend = Backend::new(Pool::new(spec, self.connector.clone(), self.stats.clone())?);
        pools.insert(spec.to_string(), backend.clone());
        Ok(backend)
    }
}

/// Builds each endpoint's transport: connection tuning and TLS.
#[derive(Debug)]
pub struct Connector {
    /// Every pool's settings, swapped whole by a config reload.
    settings: Arc<ArcSwap<PoolSettings>>,
    /// Roots and client identity, read once at start.
    tls: UpstreamTls,
}

impl Connector {
    pub fn new(settings: PoolSettings) -> Result<Self, String> {
        let tls = UpstreamTls::load(&settings.tls)?;
        Ok(Self { settings: Arc::new(ArcSwap::from_pointee(settings)), tls })
    }

    /// Applies reloaded settings to every pool, their calls and their
    /// connections from the next use on. TLS files are read once and the
    /// connect timeout is shared with the admin API's fetches: the running
    /// ones stay (a reload names them as needing a restart).
    pub fn update(&self, mut settings: PoolSettings) {
        let running = self.settings.load();
        settings.tls = running.tls.clone();
        settings.connect_timeout = running.connect_timeout;
        self.settings.store(Arc::new(settings));
    }

    /// How calls reach one endpoint (see `direct`). `authority` is the
    /// `scheme://host:port` a resolved address stands for: sent as
    /// `:authority` and checked against the certificate.
    pub fn transport(&self, url: &str, authority: Option<&str>) -> Result<pool::Transport, String> {
        crate::config::check_url(url)?;
        direct::Connection::for_url(url, authority, self.settings.clone(), &self.tls).map(pool::Transport::Direct)
    }
}

/// Checks one endpoint URL and builds its (plain-text) endpoint.
pub fn endpoint(url: &str, connect_timeout: Duration) -> Result<Endpoint, String> {
    crate::config::check_url(url)?;
    Endpoint::from_shared(url.to_string())
        .map(|e| {
            // One shared HTTP/2 connection carries every call to an endpoint.
            // With h2's 64 KB default window, large answers crawled (~90
            // responses/s at 64 clients, scripts/load.py) and h2 0.4.20's
            // small-DATA-frame budget (half the connection window) tore the
            // connection down (GOAWAY ENHANCE_YOUR_CALM) under 256 clients
            // of small gRPC answers. Windows are flow-control credit, not
            // buffers allocated up front.
            e.connect_timeout(connect_timeout)
                .tcp_nodelay(true)
                .initial_connection_window_size(Some(16 * 1024 * 1024))
                .initial_stream_window_size(Some(2 * 1024 * 1024))
                .http2_keep_alive_interval(Duration::from_secs(30))
                .keep_alive_while_idle(true)
        })
        .map_err(|e| format!("invalid upstream URL {url:?}: {e}"))
}
