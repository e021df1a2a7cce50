//! The public listener: loads the configuration into a context, builds the
//! tower stack in one place, serves HTTP/1.1 and HTTP/2 (h2c) on one port,
//! and shuts down gracefully.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use http::Response;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::config::{Config, ConfigErrors, Limits};
use crate::middleware::limits;
use crate::protocol::{self, Context, Deadlines};
use crate::registry::{Registry, Snapshot, source};
use crate::upstream::Upstreams;

/// Why the gateway could not start; lists every problem.
#[derive(Debug)]
pub enum StartError {
    Config(ConfigErrors),
    Load(Vec<String>),
    Io(std::io::Error),
}

/// A running gateway.
#[derive(Debug)]
pub struct Server {
    pub local_addr: SocketAddr,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
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
    pub async fn shutdown(self) -> std::io::Result<()> {
        let _ = self.shutdown.send(());
        self.task.await.map_err(std::io::Error::other)?
    }

    /// Waits until the server stops on its own (it only does on an error);
    /// returns the shutdown handle's result otherwise never.
    pub async fn wait(&mut self) -> std::io::Result<()> {
        (&mut self.task).await.map_err(std::io::Error::other)?
    }
}

/// Builds the first snapshot from descriptor sets (name, bytes).
pub fn build_context(config: &Config, sets: &[(String, Vec<u8>)]) -> Result<Context, StartError> {
    let pool = source::merge(sets).map_err(StartError::Load)?;
    let upstreams = Upstreams::new(config.upstream.connect_timeout);
    let snapshot =
        Snapshot::build(pool, &config.upstream.map, &upstreams).map_err(StartError::Load)?;
    Ok(Context {
        registry: Arc::new(Registry::new(snapshot)),
        json: config.json.clone(),
        deadlines: Deadlines {
            default: config.upstream.timeout,
            max: config.upstream.max_timeout,
        },
        max_body_size: config.limits.max_body_size,
    })
}

/// Loads the configured descriptor files, binds the listener and serves.
pub async fn start(config: &Config) -> Result<Server, StartError> {
    let sets = source::read_files(&config.descriptors).map_err(StartError::Load)?;
    start_with_sets(config, &sets).await
}

/// Like `start`, with the descriptor sets given rather than read from files.
pub async fn start_with_sets(
    config: &Config,
    sets: &[(String, Vec<u8>)],
) -> Result<Server, StartError> {
    let context = Arc::new(build_context(config, sets)?);
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(StartError::Io)?;
    serve(listener, context, &config.limits)
}

/// Serves on an already bound listener.
pub fn serve(
    listener: TcpListener,
    context: Arc<Context>,
    limits: &Limits,
) -> Result<Server, StartError> {
    let local_addr = listener.local_addr().map_err(StartError::Io)?;
    let app = router(context, limits).into_make_service_with_connect_info::<SocketAddr>();
    let (shutdown, signal) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = signal.await;
            })
            .await
    });
    tracing::info!(%local_addr, "gateway listening");
    Ok(Server {
        local_addr,
        shutdown,
        task,
    })
}

/// The public router and its tower stack, outermost layer first.
pub fn router(context: Arc<Context>, limits: &Limits) -> Router {
    let stack = ServiceBuilder::new()
        // Outermost: every later log line and the response carry the id.
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(TraceLayer::new_for_http())
        .layer(PropagateRequestIdLayer::x_request_id())
        // Above the limits so their bare refusals leave as Status JSON.
        .layer(axum::middleware::map_response_with_state(
            limits.max_body_size,
            limits::body_limit_as_status,
        ))
        // Cheapest check first: a long URI is refused before routing.
        .layer(axum::middleware::from_fn_with_state(
            limits.max_uri_length,
            limits::uri_length,
        ))
        // Innermost policy: bounds the body the protocol handlers read.
        .layer(RequestBodyLimitLayer::new(limits.max_body_size));
    Router::new()
        .fallback(handle)
        .with_state(context)
        .layer(stack)
}

async fn handle(State(context): State<Arc<Context>>, request: Request) -> Response<Body> {
    protocol::dispatch(context, request).await
}
