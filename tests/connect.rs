//! The Connect protocol end to end — unary POST (JSON and binary), unary
//! GET, server streaming with envelopes, Connect errors, timeouts, metadata —
//! and `buf curl` (a real client) over Connect, gRPC and gRPC-Web.

mod common;

use std::path::PathBuf;

use base64::Engine;
use common::Harness;
use prost::Message;
use protogate::pb::library::v1::{Book, GetBookRequest};
use serde_json::{Value, json};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

async fn connect_json(h: &Harness, path: &str, body: &str) -> (u16, Value, reqwest::header::HeaderMap) {
    let response = h
        .client
        .post(h.url(path))
        .header("content-type", "application/json")
        .header("connect-protocol-version", "1")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let headers = response.headers().clone();
    let (status, json) = common::read_json(response).await;
    (status, json, headers)
}

#[tokio::test]
async fn unary_json_and_proto_and_get() {
    let h = Harness::start().await;
    let (status, body, _) =
        connect_json(&h, "/library.v1.LibraryService/GetBook", r#"{"name": "shelves/1/books/3"}"#).await;
    assert_eq!((status, &body["copiesSold"]), (200, &json!("9007199254740993")));

    let request = GetBookRequest { name: "shelves/2/books/1".into() }.encode_to_vec();
    let response = h
        .client
        .post(h.url("/library.v1.LibraryService/GetBook"))
        .header("content-type", "application/proto")
        .header("connect-protocol-version", "1")
        .body(request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "application/proto");
    let book = Book::decode(response.bytes().await.unwrap()).unwrap();
    assert_eq!(book.title, "SPQR");

    let message = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"name":"shelves/1"}"#);
    let url =
        h.url(&format!("/library.v1.LibraryService/GetShelf?connect=v1&encoding=json&base64=1&message={message}"));
    let (status, body) = common::read_json(h.client.get(url).send().await.unwrap()).await;
    assert_eq!((status, &body["theme"]), (200, &json!("Fiction")));
    let plain = h.url(
        "/library.v1.LibraryService/GetShelf?connect=v1&encoding=json&message=%7B%22name%22%3A%22shelves%2F2%22%7D",
    );
    let (status, body) = common::read_json(h.client.get(plain).send().await.unwrap()).await;
    assert_eq!((status, &body["theme"]), (200, &json!("History")));

    let side_effects = h.url("/library.v1.LibraryService/DeleteShelf?connect=v1&encoding=json&message=%7B%7D");
    let response = h.client.get(side_effects).send().await.unwrap();
    assert_eq!((response.status().as_u16(), response.headers()["allow"].to_str().unwrap()), (405, "POST"));
}

