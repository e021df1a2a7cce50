//! A real browser: headless Chromium driven by playwright-core loads
//! examples/browser from another origin than the gateway and calls it with
//! fetch (REST), EventSource (SSE), WebSocket (bidi) and connect-web
//! (gRPC-Web, messages built at run time from the descriptor set). CORS is
//! exercised for real.

mod common;

use std::path::PathBuf;
use std::process::Command;

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;
use common::Harness;
use http::header::CONTENT_TYPE;
use protogate::pb;
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The example's tools (npm packages and Debian's chromium), or a printed
/// skip outside CI.
fn tools_present() -> bool {
    let example = PathBuf::from(ROOT).join("examples/browser");
    let present = example.join("node_modules/playwright-core").exists()
        && example.join("node_modules/.bin/esbuild").exists()
        && PathBuf::from("/usr/bin/chromium").exists();
    if !present {
        common::skip(
            "chromium or examples/browser/node_modules",
            "apt-get install chromium; npm install in examples/browser",
        );
    }
    present
}

/// Serves examples/browser from its own origin (a static server on another
/// port): the origin, for the gateway's CORS configuration.
async fn serve_page() -> String {
    let example = PathBuf::from(ROOT).join("examples/browser");
    let build = Command::new("npm").args(["run", "--silent", "build"]).current_dir(&example).output().unwrap();
    assert!(build.status.success(), "{}", String::from_utf8_lossy(&build.stderr));
    let site = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", site.local_addr().unwrap());
    let page = std::fs::read_to_string(example.join("index.html")).unwrap();
    let bundle = std::fs::read(example.join("dist/app.js")).unwrap();
    let app = Router::new()
        .route("/", get(move || async move { ([(CONTENT_TYPE, "text/html")], page).into_response() }))
        .route(
            "/dist/app.js",
            get(move || async move { ([(CONTENT_TYPE, "text/javascript")], bundle).into_response() }),
        )
        .route(
            "/library.binpb",
            get(|| async {
                ([(CONTENT_TYPE, "application/octet-stream")], pb::LIBRARY_DESCRIPTOR_SET).into_response()
            }),
        );
    tokio::spawn(async move { axum::serve(site, app).await });
    origin
}

/// Opens the page against `gateway` in headless Chromium: its report.
async fn run_page(origin: &str, gateway: &str, chromium_args: &[String]) -> Value {
    let example = PathBuf::from(ROOT).join("examples/browser");
    let url = format!("{origin}/?gateway={gateway}");
    let run = tokio::process::Command::new("node")
        .arg("test.mjs")
        .arg(&url)
        .args(chromium_args)
        .current_dir(&example)
        .output()
        .await
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    serde_json::from_slice(&run.stdout).unwrap()
}

/// What every section of the page must show.
fn assert_page_works(report: &Value) {
    let all_ok = serde_json::json!({"rest": "ok", "sse": "ok", "websocket": "ok", "grpcweb": "ok"});
    assert_eq!(report["results"], all_ok, "{report}");
    let titles = serde_json::json!(["The Left Hand of Darkness", "A Wizard of Earthsea", "Solaris"]);
    assert_eq!(report["sections"]["rest"], titles);
    assert_eq!(report["sections"]["sse"], titles);
    assert_eq!(report["sections"]["websocket"], serde_json::json!(["Solaris", "SPQR"]));
    let mut grpc_web = vec![serde_json::json!("SPQR (500000 sold)")];
    grpc_web.extend(titles.as_array().unwrap().iter().cloned());
    assert_eq!(report["sections"]["grpcweb"], Value::Array(grpc_web));
}

#[tokio::test]
async fn a_page_from_another_origin_uses_rest_sse_websocket_and_grpc_web() {
    if !tools_present() {
        return;
    }
    let origin = serve_page().await;
    let h = Harness::start_with(&format!("[cors]\nallowed_origins = [\"{origin}\"]")).await;
    assert_page_works(&run_page(&origin, &h.base, &[]).await);
}

/// Browsers speak HTTP/2 only over TLS: over the TLS listener the same page
/// works (WebSocket as wss) and its fetches, EventSource and gRPC-Web calls
/// go over h2, negotiated by ALPN.
#[tokio::test]
async fn the_page_works_over_https_and_the_browser_negotiates_http2() {
    if !tools_present() {
        return;
    }
    let origin = serve_page().await;
    let dir = std::env::temp_dir().join(format!("protogate-browser-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let leaf = common::certs::Ca::new("browser test ca").leaf(&["localhost", "127.0.0.1"]);
    let (cert, key) = leaf.write(&dir, "server");
    let toml = format!("[cors]\nallowed_origins = [\"{origin}\"]\n[tls]\ncert_file = {cert:?}\nkey_file = {key:?}\n");
    let h = Harness::start_with(&toml).await;
    let gateway = h.base.replace("http://127.0.0.1", "https://localhost");
    // Trust exactly this certificate's key, as a pinned certificate.
    let trust = format!("--ignore-certificate-errors-spki-list={}", leaf.spki_sha256);
    let report = run_page(&origin, &gateway, &[trust]).await;
    assert_page_works(&report);
    let protocols = report["protocols"].as_array().expect("protocols");
    assert!(!protocols.is_empty(), "{report}");
    assert!(protocols.iter().all(|p| p == "h2"), "every request to the gateway over h2: {report}");
}
