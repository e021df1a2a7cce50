//! Rate limits through the real listener: per-route GCRA quotas, keys by
//! IP (behind trusted proxies) and by consumer, headers, and the gRPC form.

mod common;

use common::Harness;

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_route_quota_refuses_the_burst_with_429_and_headers() {
    let toml = "[admin]\nlisten = \"127.0.0.1:0\"\n[rate_limit]\nkey = \"ip\"\ntrusted_proxies = 1\n\
                [[rate_limit.rules]]\nselector = \"/v1/{name=shelves/*}\"\nper_second = 1\nburst = 2";
    let h = Harness::start_with(toml).await;
    let get = |client: &'static str| {
        let request = h.client.get(h.url("/v1/shelves/1")).header("x-forwarded-for", client);
        async move { request.send().await.unwrap() }
    };
    let first = get("198.51.100.1").await;
    assert_eq!(first.status(), 200);
    assert_eq!(
        (
            first.headers()["ratelimit-limit"].to_str().unwrap(),
            first.headers()["ratelimit-remaining"].to_str().unwrap()
        ),
        ("2", "1")
    );
    assert_eq!(get("198.51.100.1").await.status(), 200);
    let refused = get("198.51.100.1").await;
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1, "{retry_after}");
    assert_eq!(refused.headers()["ratelimit-remaining"], "0");
    let (_, body) = common::read_json(refused).await;
    assert_eq!(body["code"], 8);

    assert_eq!(get("198.51.100.2").await.status(), 200, "another client behind the proxy has its own bucket");
    assert_eq!(h.get_json("/v1/shelves").await.0, 200, "routes without a rule are not limited");
    let metrics =
        h.client.get(format!("{}/metrics", h.admin.as_ref().unwrap())).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("protogate_rate_limited_total{rpc=\"library.v1.LibraryService.GetShelf\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn consumers_have_their_own_buckets_and_grpc_sees_resource_exhausted() {
    let toml = format!(
        "[auth.api_keys]\nkeys = [{{ consumer = \"a\", sha256 = \"{}\" }}, {{ consumer = \"b\", sha256 = \"{}\" }}]\n\
         [rate_limit]\nkey = \"consumer\"\nper_second = 1\nburst = 1",
        sha256_hex("key-a"),
        sha256_hex("key-b")
    );
    let h = Harness::start_with(&toml).await;
    let get = |key: &'static str| {
        let request = h.client.get(h.url("/v1/shelves/1")).header("x-api-key", key);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!((get("key-a").await, get("key-a").await), (200, 429));
    assert_eq!(get("key-b").await, 200, "consumer b is not slowed down by a");

    let channel = tonic::transport::Channel::from_shared(h.base.clone()).unwrap().connect().await.unwrap();
    let mut echo = protogate::pb::protogate::test::v1::echo_service_client::EchoServiceClient::new(channel);
    let call = || {
        let mut request = tonic::Request::new(protogate::pb::protogate::test::v1::Everything::default());
        request.metadata_mut().insert("x-api-key", "key-b".parse().unwrap());
        request
    };
    assert!(echo.echo(call()).await.is_ok(), "the default quota is per route: Echo has its own bucket");
    let status = echo.echo(call()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
}
