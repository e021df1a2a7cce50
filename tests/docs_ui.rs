//! `/docs` in a real browser: headless Chromium (playwright-core) opens the
//! Swagger UI page of the README's policy example, tries CreateBook without
//! credentials (401), authorizes with an API key through the page's own
//! dialog and tries again (200). The page fetches nothing off the gateway.

mod common;

use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn the_docs_page_tries_an_operation_with_and_without_an_api_key() {
    let clients = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
    if !clients.join("node_modules/playwright-core").exists() || !std::path::Path::new("/usr/bin/chromium").exists() {
        common::skip(
            "chromium or tests/clients/node_modules",
            "apt-get install chromium; npm install in tests/clients",
        );
        return;
    }
    let (_server, base) = common::policy_example().await;
    let run = tokio::process::Command::new("node")
        .args(["docs.mjs", &base, "billing-demo-key"])
        .current_dir(&clients)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}{}", String::from_utf8_lossy(&run.stderr));
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["anonymous"]["status"], 401, "{report}");
    assert_eq!(report["anonymous"]["body"]["code"], 16, "{report}");
    assert_eq!(report["authorized"]["status"], 200, "{report}");
    assert_eq!(report["authorized"]["body"]["title"], "Dune", "{report}");
    assert_eq!(report["offsite"], serde_json::json!([]), "{report}");
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
}
