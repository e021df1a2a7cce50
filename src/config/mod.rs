//! Configuration: a TOML file plus command-line flags (flags win), validated
//! whole into a `Config`, with every problem reported at once.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod admin;
mod auth;
mod compose;
mod compression;
mod cors;
mod json;
mod openapi;
mod rate_limit;
mod responses;
mod telemetry;
mod timeouts;
mod tls;
mod upstream;

pub use auth::{AuthConfig, JwtConfig, KeyConfig, RuleConfig};
pub use compose::{CallConfig, CompositeConfig, PARTIAL_KEY, Shape};
pub use rate_limit::{QuotaConfig, RateKey, RateLimitConfig, RateStoreConfig};
pub use responses::{ResponsesConfig, SuccessRule, location as success_location};
pub use telemetry::TracingConfig;
pub use timeouts::{RouteTimeouts, TimeoutsConfig};
pub use tls::{ServerTls, pem_certificates};
pub use upstream::{
    Address, ClientTls, EjectionPolicy, HealthPolicy, PoolSettings, RetryPolicy, UpstreamConfig, UpstreamMap,
    check_url, parse_spec,
};

pub use compression::CompressionConfig;
pub use cors::{OriginPattern, default_methods};
pub use json::{JsonOptions, Unknown};
pub use openapi::OpenApiInfo;
use openapi::RawOpenApi;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// TLS on the public listener; plain text without it.
    pub tls: Option<ServerTls>,
    /// Composite endpoints (`[[compose]]`).
    pub compose: Vec<CompositeConfig>,
    pub descriptors: Vec<PathBuf>,
    /// Directories whose descriptor files are all loaded, and watched.
    pub descriptor_dirs: Vec<PathBuf>,
    pub upstream: UpstreamConfig,
    pub json: JsonOptions,
    pub limits: Limits,
    pub registry: RegistryConfig,
    pub admin: Option<AdminConfig>,
    /// Serve `/openapi.json` and `/docs` on the public listener.
    pub openapi: bool,
    /// `info.version` of the OpenAPI document (the API's version).
    pub openapi_version: String,
    /// The document's `servers`; empty: the gateway itself (`/`).
    pub openapi_servers: Vec<String>,
    /// The document's title, description, contact and licence.
    pub openapi_info: OpenApiInfo,
    pub cors: CorsConfig,
    pub compression: CompressionConfig,
    /// Interval of SSE keep-alive comments; none turns them off.
    pub sse_keepalive: Option<Duration>,
    pub auth: AuthConfig,
    pub rate_limit: RateLimitConfig,
    pub timeouts: TimeoutsConfig,
    /// Declared success statuses per route.
    pub responses: ResponsesConfig,
    /// Serve `/healthz` and `/readyz` on the public listener as well.
    pub public_health: bool,
    /// The gateway's own gRPC services on the public listener.
    pub grpc: GrpcServicesConfig,
    pub tracing: TracingConfig,
    /// Where the config came from, for reloads; none when not from a file.
    pub source: Option<ConfigSource>,
    pub profile: Profile,
}

/// Whose conventions the REST side follows where gateways differ.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Profile {
    #[default]
    Protogate,
    /// grpc-gateway v2's defaults: stream messages as `{"result": …}`,
    /// defaults emitted, unknown fields and query parameters ignored (and
    /// counted), trailer metadata as HTTP trailers for `TE: trailers`.
    GrpcGateway,
}

/// The file and flags a config was loaded from.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    pub file: PathBuf,
    pub flags: Flags,
}

