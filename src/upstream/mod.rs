//! Backends: one shared, lazily connected HTTP/2 channel per upstream URL,
//! the dynamic codec, calls, metadata and deadlines.

pub mod backend;
pub mod call;
pub mod codec;
pub mod health;
pub mod metadata;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tonic::transport::Endpoint;

pub use backend::Backend;

/// The channels of every upstream URL seen so far. A channel multiplexes all
/// requests to its backend over HTTP/2 and reconnects by itself; snapshots
/// share them, so a reload never opens new connections for known URLs.
#[derive(Debug)]
pub struct Upstreams {
    connect_timeout: Duration,
    /// Largest message sent to or accepted from a backend.
    pub max_message_size: usize,
    channels: Mutex<HashMap<String, Backend>>,
}

impl Upstreams {
    pub fn new(connect_timeout: Duration, max_message_size: usize) -> Self {
        Self { connect_timeout, max_message_size, channels: Mutex::new(HashMap::new()) }
    }

    /// The channel for `url`, created on first use (without connecting yet).
    pub fn channel(&self, url: &str) -> Result<Backend, String> {
        let mut channels = self.channels.lock().map_err(|_| "upstream table poisoned".to_string())?;
        if let Some(channel) = channels.get(url) {
            return Ok(channel.clone());
        }
        let channel = Backend::new(endpoint(url, self.connect_timeout)?.connect_lazy());
        channels.insert(url.to_string(), channel.clone());
        Ok(channel)
    }
}

/// Checks an upstream URL and builds its endpoint.
pub fn endpoint(url: &str, connect_timeout: Duration) -> Result<Endpoint, String> {
    let parsed: http::Uri = url.parse().map_err(|e| format!("invalid upstream URL {url:?}: {e}"))?;
    match parsed.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!("upstream {url:?}: TLS upstreams are not supported yet; use http://"));
        }
        _ => return Err(format!("upstream URL {url:?} must start with http://")),
    }
    if parsed.host().is_none() {
        return Err(format!("upstream URL {url:?} has no host"));
    }
    Endpoint::from_shared(url.to_string())
        .map(|e| {
            // One shared HTTP/2 connection carries every call to a backend.
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
