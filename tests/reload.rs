//! Config reload: through the admin API and SIGHUP, an invalid file is
//! rejected with every error and the running config kept, settings only a
//! restart applies are named, and requests in flight finish under the
//! policies they started with.

mod common;

use std::time::Duration;

use common::process::{library_backend, spawn_gateway};
use common::{Harness, read_json};

const LIMITED: &str = "[admin]\nlisten = \"127.0.0.1:0\"\n[rate_limit]\nkey = \"route\"\n\
                       [[rate_limit.rules]]\nselector = \"library.v1.LibraryService.GetShelf\"\nper_second = 1\nburst = 1\n";
const OPEN: &str = "[admin]\nlisten = \"127.0.0.1:0\"\n";

async fn reload(h: &Harness) -> (u16, serde_json::Value) {
    let url = format!("{}/v1/config:reload", h.admin.as_ref().unwrap());
    read_json(h.client.post(url).send().await.unwrap()).await
}

async fn shelf_status(h: &Harness) -> u16 {
    h.client.get(h.url("/v1/shelves/1")).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn the_admin_endpoint_applies_a_valid_file_and_keeps_the_running_one_on_errors() {
    let h = Harness::start_with_file(LIMITED).await;
    assert_eq!(shelf_status(&h).await, 200);
    assert_eq!(shelf_status(&h).await, 429);

    std::fs::write(h.config_file(), OPEN).unwrap();
    let (status, body) = reload(&h).await;
    assert_eq!((status, &body["status"]), (200, &serde_json::json!("reloaded")), "{body}");
    assert_eq!(body["restartRequired"], serde_json::json!([]));
    assert_eq!(shelf_status(&h).await, 200, "the rule is gone");
    assert_eq!(shelf_status(&h).await, 200);

    let invalid = format!("{OPEN}[rate_limit]\nkey = \"moon\"\n[timeouts]\nstream_idle = \"soon\"\nbogus = 1\n");
    std::fs::write(h.config_file(), invalid).unwrap();
    let (status, body) = reload(&h).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["message"], "config rejected; the running config is kept");
    let errors: Vec<&str> = body["errors"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    // Every problem in one pass: the unknown key first, then the bad values.
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[0].ends_with("unknown key `timeouts.bogus`"), "{errors:?}");
    std::fs::write(
        h.config_file(),
        format!("{OPEN}[rate_limit]\nkey = \"moon\"\n[timeouts]\nstream_idle = \"soon\"\n"),
    )
    .unwrap();
    let (status, body) = reload(&h).await;
    assert_eq!(status, 400, "{body}");
    let errors = body["errors"].to_string();
    assert!(errors.contains("`rate_limit.key`: \\\"moon\\\" is not consumer, subject, ip or route"), "{errors}");
    assert!(errors.contains("`timeouts.stream_idle`: \\\"soon\\\" is not a duration"), "{errors}");
    assert_eq!(shelf_status(&h).await, 200, "still the open config");

    std::fs::write(h.config_file(), format!("{OPEN}[cors]\nallowed_origins = [\"https://app.example\"]\n")).unwrap();
    let (status, body) = reload(&h).await;
    assert_eq!((status, &body["restartRequired"]), (200, &serde_json::json!(["cors"])), "{body}");

    let metrics = h.client.get(format!("{}/metrics", h.admin.as_ref().unwrap())).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(metrics.contains("protogate_config_reloads_total{outcome=\"applied\"} 2"), "{metrics}");
    assert!(metrics.contains("protogate_config_reloads_total{outcome=\"rejected\"} 2"), "{metrics}");
}

