//! The public listener: loads the configuration into a context, builds the
//! tower stack in one place, serves HTTP/1.1 and HTTP/2 (h2c, or TLS with ALPN) on one port,
//! reloads its policies without a restart, and shuts down gracefully.

mod compression;
mod front;
mod listener;
mod tls;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use tokio::net::TcpListener;
use tokio::sync::watch as signal;
use tokio::task::JoinHandle;
use tower::ServiceBuilder;
use tower_http::compression::CompressionBody;
use tower_http::decompression::DecompressionBody;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::admin;
use crate::config::{Config, ConfigErrors};
use crate::gateway::LiveContext;
use crate::gateway::build::build_context;
pub use crate::gateway::reload::{ReloadError, Reloaded, Reloader};
use crate::middleware::cors;
use crate::registry::{Store, reflect, shared, watch};
use crate::telemetry::access as telemetry;
use crate::telemetry::otel;

/// Why the gateway could not start; lists every problem.
#[derive(Debug)]
pub enum StartError {
    Config(ConfigErrors),
    Load(Vec<String>),
    Io(std::io::Error),
}

/// A running gateway: the public listener and, when configured, the admin one.
#[derive(Debug)]
pub struct Server {
    pub local_addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    pub live: Arc<LiveContext>,
    pub reloader: Arc<Reloader>,
    shutdown: signal::Sender<bool>,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(errors) => write!(f, "invalid configuration:\n{errors}"),
            Self::Load(errors) => write!(f, "cannot load descriptors:\n{}", errors.join("\n")),
            Self::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StartError {}

impl Server {
    /// Stops accepting, lets requests in flight finish, and waits.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        // First, so health watchers hear NOT_SERVING and their calls end
        // instead of holding the drain to its grace period.
        self.live.current().registry.drain();
        let _ = self.shutdown.send(true);
        for task in self.tasks.drain(..) {
            task.await.map_err(std::io::Error::other)??;
        }
        Ok(())
    }

    /// Waits until a listener stops on its own (only on an error).
    pub async fn wait(&mut self) -> std::io::Result<()> {
        let (result, _, _) = futures_util::future::select_all(self.tasks.iter_mut()).await;
        result.map_err(std::io::Error::other)?
    }
}

/// Loads the configured descriptor files, binds the listeners and serves.
pub async fn start(config: &Config) -> Result<Server, StartError> {
    let files = watch::files(&config.descriptors, &config.descriptor_dirs).map_err(StartError::Load)?;
    let sets = watch::read_named(&files).map_err(StartError::Load)?;
    let server = start_with_sets(config, sets).await?;
    let interval = config.registry.watch_interval;
    if !interval.is_zero() && (!files.is_empty() || !config.descriptor_dirs.is_empty()) {
        let (listed, dirs) = (config.descriptors.clone(), config.descriptor_dirs.clone());
        watch::spawn(server.live.current().registry.clone(), listed, dirs, interval, server.shutdown.subscribe());
    }
    Ok(server)
}

/// Like `start`, with the descriptor sets (name, bytes) given rather than
/// read from files.
pub async fn start_with_sets(config: &Config, sets: Vec<(String, Vec<u8>)>) -> Result<Server, StartError> {
    let context = build_context(config, sets).await.map_err(StartError::Load)?;
    let live = LiveContext::new(context);
    let composites = Arc::downgrade(&live);
    live.current().registry.set_guard(crate::registry::Guard(Box::new(move |next| {
        let Some(live) = composites.upgrade() else { return Ok(()) };
        let context = live.current();
        context.composites.check_change(&context.registry.snapshot(), next)
    })));
    let context = live.current();
    let reloader = Arc::new(Reloader::new(live.clone(), config.clone()));
    let listener = TcpListener::bind(config.listen).await.map_err(StartError::Io)?;
    let local_addr = listener.local_addr().map_err(StartError::Io)?;
    let (shutdown, signal) = signal::channel(false);
    let app = router(live.clone(), config);
    let tls = match &config.tls {
        Some(settings) => Some(tls::Acceptor::start(settings, signal.clone()).map_err(|e| StartError::Load(vec![e]))?),
        None => None,
    };
    let mut tasks = vec![spawn_listener(listener, app, config, tls, signal.clone())];
    let mut admin_addr = None;
    if let Some(admin) = &config.admin {
        let listener = TcpListener::bind(admin.listen).await.map_err(StartError::Io)?;
        let addr = listener.local_addr().map_err(StartError::Io)?;
        let app = admin::router(reloader.clone(), admin, config.upstream.connect_timeout);
        tasks.push(spawn_listener(listener, app, config, None, signal));
        tracing::info!(admin_addr = %addr, "admin listening");
        admin_addr = Some(addr);
    }
    if let Some(Store::Redis(redis)) = context.registry.store() {
        let resync = config.registry.resync_interval;
        shared::spawn_follower(context.registry.clone(), redis.clone(), resync, shutdown.subscribe());
    }
    if !config.registry.reflect.is_empty() {
        let registry = &config.registry;
        let urls = registry.reflect.clone();
        let timeout = config.upstream.connect_timeout;
        reflect::spawn_refresh(
            context.registry.clone(),
            urls,
            registry.reflect_interval,
            timeout,
            shutdown.subscribe(),
        );
    }
    tracing::info!(%local_addr, "gateway listening");
    Ok(Server { local_addr, admin_addr, live, reloader, shutdown, tasks })
}

fn spawn_listener(
    listener: TcpListener,
    app: Router,
    config: &Config,
    tls: Option<tls::Acceptor>,
    signal: signal::Receiver<bool>,
) -> JoinHandle<std::io::Result<()>> {
    listener::spawn(listener, app, config.limits.clone(), tls, signal)
}

/// What request decompression makes of an answer's body.
type Decompressed = tower_http::body::UnsyncBoxBody<bytes::Bytes, tower_http::BoxError>;

/// The public router and its tower stack, outermost layer first. Body size
/// is limited inside the protocols that read whole bodies (REST, Connect
/// unary): a total-body limit here would cut long gRPC streams. Policy
/// layers read the request's pinned context, so a reload applies to new
/// requests while requests in flight finish under the policies they began with.
pub fn router(live: Arc<LiveContext>, config: &Config) -> Router {
    let metrics = live.current().metrics.clone();
    let stack = ServiceBuilder::new()
        // Outermost: every later log line and the response carry the id.
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        // Inside the request id (the span carries it): the server span, a
        // child of the client's W3C trace context.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| otel::request_span(request))
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        // Inside the request id, outside every policy: refusals are logged
        // and counted too.
        .layer(axum::middleware::from_fn_with_state(metrics, telemetry::observe))
        // Inside the access record, so it counts the bytes on the wire;
        // outside the front door, so every protocol reads decoded bodies
        // and the body-size limit counts decompressed bytes.
        .map_response(|response: http::Response<CompressionBody<Decompressed>>| response.map(Body::new))
        .layer(compression::responses(&config.compression))
        .layer(compression::requests(&config.compression))
        .map_request(|request: http::Request<DecompressionBody<Body>>| request.map(Body::new))
        // Before the front door, so preflights are answered before any
        // policy (they carry no credentials); the front door admits every
        // other request once and runs the policies on that admission.
        .option_layer(cors::layer(&config.cors));
    Router::new().fallback(front::handle).with_state(live).layer(stack)
}
