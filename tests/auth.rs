//! Authentication and authorization through the real listener: API keys,
//! JWTs (HS256, RS256, ES256, a JWKS file that rotates), every way a token
//! can be wrong, scopes and claims per route, identity forwarding, and the
//! gRPC form of refusals.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::Harness;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const SECRET: &str = "shared-secret";

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn claims(extra: Value) -> Value {
    let mut claims = json!({"iss": "https://issuer.test", "aud": "protogate", "sub": "user-7", "exp": now() + 600, "tenant": "acme"});
    claims.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    claims
}

fn token(algorithm: Algorithm, kid: &str, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn hs(claims: &Value) -> String {
    token(Algorithm::HS256, "hs", &EncodingKey::from_secret(SECRET.as_bytes()), claims)
}

fn jwks(kid: &str, secret: &str) -> String {
    json!({"keys": [{"kty": "oct", "alg": "HS256", "kid": kid, "k": URL_SAFE_NO_PAD.encode(secret)}]}).to_string()
}

async fn start(jwks_path: &std::path::Path) -> Harness {
    let key_hash: String = sha256_hex("secret-key");
    let toml = format!(
        r#"
[admin]
listen = "127.0.0.1:0"
[auth]
default = "anonymous"
[auth.api_keys]
query = "api_key"
keys = [{{ consumer = "billing", sha256 = "{key_hash}" }}]
[auth.jwt]
issuer = "https://issuer.test"
audiences = ["protogate"]
leeway = "0s"
jwks_file = "{jwks}"
keys = [
  {{ kid = "hs", algorithm = "HS256", secret = "{SECRET}" }},
  {{ kid = "rs", algorithm = "RS256", pem_file = "{ROOT}/tests/fixtures/rsa_public.pem" }},
  {{ kid = "es", algorithm = "ES256", pem_file = "{ROOT}/tests/fixtures/ec_public.pem" }},
]
[auth.forward]
claims = {{ tenant = "x-tenant" }}
[[auth.rules]]
selector = "protogate.test.v1.EchoService.EchoMetadata"
[[auth.rules]]
selector = "/v1/{{name=shelves/*}}"
scopes = ["shelves:read"]
[[auth.rules]]
selector = "protogate.test.v1.EchoService"
claims = {{ role = "admin" }}
"#,
        jwks = jwks_path.display()
    );
    Harness::start_with(&toml).await
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

async fn metadata_call(h: &Harness, auth: Option<(&str, String)>) -> (u16, Value, Option<String>) {
    let mut request = h.client.get(h.url("/test/v1/metadata")).header("grpc-metadata-x-subject", "spoofed");
    if let Some((name, value)) = auth {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
    let (status, body) = common::read_json(response).await;
    (status, body, challenge)
}

fn temp_jwks(secret_kid: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("protogate-jwks-{}-{secret_kid}.json", std::process::id()));
    std::fs::write(&path, jwks(secret_kid, "rotated-secret-1")).unwrap();
    path
}

#[tokio::test]
async fn tokens_are_verified_and_the_identity_is_forwarded() {
    let path = temp_jwks("k1");
    let h = start(&path).await;
    assert_eq!(h.get_json("/v1/shelves").await.0, 200, "routes without a rule stay anonymous");

    let (status, body, challenge) = metadata_call(&h, None).await;
    assert_eq!((status, body["code"].as_i64()), (401, Some(16)));
    assert_eq!(challenge.as_deref(), Some("Bearer realm=\"protogate\""));

    let good = claims(json!({"role": "admin"}));
    let (status, body, _) = metadata_call(&h, Some(("authorization", format!("Bearer {}", hs(&good))))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["entries"]["x-subject"], "user-7", "the verified subject replaces the spoofed one");
    assert_eq!(body["entries"]["x-tenant"], "acme");

    let rsa =
        EncodingKey::from_rsa_pem(&std::fs::read(format!("{ROOT}/tests/fixtures/rsa_private.pem")).unwrap()).unwrap();
    let ec =
        EncodingKey::from_ec_pem(&std::fs::read(format!("{ROOT}/tests/fixtures/ec_private.pem")).unwrap()).unwrap();
    for bearer in [token(Algorithm::RS256, "rs", &rsa, &good), token(Algorithm::ES256, "es", &ec, &good)] {
        let (status, body, _) = metadata_call(&h, Some(("authorization", format!("Bearer {bearer}")))).await;
        assert_eq!(status, 200, "{body}");
    }
    std::fs::remove_file(path).unwrap();
}

#[tokio::test]
async fn every_bad_token_is_refused() {
    let path = temp_jwks("k2");
    let h = start(&path).await;
    let admin = json!({"role": "admin"});
    let public_pem = std::fs::read(format!("{ROOT}/tests/fixtures/rsa_public.pem")).unwrap();
    let tampered = {
        let token = hs(&claims(admin.clone()));
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        parts[1] = URL_SAFE_NO_PAD.encode(claims(json!({"role": "admin", "sub": "root"})).to_string());
        parts.join(".")
    };
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims(admin.clone()).to_string())
    );
    let cases = [
        ("expired", hs(&claims(json!({"role": "admin", "exp": now() - 10})))),
        ("not yet valid", hs(&claims(json!({"role": "admin", "nbf": now() + 600})))),
        ("wrong audience", hs(&claims(json!({"role": "admin", "aud": "someone-else"})))),
        ("wrong issuer", hs(&claims(json!({"role": "admin", "iss": "https://evil.test"})))),
        ("wrong secret", token(Algorithm::HS256, "hs", &EncodingKey::from_secret(b"guess"), &claims(admin.clone()))),
        ("tampered", tampered),
        ("alg none", none),
        // Algorithm confusion: HMAC "signed" with the RSA public key.
        ("confusion", token(Algorithm::HS256, "rs", &EncodingKey::from_secret(&public_pem), &claims(admin.clone()))),
        ("garbage", "not.a.token".to_string()),
    ];
    for (case, bearer) in cases {
        let (status, body, challenge) = metadata_call(&h, Some(("authorization", format!("Bearer {bearer}")))).await;
        assert_eq!((status, body["code"].as_i64()), (401, Some(16)), "{case}: {body}");
        assert!(challenge.is_some(), "{case}");
    }
    assert_eq!(h.calls(), 0, "no refused call reached the backend");
    let metrics =
        h.client.get(format!("{}/metrics", h.admin.as_ref().unwrap())).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("protogate_auth_rejected_total{reason=\"unauthenticated\"} 9"), "{metrics}");
    std::fs::remove_file(path).unwrap();
}

