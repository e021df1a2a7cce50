//! One endpoint's HTTP/2 connection (plain text, or TLS through rustls),
//! driven by the calling task.
//!
//! Why not tonic's `Channel` for calls: it puts a `tower::Buffer` in front
//! of the connection, so every call is handed to a worker task over a
//! channel and its response future handed back over another — two task
//! wake-ups per call that the profile of a small GET showed as a large part
//! of the upstream leg (README, Performance). hyper's HTTP/2 `SendRequest`
//! is cheap to clone and multiplexes by itself, so callers use it directly;
//! a connection that closed is replaced on the next call, one connect at a
//! time. TLS endpoints take the same path over a tokio-rustls stream, so
//! they get the same pending limit and the same never-left retries.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::ServerName;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;
use tonic::body::Body;

use arc_swap::ArcSwap;

use super::tls::UpstreamTls;
use crate::config::PoolSettings;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The connection could not be opened: the request never left.
#[derive(Debug)]
pub struct ConnectFailed(pub String);

impl std::fmt::Display for ConnectFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConnectFailed {}

/// A call that failed, with its request when it never left (so it can go
/// to another endpoint whatever its body is).
#[derive(Debug)]
pub struct SendError {
    pub error: BoxError,
    pub request: Option<Request<Body>>,
}

impl SendError {
    pub fn sent(error: impl Into<BoxError>) -> Self {
        Self { error: error.into(), request: None }
    }
}

/// Too many calls already wait for this endpoint's connection to open.
#[derive(Debug)]
pub struct Saturated(pub usize);

impl std::fmt::Display for Saturated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} calls wait for the connection to open, the limit (upstream.max_pending)", self.0)
    }
}

impl std::error::Error for Saturated {}

/// Counts a call waiting for the connection until it drops.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An endpoint's shared connection, opened on first use.
#[derive(Debug)]
pub struct Connection {
    /// `host:port` dialled.
    address: String,
    /// Sent as `:authority`: the address, or the DNS name it was resolved from.
    authority: Authority,
    /// `connect_timeout` and `max_pending` in force.
    settings: Arc<ArcSwap<PoolSettings>>,
    /// `https://` endpoints: the connector and the name their certificate must carry.
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    waiting: AtomicUsize,
    current: Mutex<Option<SendRequest<Body>>>,
    connecting: tokio::sync::Mutex<()>,
}

impl Connection {
    /// For `http://host:port` or `https://host:port` (`origin`: the
    /// `scheme://name:port` a resolved address stands for, whose name is
    /// sent as `:authority` and verified).
    pub fn for_url(
        url: &str,
        origin: Option<&str>,
        settings: Arc<ArcSwap<PoolSettings>>,
        tls: &UpstreamTls,
    ) -> Result<Self, String> {
        let invalid = || format!("invalid upstream URL {url:?}: expected http:// or https://host:port");
        let uri: Uri = url.parse().map_err(|_| invalid())?;
        let dialled = uri.authority().filter(|a| a.port_u16().is_some()).ok_or_else(invalid)?;
        let authority = match origin {
            Some(origin) => origin.parse::<Uri>().ok().and_then(|o| o.authority().cloned()).ok_or_else(invalid)?,
            None => dialled.clone(),
        };
        let tls = match uri.scheme() {
            Some(scheme) if *scheme == Scheme::HTTP => None,
            Some(scheme) if *scheme == Scheme::HTTPS => Some((tls.client_config()?, tls.name_for(authority.host())?)),
            _ => return Err(invalid()),
        };
        let (current, connecting) = (Mutex::new(None), tokio::sync::Mutex::new(()));
        let address = dialled.as_str().to_string();
        let waiting = AtomicUsize::new(0);
        Ok(Self { address, authority, settings, tls, waiting, current, connecting })
    }

    /// Sends one call: its URI takes this endpoint's origin.
    pub async fn send(&self, mut request: Request<Body>) -> Result<Response<Body>, SendError> {
        let mut sender = match self.sender().await {
            Ok(sender) => sender,
            Err(error) => return Err(SendError { error, request: Some(request) }),
        };
        let path = request.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
        let scheme = if self.tls.is_some() { Scheme::HTTPS } else { Scheme::HTTP };
        let origin = Uri::builder().scheme(scheme).authority(self.authority.clone()).path_and_query(path);
        *request.uri_mut() = origin.build().map_err(SendError::sent)?;
        match sender.try_send_request(request).await {
            Ok(response) => Ok(response.map(Body::new)),
            Err(mut failed) => {
                let request = failed.take_message();
                Err(SendError { error: Box::new(failed.into_error()), request })
            }
        }
    }

    async fn sender(&self) -> Result<SendRequest<Body>, BoxError> {
        if let Some(open) = self.open() {
            return Ok(open);
        }
        // Calls queue behind one connect; past the limit they fail fast
        // instead of piling up while a backend does not answer.
        let waiting = self.waiting.fetch_add(1, Ordering::Relaxed);
        let _counted = Waiting(&self.waiting);
        if waiting >= self.settings.load().max_pending {
            return Err(Box::new(Saturated(waiting)));
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(open) = self.open() {
            return Ok(open);
        }
        // Boxed: the TLS handshake's state is kilobytes, and inline it made
        // every call's future that much larger, copied on each move.
        let sender = Box::pin(self.connect()).await?;
        if let Ok(mut current) = self.current.lock() {
            *current = Some(sender.clone());
        }
        Ok(sender)
    }

    fn open(&self) -> Option<SendRequest<Body>> {
        let current = self.current.lock().ok()?;
        current.as_ref().filter(|sender| !sender.is_closed()).cloned()
    }

    async fn connect(&self) -> Result<SendRequest<Body>, BoxError> {
        let address = self.address.as_str();
        let failed = |what: String| Box::new(ConnectFailed(format!("cannot connect to {address}: {what}"))) as BoxError;
        let connect_timeout = self.settings.load().connect_timeout;
        let stream = match tokio::time::timeout(connect_timeout, tokio::net::TcpStream::connect(address)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(failed(e.to_string())),
            Err(_) => return Err(failed(format!("no connection within {:?}", connect_timeout))),
        };
        let _ = stream.set_nodelay(true);
        match &self.tls {
            None => handshake(stream).await.map_err(|e| failed(e.to_string())),
            Some((config, name)) => {
                let connector = TlsConnector::from(config.clone());
                let secured = tokio::time::timeout(connect_timeout, connector.connect(name.clone(), stream));
                match secured.await {
                    Ok(Ok(stream)) => handshake(stream).await.map_err(|e| failed(e.to_string())),
                    Ok(Err(e)) => Err(failed(format!("TLS: {e}"))),
                    Err(_) => Err(failed(format!("no TLS handshake within {:?}", connect_timeout))),
                }
            }
        }
    }
}

/// HTTP/2 over an open stream, the connection driven by its own task.
async fn handshake<S>(stream: S) -> Result<SendRequest<Body>, hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    {
        let mut builder = http2::Builder::new(TokioExecutor::new());
        // The same tuning as tonic's endpoints (see `upstream::endpoint`).
        builder
            .timer(TokioTimer::new())
            .initial_connection_window_size(16 * 1024 * 1024)
            .initial_stream_window_size(2 * 1024 * 1024)
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        let (sender, connection) = builder.handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "upstream connection ended");
            }
        });
        Ok(sender)
    }
}
