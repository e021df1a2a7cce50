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

#[tokio::test]
async fn a_page_from_another_origin_uses_rest_sse_websocket_and_grpc_web() {
    if !tools_present() {
        return;
    }
    let example = PathBuf::from(ROOT).join("examples/browser");
    let build = Command::new("npm").args(["run", "--silent", "build"]).current_dir(&example).output().unwrap();
    assert!(build.status.success(), "{}", String::from_utf8_lossy(&build.stderr));

    // The page's own origin: a static server on another port.
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

    let h = Harness::start_with(&format!("[cors]\nallowed_origins = [\"{origin}\"]")).await;
    let url = format!("{origin}/?gateway={}", h.base);
    let run =
        tokio::process::Command::new("node").arg("test.mjs").arg(&url).current_dir(&example).output().await.unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let report: Value = serde_json::from_slice(&run.stdout).unwrap();
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
