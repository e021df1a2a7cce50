//! What `/readyz` reports, on the admin listener and optionally the public
//! one: a snapshot is active, each upstream answers its health check
//! (cached), and the shared stores (registry, rate limits) are reachable.

use http::StatusCode;
use serde_json::{Map, Value, json};

use crate::middleware::rate_limit::StoreState;
use crate::protocol::Context;

/// The readiness verdict and its JSON body.
pub async fn report(context: &Context) -> (StatusCode, Value) {
    let snapshot = context.registry.snapshot();
    let mut upstreams: Vec<(&str, crate::upstream::Backend)> = Vec::new();
    for method in &snapshot.methods {
        if !upstreams.iter().any(|(url, _)| *url == method.upstream) {
            upstreams.push((&method.upstream, method.call.channel.clone()));
        }
    }
    let checks =
        upstreams.into_iter().map(|(url, channel)| async move { (url, context.health.check(url, channel).await) });
    let results = futures_util::future::join_all(checks).await;
    let upstreams_ready = results.iter().all(|(_, health)| health.is_ready());
    let store_error = context.registry.store_error();
    let rate_store = context.limiter.as_ref().and_then(|l| l.store_state());
    let rate_store_blocks = rate_store.as_ref().is_some_and(|s| !s.reachable && !s.falls_back);
    let ready = upstreams_ready && !rate_store_blocks;
    let damaged = context.registry.damaged();
    let degraded = store_error.is_some() || !damaged.is_empty() || rate_store.as_ref().is_some_and(|s| !s.reachable);
    let status = match (ready, degraded) {
        (false, _) => "not ready",
        (true, true) => "degraded",
        (true, false) => "ready",
    };
    let mut body = json!({
        "status": status,
        "generation": snapshot.generation,
        "methods": snapshot.methods.len(),
        "upstreams": results.iter().map(|(url, health)| (url.to_string(), json!(health.describe()))).collect::<Map<_, _>>(),
        "registryStore": match &store_error {
            Some(error) => json!({ "reachable": false, "error": error }),
            None => json!({ "reachable": true }),
        },
    });
    if let (false, Value::Object(fields)) = (damaged.is_empty(), &mut body) {
        fields.insert("damagedState".into(), json!(damaged));
    }
    if let (Some(state), Value::Object(fields)) = (rate_store, &mut body) {
        fields.insert("rateLimitStore".into(), rate_store_json(&state));
    }
    (if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, body)
}

fn rate_store_json(state: &StoreState) -> Value {
    let mut value = json!({ "reachable": state.reachable });
    if let (Some(error), Value::Object(fields)) = (&state.error, &mut value) {
        fields.insert("error".into(), json!(error));
        let fallback = if state.falls_back { "local limits" } else { "rejecting limited requests" };
        fields.insert("fallback".into(), json!(fallback));
    }
    value
}
