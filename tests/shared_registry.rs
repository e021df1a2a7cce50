//! Replicas sharing one registry through a real `redis-server` started on a
//! free port: two gateway processes converge, a late starter catches up,
//! concurrent writers lose nothing, and Redis going away keeps both serving.

mod common;

use std::time::Duration;

use common::process::{Gateway, Redis, library_backend, spawn_gateway};
use serde_json::Value;

async fn gateway(redis: &str, upstream: &str) -> Gateway {
    let args = [
        "serve",
        "--registry",
        redis,
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--upstream",
        upstream,
    ];
    spawn_gateway(&args).await
}

fn shelf_set(i: usize) -> Vec<u8> {
    let source = format!(
        "syntax = \"proto3\";\npackage shared{i}.v1;\nimport \"google/api/annotations.proto\";\nmessage R {{ string name = 1; }}\n\
         service S {{ rpc Get(R) returns (R) {{ option (google.api.http) = {{ get: \"/shared/{i}/{{name}}\" }}; }} }}\n"
    );
    protogate::registry::source::compile_protos(&[(format!("shared{i}.proto"), source)], &[]).unwrap()
}

async fn register(gateway: &Gateway, name: &str, set: Vec<u8>) -> u16 {
    let response = reqwest::Client::new()
        .put(format!("{}/v1/descriptor-sets/{name}", gateway.admin))
        .header("content-type", "application/octet-stream")
        .body(set)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    if status >= 400 {
        println!("PUT {name}: {status} {}", response.text().await.unwrap());
    }
    status
}

async fn status(url: String) -> u16 {
    reqwest::get(url).await.map(|r| r.status().as_u16()).unwrap_or(0)
}

/// Polls until `url` answers `expected` (501: the route exists, the library
/// backend lacks the method; 404: no route).
async fn eventually(url: String, expected: u16) {
    for _ in 0..100 {
        if status(url.clone()).await == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} never answered {expected}");
}

async fn ready(gateway: &Gateway) -> Value {
    reqwest::get(format!("{}/readyz", gateway.admin)).await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn two_replicas_converge_and_a_late_one_catches_up() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let upstream = library_backend().await;
    let (a, b) = (gateway(&redis.url(), &upstream).await, gateway(&redis.url(), &upstream).await);

    assert_eq!(register(&a, "one", shelf_set(1)).await, 201);
    eventually(format!("{}/shared/1/x", b.public), 501).await;
    assert_eq!(register(&b, "two", shelf_set(2)).await, 201);
    eventually(format!("{}/shared/2/x", a.public), 501).await;

    let late = gateway(&redis.url(), &upstream).await;
    assert_eq!(status(format!("{}/shared/1/x", late.public)).await, 501);
    assert_eq!(status(format!("{}/shared/2/x", late.public)).await, 501);

    let deleted = reqwest::Client::new().delete(format!("{}/v1/descriptor-sets/one", b.admin)).send().await.unwrap();
    assert_eq!(deleted.status(), 200);
    eventually(format!("{}/shared/1/x", a.public), 404).await;
    eventually(format!("{}/shared/1/x", late.public), 404).await;
}

#[tokio::test]
async fn concurrent_writers_on_two_replicas_lose_nothing() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let upstream = library_backend().await;
    let (a, b) = (gateway(&redis.url(), &upstream).await, gateway(&redis.url(), &upstream).await);
    let writes = (0..16).map(|i| {
        let target = if i % 2 == 0 { &a } else { &b };
        register(target, Box::leak(format!("set{i}").into_boxed_str()), shelf_set(100 + i))
    });
    for status in futures_util::future::join_all(writes).await {
        assert_eq!(status, 201);
    }
    for i in 0..16 {
        eventually(format!("{}/shared/{}/x", a.public, 100 + i), 501).await;
        eventually(format!("{}/shared/{}/x", b.public, 100 + i), 501).await;
    }
}

#[tokio::test]
async fn redis_going_away_keeps_replicas_serving_and_is_reported() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let upstream = library_backend().await;
    let (a, b) = (gateway(&redis.url(), &upstream).await, gateway(&redis.url(), &upstream).await);
    assert_eq!(register(&a, "kept", shelf_set(7)).await, 201);
    eventually(format!("{}/shared/7/x", b.public), 501).await;

    let port = redis.stop().await;
    assert_eq!(register(&a, "lost", shelf_set(8)).await, 500, "nothing is acknowledged without the store");
    for gateway in [&a, &b] {
        assert_eq!(status(format!("{}/shared/7/x", gateway.public)).await, 501, "the last good snapshot serves");
    }
    let mut degraded = false;
    for _ in 0..100 {
        if ready(&b).await["status"] == "degraded" {
            degraded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(degraded, "readiness reports the unreachable store: {}", ready(&b).await);

    let _redis = Redis::start_on(port).await.unwrap();
    // A fresh Redis is empty: registering again restores the shared state.
    let mut status_code = 0;
    for _ in 0..100 {
        status_code = register(&a, "back", shelf_set(9)).await;
        if status_code == 201 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status_code, 201);
    eventually(format!("{}/shared/9/x", b.public), 501).await;
    assert_eq!(ready(&a).await["status"], "ready");
}
