//! The README's complete policy example (examples/policies/gateway.toml),
//! loaded as a user would and checked end to end: the README shows the file
//! as it is, and each policy it configures does what the README says.

mod common;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use common::POLICY_EXAMPLE as EXAMPLE;

#[test]
fn the_readme_shows_the_example_file_as_it_is() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let file = std::fs::read_to_string(EXAMPLE).unwrap();
    assert!(readme.contains(&format!("```toml\n{file}```")), "README.md must quote {EXAMPLE} verbatim");
}

fn admin_token() -> String {
    let pem = std::fs::read("tests/fixtures/rsa_private.pem").unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = json!({
        "iss": "https://issuer.example.com", "aud": "library", "sub": "ops-1", "exp": now + 600,
        "scope": "shelves:delete", "role": "admin",
    });
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("issuer-1".into());
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_pem(&pem).unwrap()).unwrap()
}

#[tokio::test]
async fn the_example_config_enforces_what_the_readme_says() {
    let (server, base) = common::policy_example().await;
    let client = reqwest::Client::new();

    let read = client.get(format!("{base}/v1/shelves/1")).send().await.unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(read.headers()["ratelimit-limit"], "100");

    let create = || {
        client
            .post(format!("{base}/v1/shelves/1/books"))
            .header("content-type", "application/json")
            .body(r#"{"title": "Dune"}"#)
    };
    let anonymous = create().send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers().contains_key("www-authenticate"));
    let statuses = [
        create().header("x-api-key", "billing-demo-key").send().await.unwrap().status(),
        create().header("x-api-key", "billing-demo-key").send().await.unwrap().status(),
        create().header("x-api-key", "billing-demo-key").send().await.unwrap().status(),
    ];
    assert_eq!(statuses.map(|s| s.as_u16()), [200, 200, 429], "CreateBook: burst 2 per consumer");
    let other = create().header("x-api-key", "mobile-demo-key").send().await.unwrap();
    assert_eq!(other.status(), 200, "another consumer has its own bucket");

    let delete = || client.delete(format!("{base}/v1/shelves/2"));
    assert_eq!(delete().header("x-api-key", "billing-demo-key").send().await.unwrap().status(), 403);
    let admin = delete().bearer_auth(admin_token()).send().await.unwrap();
    assert_eq!(admin.status(), 200, "{}", admin.text().await.unwrap());

    let preflight = client
        .request(reqwest::Method::OPTIONS, format!("{base}/v1/shelves/1/books"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.headers()["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(client.get(format!("{base}/readyz")).send().await.unwrap().status(), 200);
    let flood = client.get(format!("{base}/v1/shelves/1")).header("x-flood", "z".repeat(20_000)).send().await.unwrap();
    assert_eq!(flood.status(), 431);
    let metrics = client.get(format!("http://{}/metrics", server.admin_addr.unwrap())).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    let refused = "protogate_requests_total{grpc_code=\"7\",http_status=\"403\",protocol=\"rest\",\
                   route=\"/v1/{name=shelves/*}\",rpc=\"library.v1.LibraryService.DeleteShelf\"} 1";
    assert!(metrics.contains(refused), "refusals are counted with their route: {metrics}");
    server.shutdown().await.unwrap();
}