/// Cross-origin access for browsers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsConfig {
    pub allowed_origins: Vec<OriginPattern>,
    /// `allowed_origins = ["*"]`.
    pub any_origin: bool,
    pub allowed_methods: Vec<http::Method>,
    /// Added to the defaults (content-type, x-grpc-web, grpc-timeout, …).
    pub allowed_headers: Vec<http::HeaderName>,
    /// Added to the defaults (grpc-status, grpc-message, …).
    pub exposed_headers: Vec<http::HeaderName>,
    pub allow_credentials: bool,
    pub max_age: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Where registrations are persisted; none keeps them in memory.
    pub state_dir: Option<PathBuf>,
    pub max_versions: usize,
    /// Backends whose schema is read by server reflection.
    pub reflect: Vec<String>,
    pub reflect_interval: Duration,
    /// How often descriptor files are checked for changes.
    pub watch_interval: Duration,
    /// A Redis URL when replicas share the registry.
    pub redis: Option<String>,
    pub key_prefix: String,
    /// How often a replica re-reads the shared registry besides announcements.
    pub resync_interval: Duration,
    /// Most memory the active descriptor sets may take, estimated.
    pub memory_budget: u64,
    /// Serve the valid routes of a set and skip invalid or duplicate ones.
    pub lenient_routes: bool,
}

/// The admin listener, when enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Bearer token every admin call must carry; none only on loopback.
    pub token: Option<String>,
    pub max_upload_size: usize,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_size: usize,
    pub max_uri_length: usize,
    pub max_header_bytes: usize,
    pub max_concurrent_requests: usize,
    /// Requests one client address may have in flight at once.
    pub max_concurrent_per_client: usize,
    pub max_connections: usize,
    pub max_streams_per_connection: u32,
    /// Largest part of a `multipart/form-data` body, and most parts in one.
    pub max_form_part_size: usize,
    pub max_form_parts: usize,
    pub header_read_timeout: Duration,
    /// Longest wait for the next piece of a request body.
    pub body_timeout: Duration,
    /// Longest a write to a client may stay blocked.
    pub send_timeout: Duration,
    /// How long requests in flight may finish after SIGTERM.
    pub drain_timeout: Duration,
}

/// Settings given on the command line; each one set overrides the file.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub listen: Option<String>,
    pub descriptors: Vec<PathBuf>,
    /// `URL` (the default upstream) or `SERVICE=URL`.
    pub upstreams: Vec<String>,
    pub admin_listen: Option<String>,
    pub admin_token: Option<String>,
    pub state_dir: Option<PathBuf>,
    /// Backends to read by reflection, added to the file's list.
    pub reflect: Vec<String>,
    /// `--registry redis://HOST:PORT`.
    pub registry: Option<String>,
    pub descriptor_dirs: Vec<PathBuf>,
    /// `--tls-cert FILE --tls-key FILE`.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

#[derive(Debug, Deserialize)]
#[serde(default)]
struct RawConfig {
    listen: String,
    profile: String,
    descriptors: Vec<PathBuf>,
    descriptor_dirs: Vec<PathBuf>,
    upstream: upstream::RawUpstream,
    tls: tls::RawTls,
    compose: Vec<compose::RawComposite>,
    json: JsonOptions,
    limits: RawLimits,
    registry: RawRegistry,
    admin: admin::RawAdmin,
    openapi: RawOpenApi,
    cors: cors::RawCors,
    compression: compression::RawCompression,
    streaming: RawStreaming,
    auth: auth::RawAuth,
    rate_limit: rate_limit::RawRateLimit,
    timeouts: timeouts::RawTimeouts,
    responses: Vec<responses::RawRule>,
    health: RawHealth,
    grpc: GrpcServicesConfig,
    tracing: telemetry::RawTracing,
}

/// `[grpc]`: gRPC server reflection (v1 and v1alpha) over the active
/// snapshot, and `grpc.health.v1.Health` answering for the gateway and
/// each service's upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct GrpcServicesConfig {
    pub reflection: bool,
    pub health: bool,
}