#[tokio::test]
async fn scopes_and_claims_are_enforced_per_route() {
    let path = temp_jwks("k3");
    let h = start(&path).await;
    let get = |token: String| {
        let request = h.client.get(h.url("/v1/shelves/1")).bearer_auth(token);
        async move { common::read_json(request.send().await.unwrap()).await }
    };
    let (status, body) = get(hs(&claims(json!({"scope": "books:read"})))).await;
    assert_eq!((status, body["message"].as_str()), (403, Some("missing scope \"shelves:read\"")));
    assert_eq!(get(hs(&claims(json!({"scope": "books:read shelves:read"})))).await.0, 200);
    assert_eq!(get(hs(&claims(json!({"scp": ["shelves:read"]})))).await.0, 200);

    // The service-wide rule asks for role=admin; EchoMetadata's own rule wins
    // for that method.
    let echo = |role: &str| {
        let request = h.client.get(h.url("/test/v1/echo")).bearer_auth(hs(&claims(json!({"role": role}))));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!((echo("user").await, echo("admin").await), (403, 200));
    let (status, _, _) =
        metadata_call(&h, Some(("authorization", format!("Bearer {}", hs(&claims(json!({"role": "user"}))))))).await;
    assert_eq!(status, 200);
    std::fs::remove_file(path).unwrap();
}

#[tokio::test]
async fn api_keys_identify_consumers() {
    let path = temp_jwks("k4");
    let h = start(&path).await;
    let (status, body, _) = metadata_call(&h, Some(("x-api-key", "secret-key".to_string()))).await;
    assert_eq!((status, &body["entries"]["x-consumer"]), (200, &json!("billing")), "{body}");
    let response = h.client.get(h.url("/test/v1/echo")).header("x-api-key", "secret-key").send().await.unwrap();
    assert_eq!(response.status(), 403, "an API key carries no role claim");
    let response = h.client.get(h.url("/test/v1/metadata?api_key=wrong")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let (status, body) = h.get_json("/v1/shelves?api_key=secret-key").await;
    assert_eq!(status, 200, "the query key is a credential, not a request field: {body}");
    std::fs::remove_file(path).unwrap();
}

#[tokio::test]
async fn jwks_rotation_is_picked_up_on_an_unknown_kid() {
    let path = temp_jwks("rot1");
    let h = start(&path).await;
    let signed = |kid: &str, secret: &str| {
        token(Algorithm::HS256, kid, &EncodingKey::from_secret(secret.as_bytes()), &claims(json!({"role": "admin"})))
    };
    let (status, _, _) =
        metadata_call(&h, Some(("authorization", format!("Bearer {}", signed("rot1", "rotated-secret-1"))))).await;
    assert_eq!(status, 200);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(&path, jwks("rot2", "rotated-secret-2")).unwrap();
    let (status, body, _) =
        metadata_call(&h, Some(("authorization", format!("Bearer {}", signed("rot2", "rotated-secret-2"))))).await;
    assert_eq!(status, 200, "{body}");
    std::fs::remove_file(path).unwrap();
}

#[tokio::test]
async fn grpc_clients_are_refused_in_grpc_form() {
    let path = temp_jwks("k6");
    let h = start(&path).await;
    let channel = tonic::transport::Channel::from_shared(h.base.clone()).unwrap().connect().await.unwrap();
    let mut echo = protogate::pb::protogate::test::v1::echo_service_client::EchoServiceClient::new(channel);
    let status = echo.echo_metadata(()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    let mut request = tonic::Request::new(());
    let bearer = format!("Bearer {}", hs(&claims(json!({"role": "admin"}))));
    request.metadata_mut().insert("authorization", bearer.parse().unwrap());
    request.metadata_mut().insert("x-subject", "spoofed".parse().unwrap());
    let reply = echo.echo_metadata(request).await.unwrap();
    assert_eq!(reply.get_ref().entries["x-subject"], "user-7");
    std::fs::remove_file(path).unwrap();
}

/// A JWKS endpoint whose set can be swapped and whose reads are counted.
struct JwksServer {
    url: String,
    body: std::sync::Arc<std::sync::Mutex<(u16, String)>>,
    fetches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

async fn jwks_server(initial: String) -> JwksServer {
    use std::sync::atomic::Ordering;
    let body = std::sync::Arc::new(std::sync::Mutex::new((200, initial)));
    let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (served, counted) = (body.clone(), fetches.clone());
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            let (served, counted) = (served.clone(), counted.clone());
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                let (status, body) = served.lock().unwrap().clone();
                (axum::http::StatusCode::from_u16(status).unwrap(), body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    JwksServer { url, body, fetches }
}

#[tokio::test]
async fn a_jwks_url_is_cached_refreshed_on_unknown_kids_and_kept_through_failures() {
    use std::sync::atomic::Ordering;
    let server = jwks_server(jwks("u1", "url-secret-1")).await;
    let toml = format!(
        "[auth]\ndefault = \"authenticated\"\n[auth.jwt]\nissuer = \"https://issuer.test\"\naudiences = [\"protogate\"]\n\
         jwks_url = \"{}\"\njwks_refresh = \"1h\"\n",
        server.url
    );
    let h = Harness::start_with(&toml).await;
    let signed = |kid: &str, secret: &str| {
        let token = token(Algorithm::HS256, kid, &EncodingKey::from_secret(secret.as_bytes()), &claims(json!({})));
        Some(("authorization", format!("Bearer {token}")))
    };
    for _ in 0..5 {
        assert_eq!(metadata_call(&h, signed("u1", "url-secret-1")).await.0, 200);
    }
    let after_start = server.fetches.load(Ordering::SeqCst);
    assert!((1..=2).contains(&after_start), "cached, not fetched per request: {after_start} fetches");

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    server.body.lock().unwrap().1 = jwks("u2", "url-secret-2");
    assert_eq!(metadata_call(&h, signed("u2", "url-secret-2")).await.0, 200, "an unknown kid re-reads the set");
    assert_eq!(server.fetches.load(Ordering::SeqCst), after_start + 1);

    for _ in 0..10 {
        assert_eq!(metadata_call(&h, signed("forged", "x")).await.0, 401);
    }
    let after_forged = server.fetches.load(Ordering::SeqCst);
    assert!(after_forged <= after_start + 2, "unknown kids re-read at most once a second: {after_forged}");

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    *server.body.lock().unwrap() = (500, "down".into());
    assert_eq!(metadata_call(&h, signed("other", "x")).await.0, 401, "a failed read refuses the unknown kid");
    assert_eq!(metadata_call(&h, signed("u2", "url-secret-2")).await.0, 200, "and keeps the keys it had");
}
