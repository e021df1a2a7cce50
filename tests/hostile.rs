//! The holes a black-box probe found, replayed against the real binary:
//! each test is one class of hostile input (a misbehaving backend, deep
//! nesting, auth bypasses, forged tokens, cross-site admin calls, numbers
//! that do not fit, memory an outsider can grow, corrupted state, slow
//! clients), and checks the gateway answers it cleanly and keeps serving.

mod common;

use std::time::Duration;

use common::hostile;
use common::process::{Gateway, spawn_gateway};
use protogate::pb::protogate::test::v1::echo_service_client::EchoServiceClient;
use protogate::pb::protogate::test::v1::{EchoStreamRequest, Everything};
use serde_json::Value;
use tonic::Code;

/// A gateway process in front of `upstream` serving the test services,
/// with extra TOML configuration.
async fn gateway(upstream: &str, config: &str) -> (Gateway, tempdir::Dir) {
    let dir = tempdir::Dir::new();
    let descriptor = dir.write("everything.binpb", protogate::pb::EVERYTHING_DESCRIPTOR_SET);
    let config = dir.write("gateway.toml", config.as_bytes());
    let args = [
        "serve",
        "--descriptor",
        &descriptor,
        "--upstream",
        upstream,
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--config",
        &config,
    ];
    (spawn_gateway(&args).await, dir)
}

mod tempdir {
    /// A directory removed when dropped.
    pub struct Dir(pub std::path::PathBuf);

    impl Dir {
        pub fn new() -> Self {
            let path = std::env::temp_dir().join(format!("protogate-hostile-{}", super::common::process::free_port()));
            std::fs::create_dir_all(&path).unwrap();
            Self(path)
        }

