//! The admin API on its own listener: register, list, inspect, roll back and
//! delete descriptor sets, list routes, health, readiness, metrics and config
//! reload. Never mounted on the public listener.

mod sets;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};
use serde::Serialize;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::config::AdminConfig;
use crate::gateway::reload::{ReloadError, Reloader};
use crate::registry::{ChangeError, Registry};
use crate::telemetry::metrics::Metrics;

/// What the admin handlers share.
#[derive(Debug, Clone)]
struct Admin {
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    reloader: Arc<Reloader>,
    token: Option<Arc<str>>,
    /// The listener's own address, a name `Host` may carry.
    listen: std::net::SocketAddr,
    max_upload: usize,
    connect_timeout: std::time::Duration,
}

/// An admin error: Status JSON, with every problem listed in `errors`.
#[derive(Debug)]
struct AdminError {
    status: StatusCode,
    code: i32,
    message: String,
    errors: Vec<String>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: i32,
    message: &'a str,
    details: [(); 0],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    errors: &'a [String],
}

impl AdminError {
    fn new(status: StatusCode, code: tonic::Code, message: impl Into<String>) -> Self {
        Self { status, code: code as i32, message: message.into(), errors: Vec::new() }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, tonic::Code::InvalidArgument, message)
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let body = ErrorBody { code: self.code, message: &self.message, details: [], errors: &self.errors };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"protogate-admin\""));
        }
        response
    }
}

impl From<ChangeError> for AdminError {
    fn from(error: ChangeError) -> Self {
        use tonic::Code;
        let (status, code, message, errors) = match error {
            ChangeError::Invalid(errors) => (
                StatusCode::BAD_REQUEST,
                Code::InvalidArgument,
                format!("descriptor set rejected: {} problem(s)", errors.len()),
                errors,
            ),
            ChangeError::Conflict(errors) => (
                StatusCode::CONFLICT,
                Code::AlreadyExists,
                "descriptor set rejected: its routes conflict with registered ones".to_string(),
                errors,
            ),
            ChangeError::TooLarge(message) => {
                (StatusCode::PAYLOAD_TOO_LARGE, Code::ResourceExhausted, message, Vec::new())
            }
            ChangeError::NotFound(what) => {
                (StatusCode::NOT_FOUND, Code::NotFound, format!("{what} not found"), Vec::new())
            }
            ChangeError::FromFile(name) => (
                StatusCode::CONFLICT,
                Code::FailedPrecondition,
                format!("{name} comes from a --descriptor file; change the file instead"),
                Vec::new(),
            ),
            ChangeError::Storage(detail) => {
                tracing::error!(%detail, "registry storage failed");
                (StatusCode::INTERNAL_SERVER_ERROR, Code::Internal, "registry storage failed".to_string(), Vec::new())
            }
        };
        Self { status, code: code as i32, message, errors }
    }
}

/// The admin router; every route behind the bearer token when one is set.
pub fn router(reloader: Arc<Reloader>, config: &AdminConfig, connect_timeout: std::time::Duration) -> Router {
    let context = reloader.live().current();
    let admin = Admin {
        registry: context.registry.clone(),
        metrics: context.metrics.clone(),
        reloader,
        token: config.token.as_deref().map(Arc::from),
        listen: config.listen,
        max_upload: config.max_upload_size,
        connect_timeout,
    };
    Router::new()
        .route("/v1/descriptor-sets", get(sets::list))
        .route("/v1/descriptor-sets/{name}", get(sets::get).put(sets::put).delete(sets::delete).post(sets::custom_verb))
        .route("/v1/descriptor-sets/{name}/versions", get(sets::versions))
        .route("/v1/routes", get(sets::routes))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/config:reload", axum::routing::post(reload_config))
        .route("/metrics", get(prometheus_metrics))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(admin.clone(), authenticate))
        // Before the token check: a browser page must not drive the admin
        // API, with or without a token in play.
        .layer(axum::middleware::from_fn_with_state(admin.clone(), refuse_browsers))
        .layer(DefaultBodyLimit::max(config.max_upload_size))
        .layer(TraceLayer::new_for_http().on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)))
        .with_state(admin)
}

/// The admin API is for operators' tools, never for web pages. A page the
/// operator has open can send "simple" cross-site requests (no preflight)
/// to a loopback admin API without a token, or rebind its own DNS name to
/// 127.0.0.1 and read the answers. So: a request a browser marks as coming
/// from another site (`Origin` not the admin listener itself,
/// `Sec-Fetch-Site: cross-site` or `same-site`) is refused, and without a
/// token the `Host` must name the listener (a loopback name or address, or
/// the address it listens on), which a rebinding page cannot make its own.
async fn refuse_browsers(State(admin): State<Admin>, request: Request, next: Next) -> Response {
    if from_the_listeners_own_tools(&admin, &request) {
        return next.run(request).await;
    }
    AdminError::new(
        StatusCode::FORBIDDEN,
        tonic::Code::PermissionDenied,
        "the admin API does not serve web pages or foreign host names; call it from a tool, at the listener's address",
    )
    .into_response()
}