#[tokio::test]
async fn requests_in_flight_keep_the_policies_they_started_with() {
    let h = Harness::start_with_file(OPEN).await;
    let stream = h.client.get(h.url("/test/v1/stream?count=3&intervalMs=300")).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    // The new config would end that stream after 100 ms.
    std::fs::write(h.config_file(), format!("{OPEN}[timeouts]\nstream_lifetime = \"100ms\"\n")).unwrap();
    assert_eq!(reload(&h).await.0, 200);
    let body = stream.text().await.unwrap();
    assert_eq!(body.lines().count(), 3, "the stream started before the reload finishes: {body}");
    assert!(!body.contains("error"), "{body}");

    let cut = h.client.get(h.url("/test/v1/stream?count=3&intervalMs=300")).send().await.unwrap().text().await;
    let cut = cut.unwrap();
    assert!(cut.contains("\"code\":4"), "a new stream gets the new lifetime: {cut}");
}

#[tokio::test]
async fn a_gateway_started_without_a_file_says_so() {
    let h = Harness::start_with(OPEN).await;
    let (status, body) = reload(&h).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["message"], "the gateway was started without --config; there is no file to reload");
}

#[tokio::test]
async fn sighup_reloads_the_file() {
    let upstream = library_backend().await;
    let descriptors = concat!(env!("CARGO_MANIFEST_DIR"), "/descriptors/library.binpb");
    let head =
        format!("listen = \"127.0.0.1:0\"\ndescriptors = [\"{descriptors}\"]\n[upstream]\ndefault = \"{upstream}\"\n");
    let path = std::env::temp_dir().join(format!("protogate-hup-{}.toml", common::process::free_port()));
    std::fs::write(&path, format!("{head}{LIMITED}")).unwrap();
    let gateway = spawn_gateway(&["serve", "--config", path.to_str().unwrap()]).await;
    let get = || async { reqwest::get(format!("{}/v1/shelves/1", gateway.public)).await.unwrap().status().as_u16() };
    assert_eq!((get().await, get().await), (200, 429));

    std::fs::write(&path, format!("{head}{OPEN}")).unwrap();
    let pid = gateway.child.id().unwrap().to_string();
    let status = std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(status.success());
    let mut statuses = Vec::new();
    for _ in 0..100 {
        statuses = vec![get().await, get().await];
        if statuses == [200, 200] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(statuses, [200, 200], "the reloaded file has no limit");
}

/// Pools outlive a reload (their connections stay open), and their
/// settings change in place: a call limit raised by a reload admits the
/// call it refused, while TLS files are named as needing a restart.
#[tokio::test]
async fn a_reload_changes_the_upstream_pool_settings_in_place() {
    let limited = format!("{OPEN}[upstream]\nmax_requests = 1\n");
    let h = Harness::start_with_file(&limited).await;
    // One slow call holds the echo upstream's only place.
    let while_one_is_slow = || async {
        let slow = h.client.post(h.url("/test/v1/fail")).body(r#"{"code": 5, "delayMs": 800}"#).send();
        let slow = tokio::spawn(slow);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (status, _) = h.post_json("/test/v1/echo", r#"{"fString": "second"}"#).await;
        let _ = slow.await;
        status
    };
    assert_eq!(while_one_is_slow().await, 503, "past upstream.max_requests");
    let connections = h.echo_connections.load(std::sync::atomic::Ordering::SeqCst);

    std::fs::write(h.config_file(), format!("{OPEN}[upstream]\nmax_requests = 100\n")).unwrap();
    let (status, body) = reload(&h).await;
    assert_eq!((status, &body["restartRequired"]), (200, &serde_json::json!([])), "{body}");
    assert_eq!(while_one_is_slow().await, 200, "the raised limit admits it");
    let after = h.echo_connections.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(after, connections, "the reload kept the upstream's connection");

    let tls = format!("{OPEN}[upstream]\nmax_requests = 100\n[upstream.tls]\nserver_name = \"other.internal\"\n");
    std::fs::write(h.config_file(), tls).unwrap();
    let (status, body) = reload(&h).await;
    assert_eq!((status, &body["restartRequired"]), (200, &serde_json::json!(["upstream.tls"])), "{body}");
}