        pub fn write(&self, name: &str, bytes: &[u8]) -> String {
            let path = self.0.join(name);
            std::fs::write(&path, bytes).unwrap();
            path.display().to_string()
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

async fn hostile_gateway(config: &str) -> (Gateway, tempdir::Dir) {
    let backend = hostile::serve().await;
    gateway(&format!("http://{backend}"), config).await
}

fn grpc_request<T>(message: T, mode: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("x-hostile", mode.parse().unwrap());
    request
}

async fn grpc_client(g: &Gateway) -> EchoServiceClient<tonic::transport::Channel> {
    let channel = tonic::transport::Channel::from_shared(g.public.clone()).unwrap().connect().await.unwrap();
    EchoServiceClient::new(channel)
}

type WebClient = EchoServiceClient<
    tonic_web::GrpcWebClientService<
        hyper_util::client::legacy::Client<
            hyper_util::client::legacy::connect::HttpConnector,
            tonic_web::GrpcWebCall<tonic::body::Body>,
        >,
    >,
>;

fn grpc_web_client(g: &Gateway) -> WebClient {
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let service = tower::ServiceBuilder::new().layer(tonic_web::GrpcWebClientLayer::new()).service(http);
    EchoServiceClient::with_origin(service, g.public.parse().unwrap())
}

async fn rest(g: &Gateway, path: &str, mode: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", g.public))
        .header("content-type", "application/json")
        .header("grpc-metadata-x-hostile", mode)
        .body("{}")
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// A REST server stream's status and NDJSON lines (one Status JSON when it
/// failed before it started).
async fn rest_stream(g: &Gateway, mode: &str) -> (u16, Vec<Value>) {
    let response = reqwest::Client::new()
        .get(format!("{}/test/v1/stream", g.public))
        .header("grpc-metadata-x-hostile", mode)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = tokio::time::timeout(Duration::from_secs(20), response.text()).await.expect("the stream ends").unwrap();
    (status, text.lines().map(|line| serde_json::from_str(line).unwrap()).collect())
}

/// A gRPC-Web call on the JSON codec (translated by the gateway): the
/// answer's JSON messages and its grpc-status and grpc-message.
async fn grpc_web_json(g: &Gateway, method: &str, message: &str, mode: &str) -> (Vec<Value>, String, String) {
    let mut frame = vec![0];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message.as_bytes());
    let response = reqwest::Client::new()
        .post(format!("{}/protogate.test.v1.EchoService/{method}", g.public))
        .header("content-type", "application/grpc-web+json")
        .header("x-hostile", mode)
        .body(frame)
        .send()
        .await
        .unwrap();
    let headers = response.headers().clone();
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_string());
    let mut body = &response.bytes().await.unwrap()[..];
    let (mut messages, mut trailers) = (Vec::new(), String::new());
    while body.len() >= 5 {
        let length = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        let payload = &body[5..5 + length];
        match body[0] & 0x80 {
            0 => messages.push(serde_json::from_slice(payload).unwrap()),
            _ => trailers = String::from_utf8_lossy(payload).into_owned(),
        }
        body = &body[5 + length..];
    }
    let trailer =
        |name: &str| trailers.lines().find_map(|l| l.strip_prefix(&format!("{name}:"))).map(|v| v.trim().to_string());
    let status = header("grpc-status").or_else(|| trailer("grpc-status")).unwrap_or_default();
    let text = header("grpc-message").or_else(|| trailer("grpc-message")).unwrap_or_default();
    (messages, status, percent_encoding::percent_decode_str(&text).decode_utf8_lossy().into_owned())
}

async fn connect_unary(g: &Gateway, mode: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/protogate.test.v1.EchoService/Echo", g.public))
        .header("content-type", "application/json")
        .header("connect-protocol-version", "1")
        .header("x-hostile", mode)
        .body("{}")
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// The gateway's Prometheus text.
async fn metrics(g: &Gateway) -> String {
    reqwest::get(format!("{}/metrics", g.admin)).await.unwrap().text().await.unwrap()
}

fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find(|line| line.starts_with(name) && line[name.len()..].starts_with([' ', '{']))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn still_serves(g: &Gateway) {
    let (status, _) = rest(g, "/test/v1/echo", "").await;
    assert_eq!(status, 200, "the gateway keeps serving");
}

#[tokio::test]
async fn malformed_status_details_from_a_backend_are_clean_errors_in_every_protocol() {
    let (g, _dir) = hostile_gateway("").await;
    for mode in ["details-trailers", "details-headers"] {
        let (status, body) = rest(&g, "/test/v1/echo", mode).await;
        assert_eq!((status, body.as_str()), (400, r#"{"code":3,"message":"bad details","details":[]}"#), "{mode}");

        let (status, body) = connect_unary(&g, mode).await;
        assert_eq!((status, &body["code"], &body["message"]), (400, &"invalid_argument".into(), &"bad details".into()));

        let failed = grpc_client(&g).await.echo(grpc_request(Everything::default(), mode)).await.unwrap_err();
        assert_eq!((failed.code(), failed.message()), (Code::InvalidArgument, "bad details"), "{mode}");

        let failed = grpc_web_client(&g).echo(grpc_request(Everything::default(), mode)).await.unwrap_err();
        assert_eq!((failed.code(), failed.message()), (Code::InvalidArgument, "bad details"), "{mode}");

        // Trailers-only fails before the stream starts, trailers after.
        let (status, lines) = rest_stream(&g, mode).await;
        let error = serde_json::json!({"code": 3, "message": "bad details", "details": []});
        let expected =
            if mode == "details-headers" { (400, error) } else { (200, serde_json::json!({"error": error})) };
        assert_eq!((status, lines), (expected.0, vec![expected.1]), "{mode}");
    }
    still_serves(&g).await;
    assert_eq!(sample(&metrics(&g).await, "protogate_panics_total"), 0.0);
}

#[tokio::test]
async fn a_backend_dying_mid_stream_ends_every_protocol_with_unavailable() {
    let (g, _dir) = hostile_gateway("").await;
    let request = || grpc_request(EchoStreamRequest { count: 3, ..Default::default() }, "die");

    let mut stream = grpc_client(&g).await.echo_stream(request()).await.unwrap().into_inner();
    assert!(stream.message().await.unwrap().is_some());
    let ended = stream.message().await.unwrap_err();
    assert_eq!((ended.code(), ended.message()), (Code::Unavailable, "upstream unavailable"));

    let mut stream = grpc_web_client(&g).echo_stream(request()).await.unwrap().into_inner();
    assert!(stream.message().await.unwrap().is_some());
    let ended = stream.message().await.unwrap_err();
    assert_eq!((ended.code(), ended.message()), (Code::Unavailable, "upstream unavailable"));

    let (messages, status, message) = grpc_web_json(&g, "EchoStream", r#"{"count": 3}"#, "die").await;
    assert_eq!((messages.len(), status.as_str(), message.as_str()), (1, "14", "upstream unavailable"));

    let (status, lines) = rest_stream(&g, "die").await;
    assert_eq!((status, lines.len()), (200, 2), "{lines:?}");
    assert_eq!(lines[1], serde_json::json!({"error": {"code": 14, "message": "upstream unavailable", "details": []}}));
    still_serves(&g).await;
}

#[tokio::test]
async fn garbage_from_a_backend_never_shows_its_decoder_text_to_clients() {
    let (g, _dir) = hostile_gateway("").await;
    let (status, body) = rest(&g, "/test/v1/echo", "garbage").await;
    assert_eq!((status, body.as_str()), (500, r#"{"code":13,"message":"internal error","details":[]}"#));

    let (status, body) = connect_unary(&g, "garbage").await;
    assert_eq!((status, &body["code"], &body["message"]), (500, &"internal".into(), &"internal error".into()));

    let (status, lines) = rest_stream(&g, "garbage").await;
    assert_eq!(status, 200);
    assert_eq!(lines, [serde_json::json!({"error": {"code": 13, "message": "internal error", "details": []}})]);

    let (messages, status, message) = grpc_web_json(&g, "Echo", "{}", "garbage").await;
    assert_eq!((messages.len(), status.as_str(), message.as_str()), (0, "13", "internal error"));
    still_serves(&g).await;
}

#[tokio::test]
async fn a_stream_whose_backend_never_answers_ends_at_the_idle_timeout() {
    let (g, _dir) = hostile_gateway("[timeouts]\nstream_idle = \"1s\"\n").await;
    let (status, lines) = rest_stream(&g, "silent").await;
    let idle = "no message within the stream's idle timeout";
    assert_eq!((status, lines), (504, vec![serde_json::json!({"code": 4, "message": idle, "details": []})]));

    let request = grpc_request(EchoStreamRequest { count: 3, ..Default::default() }, "silent");
    let mut client = grpc_client(&g).await;
    let call = client.echo_stream(request);
    let ended = tokio::time::timeout(Duration::from_secs(20), call).await.expect("ends").unwrap_err();
    assert_eq!((ended.code(), ended.message()), (Code::DeadlineExceeded, idle));
    still_serves(&g).await;
}

#[tokio::test]
async fn numbers_that_do_not_fit_their_field_are_refused_naming_it() {
    let (g, _dir) = hostile_gateway("").await;
    let client = reqwest::Client::new();
    let bodies = [
        (r#"{"fUint64": 18446744073709551616}"#, "fUint64"),
        (r#"{"fInt64": -9223372036854775809}"#, "fInt64"),
        (r#"{"fSfixed64": 9223372036854775808}"#, "fSfixed64"),
        (r#"{"wUint64": 18446744073709551616}"#, "wUint64"),
        (r#"{"rInt64": [1, 1e30]}"#, "rInt64.1"),
    ];
    for (body, field) in bodies {
        for (path, connect) in [("/test/v1/echo", false), ("/protogate.test.v1.EchoService/Echo", true)] {
            let mut request = client.post(format!("{}{path}", g.public)).header("content-type", "application/json");
            if connect {
                request = request.header("connect-protocol-version", "1");
            }
            let response = request.body(body).send().await.unwrap();
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            assert_eq!(status, 400, "{path} {body}: {text}");
            assert!(text.contains(&format!("field \\\"{field}\\\"")), "{path} {body}: {text}");
        }
    }
    for path in [
        "/test/v1/echo?fDouble=1e999",
        "/test/v1/scalars/a/1/true/COLOR_RED/-1e999",
        "/test/v1/echo?fUint64=18446744073709551616",
    ] {
        let response = client.get(format!("{}{path}", g.public)).send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(status, 400, "{path}: {text}");
    }
    still_serves(&g).await;
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Every way to reach `Echo` without credentials: its REST bindings, the
/// auto-mapped path, Connect, gRPC and gRPC-Web. Returns the statuses
/// (HTTP status, or the gRPC code as a number) of each.
async fn every_path_to_echo(g: &Gateway, key: Option<&str>) -> Vec<(&'static str, i32)> {
    let client = reqwest::Client::new();
    let with_key = |request: reqwest::RequestBuilder| match key {
        Some(key) => request.header("x-api-key", key),
        None => request,
    };
    let json = |path: &str| {
        with_key(client.post(format!("{}{path}", g.public))).header("content-type", "application/json").body("{}")
    };
    let mut outcomes = Vec::new();
    for (name, request) in [
        ("POST /test/v1/echo", json("/test/v1/echo")),
        ("POST /test/v1/echo:nested", json("/test/v1/echo:nested")),
        ("GET /test/v1/scalars", with_key(client.get(format!("{}/test/v1/scalars/a/1/true/COLOR_RED/1.5", g.public)))),
        ("POST /pkg.Service/Method", json("/protogate.test.v1.EchoService/Echo")),
        ("Connect", json("/protogate.test.v1.EchoService/Echo").header("connect-protocol-version", "1")),
    ] {
        outcomes.push((name, i32::from(request.send().await.unwrap().status().as_u16())));
    }
    let request = || {
        let mut request = tonic::Request::new(Everything::default());
        if let Some(key) = key {
            request.metadata_mut().insert("x-api-key", key.parse().unwrap());
        }
        request
    };
    let code = |result: Result<_, tonic::Status>| result.map_or_else(|s| s.code() as i32, |_| 0);
    outcomes.push(("gRPC", code(grpc_client(g).await.echo(request()).await)));
    outcomes.push(("gRPC-Web", code(grpc_web_client(g).echo(request()).await)));
    outcomes
}

#[tokio::test]
async fn a_rule_on_one_rest_template_protects_its_method_on_every_path() {
    let config = format!(
        "[auth]\n[auth.api_keys]\nkeys = [{{ consumer = \"ops\", sha256 = \"{}\" }}]\n\
         [[auth.rules]]\nselector = \"/test/v1/echo\"\n",
        sha256_hex("the-key")
    );
    let (g, _dir) = hostile_gateway(&config).await;
    let refused = every_path_to_echo(&g, None).await;
    let expected: Vec<_> =
        refused.iter().map(|(name, _)| (*name, if name.starts_with("gRPC") { 16 } else { 401 })).collect();
    assert_eq!(refused, expected, "anonymous callers are refused on every path");
    let allowed = every_path_to_echo(&g, Some("the-key")).await;
    let expected: Vec<_> =
        allowed.iter().map(|(name, _)| (*name, if name.starts_with("gRPC") { 0 } else { 200 })).collect();
    assert_eq!(allowed, expected, "a caller with a key passes on every path");
    // Other methods keep the default (anonymous).
    let response = reqwest::get(format!("{}/test/v1/metadata", g.public)).await.unwrap();
    assert_eq!(response.status(), 200);
}

const JWT_SECRET: &str = "hostile-test-secret";

fn jwt(claims: Value, crit: Option<Vec<String>>) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.crit = crit;
    jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes())).unwrap()
}

async fn jwt_status(g: &Gateway, token: &str) -> u16 {
    let response =
        reqwest::Client::new().get(format!("{}/test/v1/metadata", g.public)).bearer_auth(token).send().await.unwrap();
    response.status().as_u16()
}

#[tokio::test]
async fn tokens_missing_a_configured_claim_or_with_unknown_crit_are_refused() {
    let jwt_config = |extra: &str| {
        format!(
            "[auth]\ndefault = \"authenticated\"\n[auth.jwt]\nissuer = \"https://issuer.test\"\n\
             audiences = [\"protogate\"]\nkeys = [{{ algorithm = \"HS256\", secret = \"{JWT_SECRET}\" }}]\n{extra}"
        )
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let full = serde_json::json!({"iss": "https://issuer.test", "aud": "protogate", "sub": "u", "exp": now + 600});
    let without = |claim: &str| {
        let mut claims = full.clone();
        claims.as_object_mut().unwrap().remove(claim);
        claims
    };
    let with = |claim: &str, value: Value| {
        let mut claims = full.clone();
        claims[claim] = value;
        claims
    };
    let (g, _dir) = hostile_gateway(&jwt_config("")).await;
    let cases = [
        ("complete", jwt(full.clone(), None), 200),
        ("no iss", jwt(without("iss"), None), 401),
        ("iss null", jwt(with("iss", Value::Null), None), 401),
        ("no aud", jwt(without("aud"), None), 401),
        ("aud null", jwt(with("aud", Value::Null), None), 401),
        ("no exp", jwt(without("exp"), None), 401),
        ("unknown crit", jwt(with("b64", Value::Bool(false)), Some(vec!["b64".into()])), 401),
        ("empty crit", jwt(full.clone(), Some(vec![])), 401),
    ];
    for (case, token, expected) in cases {
        assert_eq!(jwt_status(&g, &token).await, expected, "{case}");
    }
    drop(g);
    let (g, _dir) = hostile_gateway(&jwt_config("require_exp = false\n")).await;
    assert_eq!(jwt_status(&g, &jwt(without("exp"), None)).await, 200, "exp optional when configured");
    assert_eq!(jwt_status(&g, &jwt(with("exp", (now - 600).into()), None)).await, 401, "but still checked");
}

#[tokio::test]
async fn web_pages_cannot_drive_the_loopback_admin_api() {
    let (g, _dir) = hostile_gateway("").await;
    // Anything the gateway would reach out to for :reflect.
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target_url = format!("http://{}", target.local_addr().unwrap());
    let client = reqwest::Client::new();
    let admin_host = g.admin.trim_start_matches("http://").to_string();
    let cases = [
        (
            "cross-site simple POST",
            "/v1/descriptor-sets/echo:rollback?version=1".to_string(),
            Some("https://evil.example"),
            None,
            None,
        ),
        (
            "cross-site reflect (SSRF)",
            format!("/v1/descriptor-sets/x:reflect?upstream={target_url}"),
            Some("null"),
            None,
            None,
        ),
        ("DNS rebinding", "/v1/descriptor-sets".to_string(), None, Some("rebind.attacker.example"), None),
        (
            "rebinding with its own origin",
            "/v1/descriptor-sets".to_string(),
            Some("http://rebind.attacker.example:9"),
            Some("rebind.attacker.example:9"),
            None,
        ),
        ("fetch metadata", "/v1/descriptor-sets".to_string(), None, None, Some("cross-site")),
    ];
    for (case, path, origin, host, fetch_site) in cases {
        let method = if path.contains(':') { reqwest::Method::POST } else { reqwest::Method::GET };
        let mut request =
            client.request(method, format!("{}{path}", g.admin)).header("content-type", "text/plain").body("x");
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some(host) = host {
            request = request.header("host", host);
        }
        if let Some(site) = fetch_site {
            request = request.header("sec-fetch-site", site);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 403, "{case}");
    }
    let contacted = tokio::time::timeout(Duration::from_millis(200), target.accept()).await;
    assert!(contacted.is_err(), "a refused :reflect connects nowhere");
    // Tools on the operator's machine still work, same-origin included.
    let listed = client.get(format!("{}/v1/descriptor-sets", g.admin)).send().await.unwrap();
    assert_eq!(listed.status(), 200);
    let same_origin = client
        .get(format!("{}/v1/descriptor-sets", g.admin))
        .header("origin", format!("http://{admin_host}"))
        .send()
        .await
        .unwrap();
    assert_eq!(same_origin.status(), 200);
}

fn subject_token(sub: &str) -> String {
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600;
    jwt(serde_json::json!({"sub": sub, "exp": exp}), None)
}

#[tokio::test]
async fn rate_limit_buckets_are_bounded_and_idle_ones_evicted() {
    let config = format!(
        "[auth]\n[auth.jwt]\nkeys = [{{ algorithm = \"HS256\", secret = \"{JWT_SECRET}\" }}]\n\
         [rate_limit]\nkey = \"subject\"\nper_second = 100\nburst = 1\nmax_keys = 200\n"
    );
    let (g, _dir) = hostile_gateway(&config).await;
    let client = reqwest::Client::new();
    let url = format!("{}/test/v1/metadata", g.public);
    // 600 callers, one request each: a flood of distinct keys.
    let calls = (0..600).map(|i| client.get(&url).bearer_auth(subject_token(&format!("user-{i}"))).send());
    for chunk in calls.collect::<Vec<_>>().chunks_mut(50) {
        for response in futures_util::future::join_all(chunk.iter_mut()).await {
            response.unwrap();
        }
    }
    let text = metrics(&g).await;
    assert!(sample(&text, "protogate_rate_limit_overflow_total") > 0.0, "past max_keys new callers share a bucket");
    let kept = sample(&text, "protogate_rate_limit_buckets");
    assert!(kept <= 200.0, "never more than max_keys: {kept}");
    // Buckets refill in 10 ms; after a sweep interval they are gone.
    tokio::time::sleep(Duration::from_millis(5_200)).await;
    let response = client.get(&url).bearer_auth(subject_token("late")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let kept = sample(&metrics(&g).await, "protogate_rate_limit_buckets");
    assert!(kept <= 2.0, "idle buckets are evicted: {kept} kept");
}

#[tokio::test]
async fn forwarded_for_does_not_pick_the_bucket_without_a_trusted_proxy() {
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/policies/gateway.toml")).unwrap();
    assert!(example.contains("\ntrusted_proxies = 0\n"), "the shipped example trusts no proxy");
    let (g, _dir) = hostile_gateway("[rate_limit]\nkey = \"ip\"\nper_second = 1\nburst = 2\n").await;
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for i in 0..6 {
        let response = client
            .get(format!("{}/test/v1/metadata", g.public))
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429, 429, 429, 429]);
}

#[tokio::test]
async fn a_slow_jwks_endpoint_never_queues_requests_with_unknown_key_ids() {
    // A key endpoint that takes 10 s to answer.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let slow = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(|| async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            r#"{"keys": []}"#
        }),
    );
    tokio::spawn(async move { axum::serve(listener, slow).await });
    let config = format!(
        "[auth]\ndefault = \"authenticated\"\n[auth.jwt]\njwks_url = \"{url}\"\n\
         keys = [{{ algorithm = \"HS256\", secret = \"{JWT_SECRET}\" }}]\n"
    );
    let (g, _dir) = hostile_gateway(&config).await;
    let started = std::time::Instant::now();
    let forged = |i: usize| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(format!("unknown-{i}"));
        let claims = serde_json::json!({"sub": "x", "exp": 4_000_000_000u64});
        jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(b"guess")).unwrap()
    };
    let g = &g;
    let calls = (0..8).map(|i| async move { jwt_status(g, &forged(i)).await });
    let statuses = futures_util::future::join_all(calls).await;
    assert_eq!(statuses, vec![401; 8]);
    assert!(started.elapsed() < Duration::from_secs(5), "answered from the keys at hand: {:?}", started.elapsed());
    assert_eq!(jwt_status(g, &subject_token("known")).await, 200, "static keys still verify");
}

/// A gateway with no descriptor files, persisting registrations in `state`.
async fn stateful_gateway(upstream: &str, state: &std::path::Path) -> Gateway {
    let state = state.display().to_string();
    let args = [
        "serve",
        "--upstream",
        upstream,
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--state-dir",
        &state,
    ];
    spawn_gateway(&args).await
}

async fn register(g: &Gateway, name: &str, bytes: &'static [u8]) {
    let response = reqwest::Client::new()
        .put(format!("{}/v1/descriptor-sets/{name}", g.admin))
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
}

async fn readiness(g: &Gateway) -> Value {
    reqwest::get(format!("{}/readyz", g.admin)).await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn damaged_state_files_are_set_aside_and_every_intact_set_is_served() {
    let upstream = format!("http://{}", hostile::serve().await);
    let dir = tempdir::Dir::new();
    let state = dir.0.join("state");
    let mut g = stateful_gateway(&upstream, &state).await;
    register(&g, "library", protogate::pb::LIBRARY_DESCRIPTOR_SET).await;
    register(&g, "everything", protogate::pb::EVERYTHING_DESCRIPTOR_SET).await;
    g.child.kill().await.unwrap();

    // A blob whose content no longer matches its digest.
    let everything_digest = {
        use sha2::Digest;
        let hash = sha2::Sha256::digest(protogate::pb::EVERYTHING_DESCRIPTOR_SET);
        hash.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let blob = state.join("blobs").join(format!("{everything_digest}.binpb"));
    std::fs::write(&blob, b"corrupted").unwrap();
    let g = stateful_gateway(&upstream, &state).await;
    let ready = readiness(&g).await;
    assert_eq!(ready["status"], "degraded", "{ready}");
    let damaged = ready["damagedState"].to_string();
    assert!(damaged.contains("does not match its digest") && damaged.contains("everything"), "{ready}");
    let library = reqwest::get(format!("{}/library.v1.LibraryService/ListShelves", g.public)).await.unwrap();
    assert_ne!(library.status(), 404, "the intact set is served");
    let echo = reqwest::get(format!("{}/test/v1/metadata", g.public)).await.unwrap();
    assert_eq!(echo.status(), 404, "the damaged one is not");
    let kept: Vec<_> = std::fs::read_dir(state.join("damaged")).unwrap().collect();
    assert_eq!(kept.len(), 1, "the damaged blob is kept aside");
    drop(g);

    // A truncated manifest.
    let manifest = state.join("manifest.json");
    let text = std::fs::read(&manifest).unwrap();
    std::fs::write(&manifest, &text[..text.len() / 2]).unwrap();
    let g = stateful_gateway(&upstream, &state).await;
    let ready = readiness(&g).await;
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert!(ready["damagedState"].to_string().contains("manifest.json: unreadable"), "{ready}");
    assert_eq!(std::fs::read_dir(state.join("damaged")).unwrap().count(), 2, "the manifest is kept aside too");
    register(&g, "library", protogate::pb::LIBRARY_DESCRIPTOR_SET).await;
}

#[tokio::test]
async fn nesting_from_every_input_is_bounded_before_any_recursion() {
    let (g, _dir) = hostile_gateway("[limits]\nmax_uri_length = 65536\nmax_body_size = 16777216\n").await;
    let client = reqwest::Client::new();
    // Query keys ~3 500 levels deep (it aborted the process at this size).
    let key = format!("fNested{}.name", ".child".repeat(3_500));
    let response = client.get(format!("{}/test/v1/echo?{key}=x", g.public)).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("nested deeper than 64 levels"), "{text}");

    // JSON bodies, over REST and Connect, objects and arrays.
    let deep_object = format!("{}{}", r#"{"fNested": {"child": "#.repeat(20_000), "}}".repeat(20_000));
    let deep_array = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    for body in [deep_object, deep_array] {
        for connect in [false, true] {
            let path = if connect { "/protogate.test.v1.EchoService/Echo" } else { "/test/v1/echo" };
            let mut request = client.post(format!("{}{path}", g.public)).header("content-type", "application/json");
            if connect {
                request = request.header("connect-protocol-version", "1");
            }
            let response = request.body(body.clone()).send().await.unwrap();
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            assert_eq!(status, 400, "{path}: {text}");
            assert!(text.contains("nested deeper than 64 levels"), "{path}: {text}");
        }
    }

    // An uploaded .proto with additional_bindings nested 1 000 deep.
    let rule = format!("{}get: \"/x\"{}", "get: \"/x\" additional_bindings {".repeat(1_000), "}".repeat(1_000));
    let proto = format!(
        "syntax = \"proto3\";\npackage deep.v1;\nimport \"google/api/annotations.proto\";\n\
         message M {{}}\nservice S {{ rpc Call(M) returns (M) {{ option (google.api.http) = {{ {rule} }}; }} }}\n"
    );
    let form = reqwest::multipart::Form::new()
        .part("deep/v1/deep.proto", reqwest::multipart::Part::text(proto).file_name("deep/v1/deep.proto"));
    let response = client.put(format!("{}/v1/descriptor-sets/deep", g.admin)).multipart(form).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("deep/v1/deep.proto:5:") && text.contains("nested deeper than 64 levels"), "{text}");
    still_serves(&g).await;
}

/// A probe from another client address (127.0.0.2): other clients' requests.
async fn probe(g: &Gateway) -> u16 {
    let client =
        reqwest::Client::builder().local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap()).build().unwrap();
    let response = client.get(format!("{}/test/v1/metadata", g.public)).send().await.unwrap();
    response.status().as_u16()
}

async fn raw_connection(g: &Gateway) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(g.public.trim_start_matches("http://")).await.unwrap()
}

/// `count` connections that each wrote `start` and then stopped.
async fn stalled_connections(g: &Gateway, count: usize, start: &str) -> Vec<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    let mut connections = Vec::new();
    for _ in 0..count {
        let mut tcp = raw_connection(g).await;
        tcp.write_all(start.as_bytes()).await.unwrap();
        connections.push(tcp);
    }
    connections
}

const SLOW_CLIENT_LIMITS: &str =
    "[limits]\nmax_concurrent_requests = 64\nheader_read_timeout = \"1s\"\nbody_timeout = \"1s\"\n";

#[tokio::test]
async fn slow_request_bodies_cannot_starve_other_clients_and_give_their_permits_back() {
    use tokio::io::AsyncReadExt;
    let (g, _dir) = hostile_gateway(SLOW_CLIENT_LIMITS).await;
    // 100 POSTs whose bodies never come, all from 127.0.0.1.
    let head =
        "POST /test/v1/echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{";
    let hoarders = stalled_connections(&g, 100, head).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(probe(&g).await, 200, "another client is served while one hoards");
    // Past the body timeout the hoarders are answered 408 (or shed at once
    // with 503 past their share) and their permits come back.
    let mut statuses = std::collections::BTreeMap::new();
    for mut tcp in hoarders {
        let mut answer = vec![0; 64];
        let read =
            tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut answer)).await.expect("answered").unwrap();
        let status = String::from_utf8_lossy(&answer[..read]).split(' ').nth(1).unwrap_or("").to_string();
        *statuses.entry(status).or_insert(0) += 1;
    }
    assert_eq!(statuses.keys().cloned().collect::<Vec<_>>(), ["408", "503"], "{statuses:?}");
    assert_eq!(statuses["408"], 16, "a quarter of the permits per client: {statuses:?}");
    let response = reqwest::get(format!("{}/test/v1/metadata", g.public)).await.unwrap();
    assert_eq!(response.status(), 200, "the hoarder's own address is served again");
}

#[tokio::test]
async fn half_sent_headers_are_closed_at_the_header_timeout() {
    use tokio::io::AsyncReadExt;
    let (g, _dir) = hostile_gateway(SLOW_CLIENT_LIMITS).await;
    let connections = stalled_connections(&g, 50, "GET /test/v1/metadata HTTP/1.1\r\nhost: x\r\nx-slow: ").await;
    assert_eq!(probe(&g).await, 200);
    for mut tcp in connections {
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "closed by the gateway");
    }
}

#[tokio::test]
async fn zero_window_http2_streams_cannot_starve_other_clients() {
    let (g, _dir) = hostile_gateway(SLOW_CLIENT_LIMITS).await;
    // Like `h2load -w0`: streams whose answers can never be sent.
    let mut hoarded = Vec::new();
    for _ in 0..3 {
        let tcp = raw_connection(&g).await;
        let (client, connection) =
            h2::client::Builder::new().initial_window_size(0).handshake::<_, bytes::Bytes>(tcp).await.unwrap();
        tokio::spawn(connection);
        let mut client = client.ready().await.unwrap();
        for _ in 0..60 {
            let request = http::Request::get(format!("{}/test/v1/stream", g.public)).body(()).unwrap();
            match client.send_request(request, true) {
                Ok((response, _)) => hoarded.push(response),
                Err(_) => break,
            }
            client = client.ready().await.unwrap();
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..5 {
        assert_eq!(probe(&g).await, 200, "another client is served while one hoards");
    }
    drop(hoarded);
}

#[path = "../examples/big_set.rs"]
mod big_set;

fn rss_kib(g: &Gateway) -> u64 {
    let pid = g.child.id().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn descriptor_sets_over_the_memory_budget_are_refused_with_413() {
    let (g, _dir) = hostile_gateway("[registry]\nmemory_budget_mb = 16\n").await;
    let client = reqwest::Client::new();
    let put = |name: &str, bytes: Vec<u8>| {
        client
            .put(format!("{}/v1/descriptor-sets/{name}", g.admin))
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
    };
    let over = big_set::big_set(300, 50, 20);
    let response = put("over", over).await.unwrap();
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("over registry.memory_budget_mb = 16") && message.contains("over ~"), "{message}");

    // A set near the budget loads, and costs what the estimate says.
    let before = rss_kib(&g);
    let near = big_set::big_set(100, 50, 20);
    let estimate_kib = protogate::registry::cost::elements(&near) * protogate::registry::cost::BYTES_PER_ELEMENT / 1024;
    assert_eq!(put("near", near).await.unwrap().status(), 201);
    let grown = rss_kib(&g).saturating_sub(before);
    assert!(grown < estimate_kib * 2, "grew {grown} KiB for an estimate of {estimate_kib} KiB");
    let document = reqwest::get(format!("{}/openapi.json", g.public)).await.unwrap();
    assert_eq!(document.status(), 200);
    let document: Value = document.json().await.unwrap();
    assert!(document["components"]["schemas"]["big.v1.M99"].is_object());
    still_serves(&g).await;
}

#[tokio::test]
async fn the_openapi_document_of_a_long_chain_of_messages_is_written_without_recursion() {
    let (g, _dir) = hostile_gateway("").await;
    // M0 → M1 → … → M2999: the schema walk recursed once per link.
    let chain = big_set::big_set(3_000, 10, 1);
    let response = reqwest::Client::new()
        .put(format!("{}/v1/descriptor-sets/chain", g.admin))
        .header("content-type", "application/octet-stream")
        .body(chain)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let document: Value = reqwest::get(format!("{}/openapi.json", g.public)).await.unwrap().json().await.unwrap();
    assert!(document["components"]["schemas"]["big.v1.M2999"].is_object());
    still_serves(&g).await;
}

/// Connect deadlines (`Connect-Timeout-Ms`) bound the whole call, the
/// answer included, even when the backend ignores `grpc-timeout`: a unary
/// answer whose message never comes is 504 at the deadline, and a stream
/// still going at the deadline ends with deadline_exceeded.
#[tokio::test]
async fn connect_deadlines_bound_the_answer_not_only_its_headers() {
    let (g, _dir) = hostile_gateway("").await;
    let client = reqwest::Client::new();
    let started = std::time::Instant::now();
    let response = client
        .post(format!("{}/protogate.test.v1.EchoService/Echo", g.public))
        .header("content-type", "application/json")
        .header("connect-protocol-version", "1")
        .header("connect-timeout-ms", "300")
        .header("x-hostile", "stall-body")
        .body("{}")
        .send();
    let response = tokio::time::timeout(Duration::from_secs(10), response).await.expect("answered").unwrap();
    assert_eq!(response.status(), 504);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "deadline_exceeded", "{body}");
    assert!(started.elapsed() < Duration::from_secs(5));

    let mut envelope = vec![0, 0, 0, 0, 0];
    envelope[1..5].copy_from_slice(&2u32.to_be_bytes());
    envelope.extend_from_slice(b"{}");
    let response = client
        .post(format!("{}/protogate.test.v1.EchoService/EchoStream", g.public))
        .header("content-type", "application/connect+json")
        .header("connect-timeout-ms", "400")
        .header("x-hostile", "endless")
        .body(envelope)
        .send()
        .await
        .unwrap();
    let body = tokio::time::timeout(Duration::from_secs(10), response.bytes()).await.expect("the stream ends").unwrap();
    let (mut rest, mut messages) = (&body[..], 0);
    while rest.first() == Some(&0) {
        let len = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
        rest = &rest[5 + len..];
        messages += 1;
    }
    assert_eq!(rest[0], 2, "the end-of-stream flag");
    let end: Value = serde_json::from_slice(&rest[5..]).unwrap();
    assert_eq!(end["error"]["code"], "deadline_exceeded", "{end}");
    assert!(messages >= 1, "messages flowed until the deadline: {messages}");
    still_serves(&g).await;
}
