//! REST responses end to end: JSON options, response_body, HttpBody, server
//! streams, errors with details, metadata both ways, deadlines, channels.

mod common;

use std::time::Duration;

use common::Harness;
use futures_util::StreamExt;
use serde_json::json;

#[tokio::test]
async fn responses_use_the_canonical_json_mapping() {
    let h = Harness::start().await;
    let (status, body) = h.get_json("/v1/shelves/1/books/3").await;
    assert_eq!(status, 200);
    assert_eq!(body["copiesSold"], "9007199254740993", "64-bit integers are strings");
    assert_eq!(body["genre"], "GENRE_FICTION", "enums are names");
    assert_eq!(body["publishTime"], "1970-01-01T00:00:00Z");
    let (_, body) = h.post_json("/test/v1/echo", r#"{"fBytes": "AAE=", "fInt32": 0, "fString": ""}"#).await;
    assert_eq!(body, json!({"fBytes": "AAE="}), "default values are omitted");
}

#[tokio::test]
async fn json_output_options_are_configurable() {
    let toml = "[json]\nemit_defaults = true\nproto_field_names = true\nenums_as_numbers = true\nindent = true";
    let h = Harness::start_with(toml).await;
    let response = h
        .client
        .post(h.url("/test/v1/echo:nested"))
        .body(r#"{"fNested": {"name": "n", "color": "COLOR_BLUE"}}"#)
        .send()
        .await
        .unwrap();
    let text = response.text().await.unwrap();
    // Like protobuf's own printer, unset message fields stay out.
    assert_eq!(text, "{\n  \"name\": \"n\",\n  \"count\": 0,\n  \"color\": 3\n}");
    let (_, body) = h.post_json("/test/v1/echo", r#"{"fInt64": "0"}"#).await;
    assert_eq!(body["f_int64"], "0");
    assert_eq!(body["f_enum"], 0);
    assert_eq!(body["r_string"], json!([]));
}

#[tokio::test]
async fn response_body_selects_one_field() {
    let h = Harness::start().await;
    let (status, body) =
        h.post_json("/test/v1/echo:nested", r#"{"fNested": {"name": "n"}, "fString": "dropped"}"#).await;
    assert_eq!((status, body), (200, json!({"name": "n"})));
    let (status, body) = h.post_json("/test/v1/echo:tags", r#"{"rString": ["a", "b"]}"#).await;
    assert_eq!((status, body), (200, json!(["a", "b"])));
    let (status, body) = h.post_json("/test/v1/echo:tags", "{}").await;
    assert_eq!((status, body), (200, json!([])));
}

#[tokio::test]
async fn http_body_passes_raw_bytes_both_ways() {
    let h = Harness::start().await;
    let raw = vec![0u8, 159, 146, 150, 255];
    let response = h
        .client
        .post(h.url("/test/v1/body"))
        .header("content-type", "application/x-custom")
        .body(raw.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-custom");
    assert_eq!(response.bytes().await.unwrap().as_ref(), raw.as_slice());

    // The library stores an uploaded cover (body: "cover") and serves it back.
    let png = b"\x89PNG\r\n\x1a\nfake".to_vec();
    let upload = h
        .client
        .put(h.url("/v1/shelves/1/books/2/cover"))
        .header("content-type", "image/png")
        .body(png.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 200);
    let cover = h.client.get(h.url("/v1/shelves/1/books/2/cover")).send().await.unwrap();
    assert_eq!(cover.headers()["content-type"], "image/png");
    assert_eq!(cover.bytes().await.unwrap().as_ref(), png.as_slice());
    let text = h
        .client
        .put(h.url("/v1/shelves/1/books/2/cover"))
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await
        .unwrap();
    let (status, body) = common::read_json(text).await;
    assert_eq!((status, &body["details"][0]["fieldViolations"][0]["field"]), (400, &json!("cover")));
}

#[tokio::test]
async fn server_streams_are_ndjson_by_default_and_sse_on_request() {
    let h = Harness::start().await;
    let query = "/test/v1/stream?count=3&message.fInt32=7";
    let text = h.client.get(h.url(query)).send().await.unwrap();
    assert_eq!(text.headers()["content-type"], "application/x-ndjson");
    assert_eq!(text.text().await.unwrap(), "{\"fInt32\":7}\n{\"fInt32\":7}\n{\"fInt32\":7}\n");

    let sse = h.client.get(h.url(query)).header("accept", "text/event-stream").send().await.unwrap();
    assert_eq!(sse.headers()["content-type"], "text/event-stream");
    assert_eq!(sse.text().await.unwrap(), "data: {\"fInt32\":7}\n\n".repeat(3));

    let books = h.client.get(h.url("/v1/shelves/2/books:stream")).send().await.unwrap().text().await.unwrap();
    let titles: Vec<String> =
        books.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["title"].to_string()).collect();
    assert_eq!(titles, ["\"SPQR\""]);
}

#[tokio::test]
async fn a_stream_that_fails_after_starting_ends_with_an_error_record() {
    let h = Harness::start().await;
    let query = "/test/v1/stream?count=1&failCode=8&failMessage=quota";
    let ndjson = h.client.get(h.url(query)).send().await.unwrap();
    assert_eq!(ndjson.status(), 200);
    assert_eq!(ndjson.text().await.unwrap(), "{}\n{\"error\":{\"code\":8,\"message\":\"quota\",\"details\":[]}}\n");
    let sse = h.client.get(h.url(query)).header("accept", "text/event-stream").send().await.unwrap();
    assert_eq!(
        sse.text().await.unwrap(),
        "data: {}\n\nevent: error\ndata: {\"code\":8,\"message\":\"quota\",\"details\":[]}\n\n"
    );
    // Failing before the first message is an ordinary error response.
    let (status, body) = h.get_json("/test/v1/stream?count=0&failCode=5&failMessage=gone").await;
    assert_eq!(status, 200, "a stream that started cleanly has already sent 200");
    assert_eq!(body, json!({"error": {"code": 5, "message": "gone", "details": []}}));
    let (status, body) = h.get_json("/v1/shelves/404/books:stream").await;
    assert_eq!((status, &body["code"]), (404, &json!(5)));
}

#[tokio::test]
async fn streams_are_flushed_message_by_message() {
    let h = Harness::start().await;
    // The second message comes a minute later; the first must arrive alone.
    let response =
        h.client.get(h.url("/test/v1/stream?count=2&intervalMs=60000&message.fString=first")).send().await.unwrap();
    let mut body = response.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(20), body.next()).await.expect("first message was held back");
    assert_eq!(first.unwrap().unwrap().as_ref(), b"{\"fString\":\"first\"}\n");
}

#[tokio::test]
async fn backend_errors_keep_code_message_and_typed_details() {
    let h = Harness::start().await;
    let request = r#"{"code": 7, "message": "not yours", "reason": "OWNER", "badField": "x.y", "unknownDetail": true}"#;
    let (status, body) = h.post_json("/test/v1/fail", request).await;
    assert_eq!(status, 403);
    assert_eq!(
        body,
        json!({"code": 7, "message": "not yours", "details": [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "OWNER", "domain": "test"},
            {"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [{"field": "x.y", "description": "is wrong"}]},
            {"@type": "type.googleapis.com/acme.Secret", "value": "AQID"},
        ]})
    );
    let table = [
        (1, 499),
        (2, 500),
        (4, 504),
        (6, 409),
        (8, 429),
        (9, 400),
        (10, 409),
        (11, 400),
        (12, 501),
        (13, 500),
        (14, 503),
        (15, 500),
        (16, 401),
    ];
    for (code, http) in table {
        let (status, body) = h.post_json("/test/v1/fail", &format!(r#"{{"code": {code}, "message": "m"}}"#)).await;
        assert_eq!((status, body), (http, json!({"code": code, "message": "m", "details": []})), "code {code}");
    }
    let (status, body) = h.post_json("/v1/shelves", r#"{"name": "ignored"}"#).await;
    assert_eq!(status, 400);
    assert_eq!(body["details"][0]["fieldViolations"][0]["field"], "shelf_id");
}

#[tokio::test]
async fn deadlines_come_from_grpc_timeout_or_the_default() {
    let h = Harness::start_with("[upstream]\ntimeout = \"200ms\"").await;
    let slow = r#"{"code": 0, "delayMs": 3000}"#;
    let (status, body) = h.post_json("/test/v1/fail", slow).await;
    assert_eq!((status, body), (504, json!({"code": 4, "message": "deadline exceeded", "details": []})));

    let response = h
        .client
        .post(h.url("/test/v1/fail"))
        .header("grpc-timeout", "10S")
        .body(r#"{"code": 0, "delayMs": 400}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "the client's Grpc-Timeout replaces the default");
    let response =
        h.client.post(h.url("/test/v1/fail")).header("grpc-timeout", "soon").body("{}").send().await.unwrap();
    let (status, body) = common::read_json(response).await;
    assert_eq!(
        (status, body["message"].as_str().unwrap()),
        (400, "invalid Grpc-Timeout \"soon\"; expected digits and a unit such as 500m or 10S")
    );
}

#[tokio::test]
async fn metadata_flows_both_ways() {
    let h = Harness::start().await;
    let response = h
        .client
        .get(h.url("/test/v1/metadata"))
        .header("grpc-metadata-tenant", "acme")
        .header("grpc-metadata-echo-header-color", "blue")
        .header("grpc-metadata-echo-trailer-checksum", "abc")
        .header("grpc-metadata-blob-bin", "AQID")
        .header("authorization", "Bearer token-1")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-not-forwarded", "secret")
        .header("x-request-id", "trace-me")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["grpc-metadata-color"], "blue");
    assert_eq!(response.headers()["grpc-trailer-checksum"], "abc");
    let (_, body) = common::read_json(response).await;
    let entries = &body["entries"];
    assert_eq!(entries["tenant"], "acme");
    assert_eq!(entries["blob-bin"], "AQID");
    assert_eq!(entries["authorization"], "Bearer token-1");
    assert_eq!(entries["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(entries["x-forwarded-host"], h.base.trim_start_matches("http://"));
    assert!(entries.get("x-not-forwarded").is_none());
    assert_eq!(entries["x-request-id"], "trace-me", "the request id reaches the backend");
    assert!(entries.get("grpc-metadata-tenant").is_none());
}

#[tokio::test]
async fn one_shared_channel_carries_concurrent_calls() {
    let h = Harness::start().await;
    let bodies: Vec<String> = (0..32).map(|i| format!(r#"{{"fInt32": {i}}}"#)).collect();
    let calls = bodies.iter().map(|body| h.post_json("/test/v1/echo", body));
    for (status, _) in futures_util::future::join_all(calls).await {
        assert_eq!(status, 200);
    }
    assert_eq!(h.calls(), 32);
    let connections = h.echo_connections.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(connections, 1, "calls must be multiplexed over one HTTP/2 connection");
}

#[tokio::test]
async fn an_unreachable_backend_is_503_without_internal_detail() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let flags = protogate::config::Flags {
        listen: Some("127.0.0.1:0".into()),
        descriptors: Vec::new(),
        upstreams: vec![format!("http://{addr}")],
        admin_listen: Some("127.0.0.1:0".into()),
        ..Default::default()
    };
    let config = protogate::config::Config::from_toml("", &flags).unwrap();
    let sets = vec![("library".to_string(), protogate::pb::LIBRARY_DESCRIPTOR_SET.to_vec())];
    let server = protogate::server::start_with_sets(&config, sets).await.unwrap();
    let response = reqwest::get(format!("http://{}/v1/shelves", server.local_addr)).await.unwrap();
    let (status, body) = common::read_json(response).await;
    assert_eq!((status, body), (503, json!({"code": 14, "message": "upstream unavailable", "details": []})));
    // The same failure over Connect and native gRPC is counted as well.
    let connect = reqwest::Client::new()
        .post(format!("http://{}/library.v1.LibraryService/ListShelves", server.local_addr))
        .header("content-type", "application/json")
        .header("connect-protocol-version", "1")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(connect.status(), 503);
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{}", server.local_addr)).unwrap().connect_lazy();
    let mut library = protogate::pb::library::v1::library_service_client::LibraryServiceClient::new(channel);
    let grpc = library.list_shelves(protogate::pb::library::v1::ListShelvesRequest::default()).await.unwrap_err();
    assert_eq!((grpc.code(), grpc.message()), (tonic::Code::Unavailable, "upstream unavailable"));
    let metrics =
        reqwest::get(format!("http://{}/metrics", server.admin_addr.unwrap())).await.unwrap().text().await.unwrap();
    let line = format!("protogate_upstream_errors_total{{upstream=\"http://{addr}\"}} 3");
    assert!(metrics.contains(&line), "{metrics}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn messages_over_the_upstream_size_limit_are_refused_both_ways() {
    let h = Harness::start_with("[upstream]\nmax_message_size = 64").await;
    let (status, body) = h.post_json("/test/v1/echo", &format!(r#"{{"fString": "{}"}}"#, "x".repeat(100))).await;
    assert_eq!((status, body["code"].as_i64()), (429, Some(8)), "{body}");
    assert_eq!(h.calls(), 0, "too large to send: the backend never saw it");
    // Small enough to send, too large to accept back: the stream repeats it.
    let (status, body) = h.get_json(&format!("/test/v1/stream?count=1&message.fString={}", "y".repeat(50))).await;
    assert_eq!(status, 200, "a stream has started before the message arrives: {body}");
    let small = format!(r#"{{"fString": "{}", "fInt64": "1"}}"#, "z".repeat(50));
    assert_eq!(h.post_json("/test/v1/echo", &small).await.0, 200, "a message under the limit passes");
    // A small request with a large answer: the book list.
    let (status, body) = h.get_json("/v1/shelves/1/books").await;
    assert_eq!(
        (status, body["message"].as_str()),
        (429, Some("the backend's answer is over upstream.max_message_size"))
    );
}