impl Default for GrpcServicesConfig {
    fn default() -> Self {
        Self { reflection: true, health: true }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawHealth {
    public: bool,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct RawStreaming {
    sse_keepalive: String,
}

impl Default for RawStreaming {
    fn default() -> Self {
        Self { sse_keepalive: "15s".into() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct RawRegistry {
    state_dir: Option<PathBuf>,
    max_versions: usize,
    reflect: Vec<String>,
    reflect_interval: String,
    watch_interval: String,
    redis: Option<String>,
    key_prefix: String,
    resync_interval: String,
    memory_budget_mb: u64,
    lenient_routes: bool,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct RawLimits {
    max_body_size: usize,
    max_uri_length: usize,
    max_header_bytes: usize,
    max_concurrent_requests: usize,
    /// 0: a quarter of `max_concurrent_requests`.
    max_concurrent_per_client: usize,
    max_connections: usize,
    max_streams_per_connection: u32,
    max_form_part_size: usize,
    max_form_parts: usize,
    header_read_timeout: String,
    body_timeout: String,
    send_timeout: String,
    drain_timeout: String,
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            profile: "protogate".into(),
            descriptors: Vec::new(),
            descriptor_dirs: Vec::new(),
            upstream: upstream::RawUpstream::default(),
            tls: tls::RawTls::default(),
            compose: Vec::new(),
            json: JsonOptions::default(),
            limits: RawLimits::default(),
            registry: RawRegistry::default(),
            admin: admin::RawAdmin::default(),
            openapi: RawOpenApi::default(),
            cors: cors::RawCors::default(),
            compression: compression::RawCompression::default(),
            streaming: RawStreaming::default(),
            auth: auth::RawAuth::default(),
            rate_limit: rate_limit::RawRateLimit::default(),
            timeouts: timeouts::RawTimeouts::default(),
            responses: Vec::new(),
            health: RawHealth::default(),
            grpc: GrpcServicesConfig::default(),
            tracing: telemetry::RawTracing::default(),
        }
    }
}

impl Default for RawRegistry {
    fn default() -> Self {
        Self {
            state_dir: None,
            max_versions: 10,
            reflect: Vec::new(),
            reflect_interval: "30s".into(),
            watch_interval: "2s".into(),
            redis: None,
            key_prefix: "protogate:".into(),
            resync_interval: "5s".into(),
            memory_budget_mb: 1024,
            lenient_routes: false,
        }
    }
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            max_body_size: 4 * 1024 * 1024,
            max_uri_length: 8 * 1024,
            max_header_bytes: 16 * 1024,
            max_concurrent_requests: 4096,
            max_concurrent_per_client: 0,
            max_connections: 16_384,
            max_streams_per_connection: 256,
            max_form_part_size: 4 * 1024 * 1024,
            max_form_parts: 64,
            header_read_timeout: "10s".into(),
            body_timeout: "30s".into(),
            send_timeout: "30s".into(),
            drain_timeout: "30s".into(),
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.join("\n"))
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Loads the file (if any), applies the flags and validates the result.
    pub fn load(file: Option<&Path>, flags: &Flags) -> Result<Self, ConfigErrors> {
        let ((raw, unknown), location) = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigErrors(vec![format!("{}: {e}", path.display())]))?;
                (parse_toml(&text, &path.display().to_string())?, path.display().to_string())
            }
            None => ((RawConfig::default(), Vec::new()), "command line".to_string()),
        };
        let mut config = validate(raw, flags, &location, unknown)?;
        config.source = file.map(|file| ConfigSource { file: file.to_path_buf(), flags: flags.clone() });
        Ok(config)
    }

    /// Parses and validates TOML text (used by `load` and by tests).
    pub fn from_toml(text: &str, flags: &Flags) -> Result<Self, ConfigErrors> {
        let (raw, unknown) = parse_toml(text, "config")?;
        validate(raw, flags, "config", unknown)
    }
}

/// Parses TOML, collecting every unknown key rather than stopping at the
/// first; they are reported together with the problems `validate` finds.
fn parse_toml(text: &str, location: &str) -> Result<(RawConfig, Vec<String>), ConfigErrors> {
    let deserializer =
        toml::de::Deserializer::parse(text).map_err(|e| ConfigErrors(vec![format!("{location}: {e}")]))?;
    let mut unknown = Vec::new();
    let raw: RawConfig = serde_ignored::deserialize(deserializer, |path| {
        unknown.push(format!("{location}: unknown key `{path}`"));
    })
    .map_err(|e| ConfigErrors(vec![format!("{location}: {e}")]))?;
    Ok((raw, unknown))
}

/// An OpenAPI server URL: absolute http(s), or relative to the document.
fn validate(raw: RawConfig, flags: &Flags, location: &str, unknown: Vec<String>) -> Result<Config, ConfigErrors> {
    let mut errors = unknown;
    let listen_text = flags.listen.clone().unwrap_or(raw.listen);
    let listen = listen_text
        .parse::<SocketAddr>()
        .map_err(|_| {
            errors.push(format!("{location}: `listen`: {listen_text:?} is not HOST:PORT (e.g. 127.0.0.1:8080)"))
        })
        .ok();

    let upstream = upstream::validate(raw.upstream, flags, location, &mut errors);
    let tls = tls::validate(raw.tls, flags, location, &mut errors);
    let compose = compose::validate(raw.compose, location, &mut errors);
    let mut duration = |key: &str, text: &str| {
        humantime::parse_duration(text)
            .map_err(|e| errors.push(format!("{location}: `{key}`: {text:?} is not a duration ({e})")))
            .unwrap_or_default()
    };
    let reflect_interval = duration("registry.reflect_interval", &raw.registry.reflect_interval);
    let resync_interval = duration("registry.resync_interval", &raw.registry.resync_interval);
    let watch_interval = duration("registry.watch_interval", &raw.registry.watch_interval);
    let header_read_timeout = duration("limits.header_read_timeout", &raw.limits.header_read_timeout);
    let body_timeout = duration("limits.body_timeout", &raw.limits.body_timeout);
    let send_timeout = duration("limits.send_timeout", &raw.limits.send_timeout);
    let drain_timeout = duration("limits.drain_timeout", &raw.limits.drain_timeout);
    let sse_keepalive =
        Some(duration("streaming.sse_keepalive", &raw.streaming.sse_keepalive)).filter(|d| !d.is_zero());
    let redis = flags.registry.clone().or(raw.registry.redis.clone());
    if let Some(url) = &redis
        && !url.starts_with("redis://")
        && !url.starts_with("rediss://")
    {
        errors.push(format!("{location}: `registry.redis`: {url:?} must start with redis:// or rediss://"));
    }
    let state_dir = flags.state_dir.clone().or(raw.registry.state_dir.clone());
    if redis.is_some() && state_dir.is_some() {
        errors.push(format!(
            "{location}: `registry.redis` and `registry.state_dir` exclude each other: Redis already keeps the registry"
        ));
    }
    let mut reflect = raw.registry.reflect.clone();
    reflect.extend(flags.reflect.iter().cloned());
    for url in &reflect {
        if let Err(e) = upstream::check_url(url) {
            errors.push(format!("{location}: `registry.reflect`: {e}"));
        }
    }

    if raw.json.max_depth == 0 {
        errors.push(format!("{location}: `json.max_depth` must be at least 1"));
    }
    if raw.limits.max_body_size == 0 {
        errors.push(format!("{location}: `limits.max_body_size` must be at least 1"));
    }
    if raw.limits.max_concurrent_requests == 0 || raw.limits.max_header_bytes == 0 {
        errors.push(format!(
            "{location}: `limits.max_concurrent_requests` and `limits.max_header_bytes` must be at least 1"
        ));
    }
    for (key, value) in [
        ("limits.header_read_timeout", header_read_timeout),
        ("limits.body_timeout", body_timeout),
        ("limits.send_timeout", send_timeout),
    ] {
        if value.is_zero() {
            errors.push(format!("{location}: `{key}` must be more than zero"));
        }
    }
    if raw.limits.max_form_part_size == 0 || raw.limits.max_form_parts == 0 {
        errors.push(format!("{location}: `limits.max_form_part_size` and `limits.max_form_parts` must be at least 1"));
    }
    if raw.limits.max_connections == 0 || raw.limits.max_streams_per_connection == 0 {
        errors.push(format!(
            "{location}: `limits.max_connections` and `limits.max_streams_per_connection` must be at least 1"
        ));
    }
    let max_concurrent_per_client = match raw.limits.max_concurrent_per_client {
        0 => (raw.limits.max_concurrent_requests / 4).max(1),
        n => n,
    };
    if raw.limits.max_uri_length < 16 {
        errors.push(format!("{location}: `limits.max_uri_length` must be at least 16"));
    }

    if raw.registry.memory_budget_mb == 0 {
        errors.push(format!("{location}: `registry.memory_budget_mb` must be at least 1"));
    }
    if raw.registry.max_versions == 0 {
        errors.push(format!("{location}: `registry.max_versions` must be at least 1"));
    }
    let openapi_info = raw.openapi.info(location, &mut errors);
    let admin = admin::validate(raw.admin, flags, location, &mut errors);
    let cors = cors::validate(raw.cors, location, &mut errors);
    let compression = compression::validate(raw.compression, location, &mut errors);
    let auth = auth::validate(raw.auth, location, &mut errors);
    if auth.client_certificates && tls.as_ref().is_none_or(|tls| tls.client_ca_file.is_none()) {
        errors.push(format!(
            "{location}: `auth.client_certificates`: needs `tls.client_ca_file`, the CA client certificates are verified against"
        ));
    }
    let rate_limit = rate_limit::validate(raw.rate_limit, location, &mut errors);
    let timeouts = timeouts::validate(raw.timeouts, location, &mut errors);
    let responses = responses::validate(raw.responses, location, &mut errors);
    let tracing = telemetry::validate(raw.tracing, location, &mut errors);
    let profile = match raw.profile.as_str() {
        "protogate" => Profile::Protogate,
        "grpc-gateway" => Profile::GrpcGateway,
        other => {
            errors.push(format!("{location}: `profile`: {other:?} is not \"protogate\" or \"grpc-gateway\""));
            Profile::Protogate
        }
    };
    // The API key's query parameter is a credential, not a request field.
    let mut json = raw.json;
    if profile == Profile::GrpcGateway {
        json.emit_defaults = true;
        json.unknown_fields = Unknown::Ignore;
        json.unknown_query_parameters = Unknown::Ignore;
        json.wrap_stream_results = true;
        json.count_ignored_fields = true;
    }
    if let Some(name) = &auth.api_key_query
        && !json.ignored_query_parameters.contains(name)
    {
        json.ignored_query_parameters.push(name.clone());
    }

    let descriptors = if flags.descriptors.is_empty() { raw.descriptors } else { flags.descriptors.clone() };
    let descriptor_dirs =
        if flags.descriptor_dirs.is_empty() { raw.descriptor_dirs } else { flags.descriptor_dirs.clone() };
    match listen {
        Some(listen) if errors.is_empty() => Ok(Config {
            listen,
            tls,
            compose,
            descriptors,
            descriptor_dirs,
            upstream,
            json,
            limits: Limits {
                max_body_size: raw.limits.max_body_size,
                max_uri_length: raw.limits.max_uri_length,
                max_header_bytes: raw.limits.max_header_bytes,
                max_concurrent_requests: raw.limits.max_concurrent_requests,
                max_concurrent_per_client,
                max_connections: raw.limits.max_connections,
                max_streams_per_connection: raw.limits.max_streams_per_connection,
                max_form_part_size: raw.limits.max_form_part_size,
                max_form_parts: raw.limits.max_form_parts,
                header_read_timeout,
                body_timeout,
                send_timeout,
                drain_timeout,
            },
            registry: RegistryConfig {
                state_dir,
                max_versions: raw.registry.max_versions,
                reflect,
                reflect_interval,
                watch_interval,
                redis,
                key_prefix: raw.registry.key_prefix,
                resync_interval,
                memory_budget: raw.registry.memory_budget_mb.saturating_mul(1024 * 1024),
                lenient_routes: raw.registry.lenient_routes,
            },
            admin,
            openapi: raw.openapi.enabled,
            openapi_version: raw.openapi.version,
            openapi_servers: raw.openapi.servers,
            openapi_info,
            cors,
            sse_keepalive,
            auth,
            rate_limit,
            timeouts,
            responses,
            public_health: raw.health.public,
            grpc: raw.grpc,
            compression,
            tracing,
            source: None,
            profile,
        }),
        _ => Err(ConfigErrors(errors)),
    }
}

#[cfg(test)]
mod tests;
