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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::config::{ClientTls, PoolSettings};
pub use backend::Backend;
pub use pool::Pool;
pub use stats::Stats;

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

/// Builds each endpoint's channel: connection tuning and TLS.
#[derive(Debug)]
pub struct Connector {
    pub settings: Arc<PoolSettings>,
    /// Roots and client identity read once at start.
    tls: Option<LoadedTls>,
}

#[derive(Debug, Clone)]
struct LoadedTls {
    ca: Option<Certificate>,
    identity: Option<Identity>,
}

impl Connector {
    pub fn new(settings: PoolSettings) -> Result<Self, String> {
        let tls = load_tls(&settings.tls)?;
        Ok(Self { settings: Arc::new(settings), tls })
    }

    /// The channel of one endpoint. `authority` is the `scheme://host:port`
    /// a resolved address stands for: sent as `:authority` and checked
    /// against the certificate.
    pub fn channel(&self, url: &str, authority: Option<&str>) -> Result<Channel, String> {
        let mut endpoint = endpoint(url, self.settings.connect_timeout)?;
        if let Some(authority) = authority {
            let origin: http::Uri = authority.parse().map_err(|e| format!("invalid authority {authority:?}: {e}"))?;
            endpoint = endpoint.origin(origin);
        }
        if url.starts_with("https://") {
            let host = authority.and_then(|a| a.parse::<http::Uri>().ok()).and_then(|u| u.host().map(str::to_string));
            endpoint = endpoint
                .tls_config(self.tls_config(host))
                .map_err(|e| format!("upstream {url:?}: TLS: {}", crate::error::describe(&e)))?;
        }
        Ok(endpoint.connect_lazy())
    }

    /// How calls reach one endpoint: plain text directly (see `direct`),
    /// TLS through tonic's channel.
    pub fn transport(&self, url: &str, authority: Option<&str>) -> Result<pool::Transport, String> {
        crate::config::check_url(url)?;
        let (timeout, pending) = (self.settings.connect_timeout, self.settings.max_pending);
        match direct::Connection::for_url(url, authority, timeout, pending) {
            Some(connection) => Ok(pool::Transport::Direct(connection)),
            None => self.channel(url, authority).map(pool::Transport::Channel),
        }
    }

    fn tls_config(&self, host: Option<String>) -> ClientTlsConfig {
        let mut config = ClientTlsConfig::new();
        let loaded = self.tls.clone().unwrap_or(LoadedTls { ca: None, identity: None });
        config = match loaded.ca {
            Some(ca) => config.ca_certificate(ca),
            None => config.with_native_roots().with_webpki_roots(),
        };
        if let Some(identity) = loaded.identity {
            config = config.identity(identity);
        }
        if let Some(name) = self.settings.tls.server_name.clone().or(host) {
            config = config.domain_name(name);
        }
        config
    }
}

fn load_tls(tls: &ClientTls) -> Result<Option<LoadedTls>, String> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| format!("`upstream.tls`: cannot read {}: {e}", path.display()))
    };
    let ca = tls.ca_file.as_deref().map(read).transpose()?.map(Certificate::from_pem);
    let identity = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => Some(Identity::from_pem(read(cert)?, read(key)?)),
        _ => None,
    };
    Ok((ca.is_some() || identity.is_some()).then_some(LoadedTls { ca, identity }))
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