fn from_the_listeners_own_tools(admin: &Admin, request: &Request) -> bool {
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
    let host = header("host").unwrap_or("");
    let own_host = admin.token.is_some() || is_listener_name(host, admin.listen);
    let origin_foreign = header("origin").is_some_and(|origin| {
        origin.split_once("://").is_none_or(|(_, rest)| rest != host || !is_listener_name(rest, admin.listen))
    });
    let fetched_cross_site = matches!(header("sec-fetch-site"), Some("cross-site" | "same-site"));
    let allowed = own_host && !origin_foreign && !fetched_cross_site;
    if !allowed {
        tracing::warn!(host, origin = header("origin"), "refused an admin request from a browser or a foreign host");
    }
    allowed
}

/// Whether a `Host` value (name and optional port) names the listener.
fn is_listener_name(host: &str, listen: std::net::SocketAddr) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match name.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback() || (!listen.ip().is_unspecified() && ip == listen.ip()),
        Err(_) => false,
    }
}

/// Checks `Authorization: Bearer <token>` in constant time.
async fn authenticate(State(admin): State<Admin>, request: Request, next: Next) -> Response {
    let Some(token) = admin.token.as_deref() else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(presented.as_bytes(), token.as_bytes()) {
        next.run(request).await
    } else {
        AdminError::new(
            StatusCode::UNAUTHORIZED,
            tonic::Code::Unauthenticated,
            "a valid admin bearer token is required",
        )
        .into_response()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn healthz() -> Response {
    json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
}

/// Ready when a snapshot is active, every upstream answers its health
/// check (cached) and the shared stores answer (see `readiness`).
async fn readyz(State(admin): State<Admin>) -> Response {
    let (status, body) = crate::readiness::report(&admin.reloader.live().current()).await;
    json(status, &body)
}

/// Re-reads the config file; 400 lists every problem and keeps the
/// running config.
async fn reload_config(State(admin): State<Admin>) -> Response {
    match admin.reloader.reload().await {
        Ok(reloaded) => json(
            StatusCode::OK,
            &serde_json::json!({"status": "reloaded", "restartRequired": reloaded.restart_required}),
        ),
        Err(ReloadError::NoFile) => {
            AdminError::new(StatusCode::CONFLICT, tonic::Code::FailedPrecondition, ReloadError::NoFile.to_string())
                .into_response()
        }
        Err(ReloadError::Invalid(errors)) => {
            AdminError { errors, ..AdminError::bad_request("config rejected; the running config is kept") }
                .into_response()
        }
    }
}

/// Prometheus text exposition.
async fn prometheus_metrics(State(admin): State<Admin>) -> Response {
    let snapshot = admin.registry.snapshot();
    admin.metrics.snapshot_generation.set(i64::try_from(snapshot.generation).unwrap_or(i64::MAX));
    admin.metrics.skipped_routes.set(i64::try_from(snapshot.skipped.len()).unwrap_or(i64::MAX));
    // The transcoder counts without metrics of its own; catch up here.
    let ignored = crate::transcode::request::ignored_field_bodies();
    admin.metrics.ignored_unknown.inc_by(ignored.saturating_sub(admin.metrics.ignored_unknown.get()));
    match admin.metrics.render() {
        Ok(text) => {
            let mut response = (StatusCode::OK, text).into_response();
            let content_type = HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
            response.headers_mut().insert(CONTENT_TYPE, content_type);
            response
        }
        Err(e) => {
            AdminError::new(StatusCode::INTERNAL_SERVER_ERROR, tonic::Code::Internal, e.to_string()).into_response()
        }
    }
}

async fn not_found(request: Request<Body>) -> AdminError {
    AdminError::new(
        StatusCode::NOT_FOUND,
        tonic::Code::NotFound,
        format!("no admin endpoint {} {}", request.method(), request.uri().path()),
    )
}

fn json(status: StatusCode, body: &impl Serialize) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_listeners_own_names_pass_without_a_token() {
        let loopback: std::net::SocketAddr = "127.0.0.1:9090".parse().unwrap();
        let lan: std::net::SocketAddr = "10.1.2.3:9090".parse().unwrap();
        let cases = [
            ("127.0.0.1:9090", loopback, true),
            ("localhost:9090", loopback, true),
            ("LOCALHOST", loopback, true),
            ("[::1]:9090", loopback, true),
            ("127.0.0.2", loopback, true),
            ("10.1.2.3:9090", lan, true),
            ("10.1.2.4:9090", lan, false),
            ("rebind.attacker.example:9090", loopback, false),
            ("localhost.attacker.example", loopback, false),
            ("", loopback, false),
        ];
        for (host, listen, expected) in cases {
            assert_eq!(super::is_listener_name(host, listen), expected, "{host} on {listen}");
        }
    }
}
