//! What `/readyz` reports, on the admin listener and optionally the public
//! one: a snapshot is active, each upstream has an endpoint that passes its
//! health check (checked at most every 2 s), and the shared stores (registry, rate limits) are reachable.

use http::StatusCode;
use serde_json::{Map, Value, json};

use crate::gateway::Context;
use crate::middleware::rate_limit::StoreState;
use crate::upstream::Pool;

/// The readiness verdict and its JSON body.
pub async fn report(context: &Context) -> (StatusCode, Value) {
    let snapshot = context.registry.snapshot();
    let pools = snapshot.pools(None);
    futures_util::future::join_all(pools.iter().map(|pool| pool.ensure_checked())).await;
    let upstreams_ready = pools.iter().all(|pool| pool.is_ready());
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
        "upstreams": pools.iter().map(|pool| (pool.spec.clone(), json!(summary(pool)))).collect::<Map<_, _>>(),
        "endpoints": pools.iter().map(|pool| (pool.spec.clone(), endpoints(pool))).collect::<Map<_, _>>(),
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

/// One line per upstream: its endpoint's state, or how many are up.
fn summary(pool: &Pool) -> String {
    let endpoints = pool.endpoints();
    match endpoints.as_slice() {
        [] => "no endpoints".into(),
        [only] => pool.describe(only),
        all => {
            format!("{} of {} endpoints up", all.iter().filter(|e| pool.available(e)).count(), all.len())
        }
    }
}

fn endpoints(pool: &Pool) -> Value {
    pool.endpoints().iter().map(|e| (e.url.clone(), json!(pool.describe(e)))).collect::<Map<_, _>>().into()
}
