//! A context from a config: the registry with its store and upstream
//! pools, the metrics, and the policies. A reload rebuilds only the
//! policies around the running registry.

use std::sync::Arc;

use super::{Context, Deadlines, Origins};
use crate::admission::OwnServices;
use crate::config::Config;
use crate::middleware::auth::Authenticator;
use crate::middleware::{limits, rate_limit};
use crate::registry::{RedisStore, Registry, Settings, StateDir, Store};
use crate::services::OwnServers;
use crate::telemetry::metrics::Metrics;
use crate::upstream::Upstreams;

/// Opens the registry (stored sets plus `sets`) and the request context.
pub async fn build_context(config: &Config, sets: Vec<(String, Vec<u8>)>) -> Result<Context, Vec<String>> {
    let store = store(config).await?;
    let channels =
        Upstreams::new(config.upstream.pool.clone(), config.upstream.max_message_size).map_err(|e| vec![e])?;
    let channels = Arc::new(channels);
    let settings = Settings {
        upstreams: config.upstream.map.clone(),
        channels: channels.clone(),
        max_versions: config.registry.max_versions,
        store,
        memory_budget: config.registry.memory_budget,
        lenient_routes: config.registry.lenient_routes,
    };
    let registry = Arc::new(Registry::open(settings, sets).await.map_err(|e| e.messages)?);
    let metrics = Arc::new(Metrics::new().map_err(|e| vec![format!("metrics: {e}")])?);
    for collector in channels.stats.collectors() {
        metrics.register(collector).map_err(|e| vec![format!("metrics: {e}")])?;
    }
    policy_context(config, registry, metrics)
}

/// The context for a config's policies around a running registry; what a
/// reload rebuilds.
pub(super) fn policy_context(
    config: &Config,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
) -> Result<Context, Vec<String>> {
    let auth = Authenticator::new(config.auth.clone(), metrics.clone());
    let limiter = rate_limit::Limiter::new(&config.rate_limit, metrics.clone()).map_err(|e| vec![e]);
    let (auth, limiter) = match (auth, limiter) {
        (Ok(auth), Ok(limiter)) => (auth, limiter),
        (auth, limiter) => return Err([auth.err(), limiter.err()].into_iter().flatten().flatten().collect()),
    };
    let composites = crate::compose::Composites::new(config.compose.clone(), config.json.clone());
    // A gateway that starts without sets (they come by the admin API or
    // reflection) serves its composites once they fit; sets it starts with
    // must fit them.
    let snapshot = registry.snapshot();
    if !snapshot.methods.is_empty() {
        composites.check(&snapshot)?;
    }
    let limits = &config.limits;
    Ok(Context {
        own_servers: Arc::new(OwnServers::new(registry.clone())),
        registry,
        auth: Arc::new(auth),
        limiter: limiter.map(Arc::new),
        limits: limits::RequestLimits {
            max_uri_length: limits.max_uri_length,
            max_header_bytes: limits.max_header_bytes,
            concurrency: Arc::new(tokio::sync::Semaphore::new(limits.max_concurrent_requests)),
            per_client: Arc::new(limits::ClientShares::new(limits.max_concurrent_per_client)),
            body_timeout: limits.body_timeout,
        },
        public_health: config.public_health,
        compression: config.compression,
        own_services: OwnServices { reflection: config.grpc.reflection, health: config.grpc.health },
        composites: Arc::new(composites),
        policies: Default::default(),
        timeouts: config.timeouts.clone(),
        responses: config.responses.clone(),
        json: config.json.clone(),
        deadlines: Deadlines { default: config.upstream.timeout, max: config.upstream.max_timeout },
        max_body_size: config.limits.max_body_size,
        form_limits: crate::transcode::form::FormLimits {
            body: config.limits.max_body_size,
            part: config.limits.max_form_part_size,
            parts: config.limits.max_form_parts,
        },
        openapi: config.openapi,
        openapi_version: Arc::from(config.openapi_version.as_str()),
        openapi_servers: config.openapi_servers.clone(),
        openapi_info: config.openapi_info.clone(),
        openapi_document: Default::default(),
        sse_keepalive: config.sse_keepalive,
        http_trailers: config.profile == crate::config::Profile::GrpcGateway,
        origins: Origins { any: config.cors.any_origin, allowed: config.cors.allowed_origins.clone() },
        metrics,
    })
}

/// The registry's store: Redis when replicas share it, a state directory
/// when one gateway persists it, none otherwise.
async fn store(config: &Config) -> Result<Option<Store>, Vec<String>> {
    let registry = &config.registry;
    if let Some(url) = &registry.redis {
        let redis = RedisStore::connect(url, &registry.key_prefix)
            .await
            .map_err(|e| vec![format!("cannot reach the shared registry: {e}")])?;
        return Ok(Some(Store::Redis(redis)));
    }
    match &registry.state_dir {
        Some(dir) => {
            StateDir::open(dir).map(|dir| Some(Store::Dir(dir))).map_err(|e| vec![format!("{}: {e}", dir.display())])
        }
        None => Ok(None),
    }
}
