//! The OpenAPI document: valid OpenAPI 3.1 by an independent validator,
//! stable against a golden file, and following each registration.

mod common;

use std::process::Command;

use common::Harness;
use protogate::pb;
use serde_json::Value;

const GOLDEN: &str = "tests/golden/library.openapi.json";

/// Runs the PyPI `openapi-spec-validator` on a document. A missing tool
/// fails under CI and is a printed skip elsewhere.
fn validate_with_independent_tool(document: &Value) -> bool {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let path = std::env::temp_dir().join(format!("protogate-openapi-{}-{n}.json", std::process::id()));
    std::fs::write(&path, serde_json::to_vec_pretty(document).unwrap()).unwrap();
    let output = Command::new("python3").args(["-m", "openapi_spec_validator", "--schema", "3.1"]).arg(&path).output();
    let available = output.as_ref().is_ok_and(|o| !String::from_utf8_lossy(&o.stderr).contains("No module named"));
    if !available {
        common::skip("openapi-spec-validator", "pip install openapi-spec-validator");
        return false;
    }
    let output = output.unwrap();
    assert!(
        output.status.success(),
        "invalid OpenAPI: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::remove_file(&path).unwrap();
    true
}

async fn openapi(h: &Harness) -> Value {
    let response = h.client.get(h.url("/openapi.json")).send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.unwrap()
}

#[tokio::test]
async fn the_document_is_valid_openapi_3_1_for_every_field_kind() {
    let h = Harness::start().await;
    let document = openapi(&h).await;
    assert_eq!(document["openapi"], "3.1.0");
    validate_with_independent_tool(&document);

    let echo = &document["paths"]["/test/v1/echo"];
    assert_eq!(echo["post"]["operationId"], "EchoService_Echo");
    assert_eq!(
        echo["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/protogate.test.v1.Everything"
    );
    let query: Vec<&str> =
        echo["get"]["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert!(
        query.contains(&"fNested.child.name") && query.contains(&"rInt32") && !query.contains(&"mString"),
        "{query:?}"
    );
    let everything = &document["components"]["schemas"]["protogate.test.v1.Everything"]["properties"];
    assert_eq!(everything["fInt64"], serde_json::json!({"type": "string", "format": "int64"}));
    assert_eq!(everything["wTimestamp"], serde_json::json!({"type": "string", "format": "date-time"}));
    assert_eq!(everything["mNested"]["additionalProperties"]["$ref"], "#/components/schemas/protogate.test.v1.Nested");
    assert_eq!(everything["fEnum"]["enum"][1], "COLOR_RED");
    let stream = &document["paths"]["/test/v1/stream"]["get"]["responses"]["200"]["content"];
    assert!(stream.get("application/x-ndjson").is_some() && stream.get("text/event-stream").is_some());
    let body = &document["paths"]["/test/v1/body"]["post"]["requestBody"]["content"]["application/octet-stream"];
    assert_eq!(body["schema"]["format"], "binary");
}

#[tokio::test]
async fn the_library_document_matches_its_golden_file() {
    let h = Harness::start_with_sets("", vec![("library".to_string(), pb::LIBRARY_DESCRIPTOR_SET.to_vec())]).await;
    let document = openapi(&h).await;
    validate_with_independent_tool(&document);
    let text = serde_json::to_string_pretty(&document).unwrap() + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(GOLDEN);
    if std::env::var_os("PROTOGATE_WRITE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let golden = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        golden == text,
        "{GOLDEN} differs; if the change is intended, refresh it with PROTOGATE_WRITE_GOLDEN=1 cargo test --test openapi"
    );
    let shelf = &document["paths"]["/v1/shelves/{shelves}"];
    assert_eq!(shelf["get"]["operationId"], "LibraryService_GetShelf");
    assert_eq!(shelf["get"]["description"], "Gets a shelf by resource name.");
    assert!(document["paths"]["/v1/shelves/{shelves}/books/{books}:publish"]["post"].is_object());
}

#[tokio::test]
async fn the_document_follows_registrations_and_can_be_turned_off() {
    let toml = "[admin]\nlisten = \"127.0.0.1:0\"";
    let h = Harness::start_with_sets(toml, vec![("library".to_string(), pb::LIBRARY_DESCRIPTOR_SET.to_vec())]).await;
    let before = openapi(&h).await;
    assert!(before["paths"].get("/test/v1/echo").is_none());
    let url = format!("{}/v1/descriptor-sets/everything?upstream=http://{}", h.admin.as_ref().unwrap(), h.echo_addr);
    let response = h
        .client
        .put(url)
        .header("content-type", "application/octet-stream")
        .body(pb::EVERYTHING_DESCRIPTOR_SET.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let after = openapi(&h).await;
    assert!(after["paths"].get("/test/v1/echo").is_some());
    // The API's version stays; the schema it describes is a new one.
    assert_eq!(before["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(before["info"]["version"], after["info"]["version"]);
    let schema = |doc: &Value| doc["info"]["x-protogate-schema"]["digest"].as_str().unwrap_or_default().to_string();
    assert!(schema(&before).starts_with("sha256:"));
    assert_ne!(schema(&before), schema(&after));
    // Nested path variables get names generators accept, the path kept aside.
    let nested = &after["paths"]["/test/v1/nested/{f_nested_child_name}"]["get"]["parameters"][0];
    assert_eq!(
        (&nested["name"], &nested["x-protogate-field"]),
        (&"f_nested_child_name".into(), &"f_nested.child.name".into()),
        "{nested}"
    );
    // Every annotated method appears once, not also as POST /pkg.Service/Method.
    assert!(after["paths"].get("/protogate.test.v1.EchoService/Echo").is_none());

    let docs = h.client.get(h.url("/docs")).send().await.unwrap();
    assert_eq!(docs.headers()["content-type"], "text/html; charset=utf-8");
    assert!(docs.text().await.unwrap().contains("openapi.json"));

    let off = Harness::start_with("[openapi]\nenabled = false").await;
    assert_eq!(off.get_json("/openapi.json").await.0, 404);
}
