//! What browsers need: CORS (preflights and exposed headers), stream formats
//! chosen by Accept, client streams from request bodies, and WebSocket.

mod common;

use common::Harness;

const CORS: &str = "[cors]\nallowed_origins = [\"https://app.example.com\", \"http://localhost:*\"]\nexposed_headers = [\"grpc-metadata-colour\"]\nmax_age = \"1h\"";

#[tokio::test]
async fn preflights_and_responses_carry_cors_headers_for_allowed_origins_only() {
    let h = Harness::start_with(CORS).await;
    let preflight = h
        .client
        .request(reqwest::Method::OPTIONS, h.url("/protogate.test.v1.EchoService/Echo"))
        .header("origin", "http://localhost:5173")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type,x-grpc-web,connect-protocol-version,grpc-timeout")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 200);
    let headers = preflight.headers();
    assert_eq!(headers["access-control-allow-origin"], "http://localhost:5173");
    assert_eq!(headers["access-control-max-age"], "3600");
    let allowed = headers["access-control-allow-headers"].to_str().unwrap();
    for header in ["x-grpc-web", "connect-protocol-version", "grpc-timeout", "x-user-agent"] {
        assert!(allowed.contains(header), "{allowed}");
    }
    assert_eq!(h.calls(), 0, "a preflight never reaches the backend");

    let response =
        h.client.get(h.url("/v1/shelves/1")).header("origin", "https://app.example.com").send().await.unwrap();
    assert_eq!(response.headers()["access-control-allow-origin"], "https://app.example.com");
    let exposed = response.headers()["access-control-expose-headers"].to_str().unwrap();
    assert!(exposed.contains("grpc-status") && exposed.contains("grpc-metadata-colour"), "{exposed}");

    let foreign =
        h.client.get(h.url("/v1/shelves/1")).header("origin", "https://evil.example.org").send().await.unwrap();
    assert!(foreign.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn without_cors_configuration_no_cors_headers_are_sent() {
    let h = Harness::start().await;
    let response =
        h.client.get(h.url("/v1/shelves/1")).header("origin", "https://app.example.com").send().await.unwrap();
    assert!(response.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn server_streams_can_be_one_json_array() {
    let h = Harness::start().await;
    let query = "/test/v1/stream?count=2&message.fInt32=7";
    let array = h.client.get(h.url(query)).header("accept", "application/json").send().await.unwrap();
    assert_eq!(array.headers()["content-type"], "application/json");
    let body: serde_json::Value = array.json().await.unwrap();
    assert_eq!(body, serde_json::json!([{"fInt32": 7}, {"fInt32": 7}]));

    let empty =
        h.client.get(h.url("/test/v1/stream?count=0")).header("accept", "application/json").send().await.unwrap();
    assert_eq!(empty.text().await.unwrap(), "[]");
    let failed = h
        .client
        .get(h.url("/test/v1/stream?count=1&failCode=5&failMessage=x"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = failed.json().await.unwrap();
    assert_eq!(body, serde_json::json!([{}, {"error": {"code": 5, "message": "x", "details": []}}]));
}

#[tokio::test]
async fn idle_sse_streams_get_keep_alive_comments() {
    let h = Harness::start_with("[streaming]\nsse_keepalive = \"50ms\"").await;
    let response = h
        .client
        .get(h.url("/test/v1/stream?count=2&intervalMs=400&message.fString=a"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let text = response.text().await.unwrap();
    assert!(text.starts_with("data: {\"fString\":\"a\"}\n\n"), "{text}");
    assert!(text.contains(": keep-alive\n\n"), "{text}");
    assert!(text.ends_with("data: {\"fString\":\"a\"}\n\n"), "{text}");
}

#[tokio::test]
async fn client_streams_read_ndjson_or_json_array_bodies() {
    let h = Harness::start().await;
    let ndjson = "{\"fString\":\"a\"}\n\n{\"fString\":\"b\"}\n{\"fString\":\"c\"}";
    let response = h
        .client
        .post(h.url("/test/v1/collect"))
        .header("content-type", "application/x-ndjson")
        .body(ndjson)
        .send()
        .await
        .unwrap();
    let (status, body) = common::read_json(response).await;
    assert_eq!((status, &body["rString"]), (200, &serde_json::json!(["a", "b", "c"])));

    let (status, body) = h.post_json("/test/v1/collect", r#"[{"fString": "x"}, {"fString": "y", "fInt32": 2}]"#).await;
    assert_eq!(
        (status, &body["rString"], &body["fInt32"]),
        (200, &serde_json::json!(["x", "y"]), &serde_json::json!(2))
    );

    // A bad element is a 400 naming it; the upstream call is cancelled.
    let bad = "{\"fString\":\"a\"}\n{\"fInt32\":\"many\"}\n";
    let response = h
        .client
        .post(h.url("/test/v1/collect"))
        .header("content-type", "application/x-ndjson")
        .body(bad)
        .send()
        .await
        .unwrap();
    let (status, body) = common::read_json(response).await;
    assert_eq!(
        (status, body["message"].as_str().unwrap()),
        (
            400,
            "stream message 2: invalid JSON body: field \"fInt32\": invalid digit found in string at line 1 column 16"
        )
    );
    // With application/json also JSON objects one after another, as
    // grpc-gateway clients send them, and an empty body: zero messages.
    let (status, body) = h.post_json("/test/v1/collect", "{\"fString\": \"p\"} {\"fString\": \"q\"}\n").await;
    assert_eq!((status, &body["rString"]), (200, &serde_json::json!(["p", "q"])), "{body}");
    let (status, body) = h.post_json("/test/v1/collect", "").await;
    assert_eq!((status, body.get("rString")), (200, None), "{body}");
    let (status, body) = h.post_json("/test/v1/collect", "\"not a message\"").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(h.get_json("/v1/shelves/1").await.0, 200);
}

#[tokio::test]
async fn bidi_streams_over_rest_stream_both_ways() {
    let h = Harness::start().await;
    // An NDJSON body arriving piece by piece; replies come as NDJSON.
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(receiver));
    let request = h
        .client
        .post(h.url("/protogate.test.v1.EchoService/Chat"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send();
    let pending = tokio::spawn(request);
    sender.send(Ok("{\"fString\":\"one\"}\n".into())).await.unwrap();
    let response = pending.await.unwrap().unwrap();
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let mut replies = response.bytes_stream();
    use futures_util::StreamExt;
    let first = replies.next().await.unwrap().unwrap();
    assert_eq!(first.as_ref(), b"{\"fString\":\"one\"}\n", "the reply arrives before the request body ends");
    sender.send(Ok("{\"fString\":\"two\",\"fInt32\":9}\n".into())).await.unwrap();
    drop(sender);
    let mut rest = Vec::new();
    while let Some(chunk) = replies.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(String::from_utf8(rest).unwrap(), "{\"error\":{\"code\":9,\"message\":\"two\",\"details\":[]}}\n");
}

mod websocket {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    use super::common::Harness;

    type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

    async fn open(h: &Harness, path: &str) -> Socket {
        let url = format!("{}{path}", h.base.replace("http://", "ws://"));
        tokio_tungstenite::connect_async(url).await.unwrap().0
    }

    /// Text frames until the close frame: (texts, close code, reason).
    async fn drain(socket: &mut Socket) -> (Vec<String>, u16, String) {
        let mut texts = Vec::new();
        while let Some(message) = socket.next().await {
            match message.unwrap() {
                Message::Text(text) => texts.push(text.to_string()),
                Message::Close(Some(frame)) => {
                    return (texts, u16::from(frame.code), frame.reason.to_string());
                }
                Message::Close(None) => return (texts, 1005, String::new()),
                _ => {}
            }
        }
        panic!("the socket ended without a close frame");
    }

    #[tokio::test]
    async fn bidi_streams_run_full_duplex_and_close_with_the_status() {
        let h = Harness::start().await;
        let mut socket = open(&h, "/test/v1/chat").await;
        socket.send(Message::text(r#"{"fString": "hi"}"#)).await.unwrap();
        let reply = socket.next().await.unwrap().unwrap();
        assert_eq!(reply, Message::text(r#"{"fString":"hi"}"#), "a reply before the next message");
        socket.send(Message::text(r#"{"fString": "again"}"#)).await.unwrap();
        socket.send(Message::text("")).await.unwrap();
        let (texts, code, reason) = drain(&mut socket).await;
        assert_eq!((texts, code, reason.as_str()), (vec![r#"{"fString":"again"}"#.to_string()], 1000, "OK"));

        let mut socket = open(&h, "/protogate.test.v1.EchoService/Chat").await;
        socket.send(Message::text(r#"{"fString": "gone", "fInt32": 5}"#)).await.unwrap();
        let (texts, code, reason) = drain(&mut socket).await;
        assert_eq!((texts.len(), code, reason.as_str()), (0, 4005, "gone"));
    }

    #[tokio::test]
    async fn server_and_client_streams_work_over_websocket() {
        let h = Harness::start().await;
        let mut socket = open(&h, "/v1/shelves/1/books:stream").await;
        socket.send(Message::text("{}")).await.unwrap();
        let (texts, code, _) = drain(&mut socket).await;
        assert_eq!((texts.len(), code), (3, 1000));
        assert!(texts[0].contains("\"name\":\"shelves/1/books/1\""), "{texts:?}");

        let mut socket = open(&h, "/protogate.test.v1.EchoService/Collect").await;
        for name in ["a", "b"] {
            socket.send(Message::text(format!(r#"{{"fString": "{name}"}}"#))).await.unwrap();
        }
        socket.send(Message::text("")).await.unwrap();
        let (texts, code, _) = drain(&mut socket).await;
        assert_eq!((code, texts.len()), (1000, 1));
        assert!(texts[0].contains(r#""rString":["a","b"]"#), "{texts:?}");
    }

    #[tokio::test]
    async fn bad_frames_close_with_invalid_argument_and_unary_methods_are_refused() {
        let h = Harness::start().await;
        let mut socket = open(&h, "/test/v1/chat").await;
        socket.send(Message::text(r#"{"fInt32": "lots"}"#)).await.unwrap();
        let (_, code, reason) = drain(&mut socket).await;
        assert_eq!(code, 4003);
        assert!(reason.contains("fInt32"), "{reason}");

        let mut socket = open(&h, "/test/v1/chat").await;
        socket.send(Message::binary(vec![1, 2, 3])).await.unwrap();
        let (_, code, reason) = drain(&mut socket).await;
        assert_eq!((code, reason.as_str()), (4003, "send JSON messages as text frames"));

        // A client that vanishes mid-stream: the gateway keeps serving.
        let mut socket = open(&h, "/test/v1/chat").await;
        socket.send(Message::text("{}")).await.unwrap();
        drop(socket);
        assert_eq!(h.get_json("/v1/shelves/1").await.0, 200);

        let url = format!("{}/v1/shelves/1", h.base.replace("http://", "ws://"));
        let refused = tokio_tungstenite::connect_async(url).await.unwrap_err();
        match refused {
            tokio_tungstenite::tungstenite::Error::Http(response) => {
                assert_eq!(response.status(), 400)
            }
            other => panic!("{other}"),
        }
    }

    #[tokio::test]
    async fn cross_site_upgrades_are_refused_unless_the_origin_is_allowed() {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let h = Harness::start_with(super::CORS).await;
        let attempt = |origin: &str| {
            let url = format!("{}/test/v1/chat", h.base.replace("http://", "ws://"));
            let mut request = url.into_client_request().unwrap();
            request.headers_mut().insert("origin", origin.parse().unwrap());
            tokio_tungstenite::connect_async(request)
        };
        match attempt("https://evil.example.org").await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 403)
            }
            other => panic!("expected 403, got {:?}", other.map(|_| ())),
        }
        assert!(attempt("https://app.example.com").await.is_ok(), "an allowed origin");
        assert!(attempt(&h.base).await.is_ok(), "the gateway's own origin");
    }
}

#[tokio::test]
async fn routes_have_their_own_deadlines_and_stream_idle_and_lifetime_limits() {
    let toml = "[timeouts]\nstream_lifetime = \"400ms\"\n\
                [[timeouts.rules]]\nselector = \"protogate.test.v1.EchoService.EchoStream\"\nstream_idle = \"200ms\"\nstream_lifetime = \"1h\"\n\
                [[timeouts.rules]]\nselector = \"/test/v1/fail\"\nunary = \"100ms\"";
    let h = Harness::start_with(toml).await;
    let idle = h.client.get(h.url("/test/v1/stream?count=2&intervalMs=5000&message.fInt32=1")).send().await.unwrap();
    let text = idle.text().await.unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0], serde_json::json!({"fInt32": 1}));
    assert_eq!(lines[1]["error"]["code"], 4, "{text}");
    assert_eq!(lines[1]["error"]["message"], "no message within the stream's idle timeout");

    // The default lifetime applies to streams without a rule of their own:
    // a chat whose client never finishes is ended after 400 ms.
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(1);
    sender.send(Ok("{\"fString\":\"hello\"}\n".into())).await.unwrap();
    let body = reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(receiver));
    let chat = h
        .client
        .post(h.url("/protogate.test.v1.EchoService/Chat"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    let text = chat.text().await.unwrap();
    assert!(text.starts_with("{\"fString\":\"hello\"}\n{\"error\":{\"code\":4"), "{text}");
    drop(sender);

    let (status, body) = h.post_json("/test/v1/fail", r#"{"delayMs": 1000}"#).await;
    assert_eq!((status, body["code"].as_i64()), (504, Some(4)), "the route's unary deadline");
    let (status, _) = h.post_json("/test/v1/echo", "{}").await;
    assert_eq!(status, 200);
}