#[tokio::test]
async fn errors_use_connect_codes_statuses_and_details() {
    let h = Harness::start().await;
    let (status, body, _) = connect_json(&h, "/library.v1.LibraryService/GetShelf", r#"{"name": "shelves/9"}"#).await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "not_found");
    assert_eq!(body["message"], "shelves/9 not found");
    assert_eq!(body["details"][0]["type"], "google.rpc.ResourceInfo");
    assert_eq!(body["details"][0]["debug"]["resourceName"], "shelves/9");
    assert!(body["details"][0]["value"].as_str().is_some_and(|v| !v.ends_with('=')));

    let cases = [
        (r#"{"nope": 1}"#, "/library.v1.LibraryService/GetShelf", 400, "invalid_argument"),
        ("{}", "/nowhere.v1.S/M", 501, "unimplemented"),
        (r#"{"code": 1, "message": "m"}"#, "/protogate.test.v1.EchoService/Fail", 499, "canceled"),
        (r#"{"code": 16, "message": "m"}"#, "/protogate.test.v1.EchoService/Fail", 401, "unauthenticated"),
        ("{}", "/protogate.test.v1.EchoService/Collect", 501, "unimplemented"),
    ];
    for (request, path, http, code) in cases {
        let (status, body, _) = connect_json(&h, path, request).await;
        assert_eq!((status, body["code"].as_str().unwrap()), (http, code), "{path} {request}: {body}");
    }

    // An encoding the gateway does not speak: UNIMPLEMENTED naming those it
    // does, in Accept-Encoding too (the Connect protocol's answer).
    let compressed = h
        .client
        .post(h.url("/library.v1.LibraryService/GetShelf"))
        .header("content-type", "application/json")
        .header("connect-protocol-version", "1")
        .header("content-encoding", "compress")
        .body("{}")
        .send()
        .await
        .unwrap();
    let accepted = compressed.headers().get("accept-encoding").cloned();
    let (status, body) = common::read_json(compressed).await;
    assert_eq!((status, body["code"].as_str().unwrap()), (501, "unimplemented"), "{body}");
    assert_eq!(accepted.unwrap(), "gzip, br, zstd");

    let slow = h
        .client
        .post(h.url("/protogate.test.v1.EchoService/Fail"))
        .header("content-type", "application/json")
        .header("connect-protocol-version", "1")
        .header("connect-timeout-ms", "100")
        .body(r#"{"delayMs": 3000}"#)
        .send()
        .await
        .unwrap();
    let (status, body) = common::read_json(slow).await;
    assert_eq!((status, body["code"].as_str().unwrap()), (504, "deadline_exceeded"));
}

#[tokio::test]
async fn headers_are_metadata_both_ways() {
    let h = Harness::start().await;
    let response = h
        .client
        .post(h.url("/protogate.test.v1.EchoService/EchoMetadata"))
        .header("content-type", "application/json")
        .header("connect-protocol-version", "1")
        .header("tenant", "acme")
        .header("echo-header-colour", "red")
        .header("echo-trailer-sum", "42")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["colour"], "red");
    assert_eq!(response.headers()["trailer-sum"], "42");
    let (_, body) = common::read_json(response).await;
    assert_eq!(body["entries"]["tenant"], "acme");
    assert!(body["entries"].get("connect-protocol-version").is_none());
}

fn envelope(flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![flags];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn envelopes(mut body: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while body.len() >= 5 {
        let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        out.push((body[0], body[5..5 + len].to_vec()));
        body = &body[5 + len..];
    }
    out
}

async fn stream(h: &Harness, path: &str, payload: Vec<u8>) -> Vec<(u8, Vec<u8>)> {
    let response = h
        .client
        .post(h.url(path))
        .header("content-type", "application/connect+json")
        .body(payload)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/connect+json");
    envelopes(&response.bytes().await.unwrap())
}

#[tokio::test]
async fn server_streams_are_enveloped_and_end_with_status() {
    let h = Harness::start().await;
    let request = br#"{"message": {"fString": "x"}, "count": 2, "failCode": 5, "failMessage": "gone"}"#;
    let frames = stream(&h, "/protogate.test.v1.EchoService/EchoStream", envelope(0, request)).await;
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[0], (0, br#"{"fString":"x"}"#.to_vec()));
    let end: Value = serde_json::from_slice(&frames[2].1).unwrap();
    assert_eq!((frames[2].0, end["error"]["code"].as_str()), (2, Some("not_found")));

    let frames = stream(&h, "/library.v1.LibraryService/StreamBooks", envelope(0, br#"{"parent": "shelves/1"}"#)).await;
    assert_eq!(frames.len(), 4);
    assert_eq!(frames[3], (2, b"{}".to_vec()), "a clean end carries no error");

    let truncated = stream(&h, "/library.v1.LibraryService/StreamBooks", vec![0, 0, 0, 0, 99, b'{']).await;
    let end: Value = serde_json::from_slice(&truncated[0].1).unwrap();
    assert_eq!((truncated[0].0, end["error"]["code"].as_str()), (2, Some("invalid_argument")), "{end}");
    assert_eq!(h.get_json("/v1/shelves/1").await.0, 200, "the gateway keeps serving");
}

#[tokio::test]
async fn client_streams_end_with_the_first_bad_message_named() {
    let h = Harness::start().await;
    let collect = "/protogate.test.v1.EchoService/Collect";
    let end_error = |frames: &[(u8, Vec<u8>)]| {
        let (flags, last) = frames.last().unwrap();
        assert_eq!(*flags, 2, "the last frame ends the stream");
        let end: Value = serde_json::from_slice(last).unwrap();
        (
            end["error"]["code"].as_str().unwrap_or("").to_string(),
            end["error"]["message"].as_str().unwrap_or("").to_string(),
        )
    };
    let good = envelope(0, br#"{"fString": "a"}"#);
    let frames = stream(&h, collect, [good.clone(), envelope(0, br#"{"fString": "b"}"#)].concat()).await;
    assert_eq!(frames.len(), 2);
    let reply: Value = serde_json::from_slice(&frames[0].1).unwrap();
    assert_eq!(reply["rString"], serde_json::json!(["a", "b"]));
    assert_eq!(end_error(&frames).0, "");

    let cases: [(Vec<u8>, &str, &str); 4] = [
        ([good.clone(), envelope(0, br#"{"nope": 1}"#)].concat(), "invalid_argument", "stream message 2: "),
        ([good.clone(), vec![0, 0, 0, 0, 9, b'{']].concat(), "invalid_argument", "truncated envelope"),
        ([good.clone(), vec![2, 0, 0, 0, 0]].concat(), "invalid_argument", "unknown envelope flags 0x02"),
        (vec![0, 0x7f, 0, 0, 0], "resource_exhausted", "the request message is 2130706432 bytes"),
    ];
    for (body, code, message) in cases {
        let frames = stream(&h, collect, body).await;
        let (got_code, got_message) = end_error(&frames);
        assert_eq!(got_code, code, "{got_message}");
        assert!(got_message.starts_with(message), "{got_message}");
    }
    // A client stream sent as a unary request.
    let (status, body, _) = connect_json(&h, collect, "{}").await;
    assert_eq!((status, body["code"].as_str()), (501, Some("unimplemented")), "{body}");
    assert_eq!(h.get_json("/v1/shelves/1").await.0, 200, "the gateway keeps serving");
}

/// `buf` from the npm package @bufbuild/buf (installed by .ci/run), or
/// `None` with a printed skip outside CI.
fn buf() -> Option<PathBuf> {
    let local = PathBuf::from(ROOT).join(".ci/tools/node_modules/.bin/buf");
    if local.exists() {
        return Some(local);
    }
    if std::process::Command::new("buf").arg("--version").output().is_ok() {
        return Some(PathBuf::from("buf"));
    }
    common::skip("buf", "npm install --prefix .ci/tools @bufbuild/buf@1");
    None
}

async fn buf_curl(buf: &PathBuf, protocol: &str, url: &str, data: &str) -> String {
    let output = tokio::process::Command::new(buf)
        .args(["curl", "--schema", &format!("{ROOT}/descriptors/library.binpb"), "--protocol", protocol])
        .args(if protocol == "grpc" { vec!["--http2-prior-knowledge"] } else { vec![] })
        .args(["-d", data, url])
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "buf curl --protocol {protocol}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn buf_curl_reaches_the_demo_over_connect_grpc_and_grpc_web() {
    let Some(buf) = buf() else { return };
    let h = Harness::start().await;
    let get_book = h.url("/library.v1.LibraryService/GetBook");
    let stream_books = h.url("/library.v1.LibraryService/StreamBooks");
    for protocol in ["connect", "grpc", "grpcweb"] {
        let out = buf_curl(&buf, protocol, &get_book, r#"{"name": "shelves/1/books/2"}"#).await;
        let book: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{protocol}: {e}: {out}"));
        assert_eq!(book["title"], "A Wizard of Earthsea", "{protocol}");
        let out = buf_curl(&buf, protocol, &stream_books, r#"{"parent": "shelves/1"}"#).await;
        assert_eq!(out.matches("\"title\"").count(), 3, "{protocol}: {out}");
    }
}

#[tokio::test]
async fn oversized_connect_messages_are_refused() {
    let h = Harness::start_with("[limits]\nmax_body_size = 64").await;
    let big = format!(r#"{{"name": "{}"}}"#, "x".repeat(200));
    let (status, body, _) = connect_json(&h, "/library.v1.LibraryService/GetBook", &big).await;
    assert_eq!((status, body["code"].as_str().unwrap()), (413, "resource_exhausted"));
    let frames = stream(&h, "/library.v1.LibraryService/StreamBooks", envelope(0, big.as_bytes())).await;
    let end: Value = serde_json::from_slice(&frames[0].1).unwrap();
    assert_eq!((frames[0].0, end["error"]["code"].as_str()), (2, Some("resource_exhausted")));
}
