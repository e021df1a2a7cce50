//! Distributed rate limits: two gateway processes share one quota through a
//! real `redis-server`; when Redis goes away they fall back to local limits
//! (and say so in readiness and metrics) or refuse, as configured.

mod common;

use std::time::Duration;

use common::process::{Gateway, Redis, free_port, library_backend, spawn_gateway};
use common::{Harness, read_json};

fn config_file(redis: &str, upstream: &str) -> std::path::PathBuf {
    let descriptors = concat!(env!("CARGO_MANIFEST_DIR"), "/descriptors/library.binpb");
    let toml = format!(
        "listen = \"127.0.0.1:0\"\ndescriptors = [\"{descriptors}\"]\n[upstream]\ndefault = \"{upstream}\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n[rate_limit]\nkey = \"route\"\nredis = \"{redis}\"\n\
         redis_key_prefix = \"test{}:\"\n[[rate_limit.rules]]\nselector = \"library.v1.LibraryService.GetShelf\"\n\
         per_second = 1\nburst = 3\n",
        free_port()
    );
    let path = std::env::temp_dir().join(format!("protogate-rl-{}.toml", free_port()));
    std::fs::write(&path, toml).unwrap();
    path
}

async fn get_shelf(gateway: &Gateway) -> reqwest::Response {
    reqwest::get(format!("{}/v1/shelves/1", gateway.public)).await.unwrap()
}

fn remaining(response: &reqwest::Response) -> &str {
    response.headers()["ratelimit-remaining"].to_str().unwrap()
}

async fn admin_text(gateway: &Gateway, path: &str) -> String {
    reqwest::get(format!("{}{path}", gateway.admin)).await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn two_replicas_share_one_quota_and_fall_back_when_redis_goes_away() {
    let Some(redis) = Redis::start().await else { return };
    let upstream = library_backend().await;
    let file = config_file(&redis.url(), &upstream);
    let args = ["serve", "--config", file.to_str().unwrap()];
    let (a, b) = (spawn_gateway(&args).await, spawn_gateway(&args).await);
    // Wait until both replicas reach Redis (they connect in the background).
    for gateway in [&a, &b] {
        for _ in 0..100 {
            if admin_text(gateway, "/metrics").await.contains("protogate_rate_limit_store_up 1") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let first = get_shelf(&a).await;
    assert_eq!((first.status().as_u16(), remaining(&first)), (200, "2"));
    let second = get_shelf(&b).await;
    assert_eq!((second.status().as_u16(), remaining(&second)), (200, "1"), "b draws from the same bucket");
    let third = get_shelf(&a).await;
    assert_eq!((third.status().as_u16(), remaining(&third)), (200, "0"));
    let refused = get_shelf(&b).await;
    assert_eq!(refused.status(), 429, "the burst is spent across both replicas");
    assert!(refused.headers().contains_key("retry-after"));

    redis.stop().await;
    // Local buckets decide now: each replica has its own fresh burst.
    let local = get_shelf(&a).await;
    assert_eq!(local.status(), 200);
    let ready: serde_json::Value = serde_json::from_str(&admin_text(&a, "/readyz").await).unwrap();
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["rateLimitStore"]["reachable"], false, "{ready}");
    assert_eq!(ready["rateLimitStore"]["fallback"], "local limits", "{ready}");
    let metrics = admin_text(&a, "/metrics").await;
    assert!(metrics.contains("protogate_rate_limit_store_up 0"), "{metrics}");
    assert!(metrics.contains("protogate_rate_limit_store_fallbacks_total{mode=\"local\"} 1"), "{metrics}");
}

#[tokio::test]
async fn reject_mode_refuses_limited_requests_while_redis_is_down() {
    let toml = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[rate_limit]\nredis = \"redis://127.0.0.1:{}\"\nredis_timeout = \"200ms\"\n\
         on_redis_error = \"reject\"\n[[rate_limit.rules]]\nselector = \"library.v1.LibraryService.GetShelf\"\n\
         per_second = 100\n",
        free_port()
    );
    let h = Harness::start_with(&toml).await;
    let refused = h.client.get(h.url("/v1/shelves/1")).send().await.unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let (_, body) = read_json(refused).await;
    assert_eq!(body["code"], 14);
    assert_eq!(body["message"], "rate limits cannot be checked right now; retry shortly");
    assert_eq!(h.get_json("/v1/shelves").await.0, 200, "routes without a rule do not need Redis");
    let ready = h.client.get(format!("{}/readyz", h.admin.as_ref().unwrap())).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let (_, ready) = read_json(ready).await;
    assert_eq!(ready["rateLimitStore"]["fallback"], "rejecting limited requests", "{ready}");
}
