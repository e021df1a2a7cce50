//! The gateway's state for requests: the context every request pins (the
//! registry, the policies of one config generation), how a context is
//! built from a config, and how a reload swaps it.

pub mod build;
mod openapi;
pub mod policies;
pub mod reload;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::Request;

use crate::middleware::auth::Authenticator;
use crate::middleware::limits::RequestLimits;
use crate::middleware::rate_limit::Limiter;
use crate::registry::Registry;
use crate::telemetry::metrics::Metrics;
use crate::transcode::JsonOptions;

/// What every protocol handler needs, shared by all requests.
#[derive(Debug)]
pub struct Context {
    pub registry: Arc<Registry>,
    pub json: JsonOptions,
    pub deadlines: Deadlines,
    pub max_body_size: usize,
    pub form_limits: crate::transcode::form::FormLimits,
    /// Serve `/openapi.json` and `/docs`.
    pub openapi: bool,
    /// `info.version` of that document.
    pub openapi_version: Arc<str>,
    /// Its `servers`; empty: the gateway itself.
    pub openapi_servers: Vec<String>,
    pub openapi_info: crate::config::OpenApiInfo,
    /// The document of the latest snapshot asked for, rendered under the
    /// lock so concurrent first requests render it once. Here and not on
    /// the snapshot: a config reload (version, auth, rate limits, success
    /// codes) changes it too.
    pub openapi_document: std::sync::Mutex<Option<(u64, bytes::Bytes)>>,
    /// Interval of SSE keep-alive comments; none turns them off.
    pub sse_keepalive: Option<Duration>,
    /// REST trailer metadata as HTTP trailers for clients that send
    /// `TE: trailers` (the grpc-gateway profile).
    pub http_trailers: bool,
    /// Browser origins allowed cross-origin (CORS, and WebSocket upgrades,
    /// which CORS does not cover).
    pub origins: Origins,
    pub metrics: Arc<Metrics>,
    pub auth: Arc<Authenticator>,
    /// Per-route unary deadlines and stream idle/lifetime limits.
    pub timeouts: crate::config::TimeoutsConfig,
    /// Declared REST success statuses per route.
    pub responses: crate::config::ResponsesConfig,
    pub limits: RequestLimits,
    /// Rate limits, when any are configured.
    pub limiter: Option<Arc<Limiter>>,
    /// Serve `/healthz` and `/readyz` on the public listener too.
    pub public_health: bool,
    /// Composite endpoints (`[[compose]]`), planned per snapshot.
    pub composites: Arc<crate::compose::Composites>,
    /// Connect's message compression (the listener's layers do HTTP's).
    pub compression: crate::config::CompressionConfig,
    /// Which of the gateway's own gRPC services are on, and their servers.
    pub own_services: crate::admission::OwnServices,
    pub own_servers: Arc<crate::services::OwnServers>,
    /// Every route's policies for the latest snapshot seen.
    pub policies: arc_swap::ArcSwapOption<policies::Policies>,
}

/// The context in force. A config reload swaps it whole; each request pins
/// the one it started with, so every layer and its handler agree.
#[derive(Debug)]
pub struct LiveContext(ArcSwap<Context>);

impl LiveContext {
    pub fn new(context: Context) -> Arc<Self> {
        Arc::new(Self(ArcSwap::from_pointee(context)))
    }

    pub fn current(&self) -> Arc<Context> {
        self.0.load_full()
    }

    pub fn replace(&self, context: Context) {
        self.0.store(Arc::new(context));
    }

    /// The context pinned on this request, pinning the current one first.
    pub fn pinned<B>(&self, request: &mut Request<B>) -> Arc<Context> {
        if let Some(context) = request.extensions().get::<Arc<Context>>() {
            return context.clone();
        }
        let context = self.current();
        request.extensions_mut().insert(context.clone());
        context
    }
}

/// Which `Origin`s may call from a browser.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    pub any: bool,
    pub allowed: Vec<crate::config::OriginPattern>,
}

impl Origins {
    /// Same-origin requests, non-browser clients (no `Origin`) and allowed
    /// origins pass.
    pub fn permits(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else { return true };
        let same_origin = host.is_some_and(|host| origin.split_once("://").is_some_and(|(_, rest)| rest == host));
        same_origin || self.any || self.allowed.iter().any(|p| p.matches(origin))
    }
}

/// How long calls may take.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// For unary calls when the client sets none.
    pub default: Duration,
    /// Cap on what a client may ask for.
    pub max: Duration,
}
