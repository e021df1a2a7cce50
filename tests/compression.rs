//! Compression on the public listener: REST and Connect unary answers per
//! `Accept-Encoding` (curl `--compressed` as the real client), streams
//! flushed message by message, compressed request bodies, a zip bomb that
//! stops at the body limit, gRPC-Web left alone, and Connect's own message
//! compression (envelopes, `Connect-Accept-Encoding`).

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::Harness;
use serde_json::{Value, json};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).unwrap();
    out
}

fn big_message() -> Value {
    json!({"fString": "protogate ".repeat(2000)})
}

async fn echo(h: &Harness, accept_encoding: &str) -> reqwest::Response {
    let request = h.client.post(h.url("/test/v1/echo")).header("content-type", "application/json");
    let request = if accept_encoding.is_empty() { request } else { request.header("accept-encoding", accept_encoding) };
    request.body(big_message().to_string()).send().await.unwrap()
}

#[tokio::test]
async fn rest_answers_are_compressed_per_accept_encoding_above_the_minimum_size() {
    let h = Harness::start().await;
    let plain = echo(&h, "").await;
    assert!(plain.headers().get("content-encoding").is_none());
    let plain = plain.bytes().await.unwrap();

    let gzipped = echo(&h, "gzip").await;
    assert_eq!(gzipped.status(), 200);
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    assert!(gzipped.headers()["vary"].to_str().unwrap().to_ascii_lowercase().contains("accept-encoding"));
    let compressed = gzipped.bytes().await.unwrap();
    assert!(compressed.len() * 10 < plain.len(), "{} of {} bytes", compressed.len(), plain.len());
    assert_eq!(gunzip(&compressed), plain);

    let response = echo(&h, "zstd").await;
    assert_eq!(response.headers()["content-encoding"], "zstd");
    // br is opt-in (its CPU cost); clients that list it get gzip or zstd.
    let response = echo(&h, "gzip, deflate, br").await;
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let with_br = Harness::start_with("[compression]\nalgorithms = [\"gzip\", \"br\"]").await;
    assert_eq!(echo(&with_br, "gzip, br").await.headers()["content-encoding"], "br");
    // Small answers go as they are.
    let small = h.client.get(h.url("/v1/shelves/1")).header("accept-encoding", "gzip").send().await.unwrap();
    assert!(small.headers().get("content-encoding").is_none(), "{:?}", small.headers());

    let off = Harness::start_with("[compression]\nresponses = false").await;
    assert!(echo(&off, "gzip").await.headers().get("content-encoding").is_none());
}

#[tokio::test]
async fn curl_compressed_gets_the_same_json_in_fewer_bytes() {
    let h = Harness::start().await;
    let curl = |compressed: bool| {
        let mut command = tokio::process::Command::new("curl");
        command.args(["-sS", "-H", "content-type: application/json", "-d", &big_message().to_string()]);
        command.args(["-w", "\n%{size_download}"]);
        if compressed {
            command.arg("--compressed");
        }
        command.arg(h.url("/test/v1/echo"));
        async move {
            let output = command.output().await.expect("curl runs");
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
            let text = String::from_utf8(output.stdout).unwrap();
            let (body, size) = text.rsplit_once('\n').unwrap();
            (serde_json::from_str::<Value>(body).unwrap(), size.parse::<usize>().unwrap())
        }
    };
    let (plain, plain_size) = curl(false).await;
    let (compressed, compressed_size) = curl(true).await;
    assert_eq!(plain, compressed);
    assert_eq!(plain["fString"], big_message()["fString"]);
    assert!(compressed_size * 10 < plain_size, "{compressed_size} of {plain_size} bytes on the wire");
}

#[tokio::test]
async fn a_compressed_stream_still_sends_each_message_when_it_comes() {
    let h = Harness::start().await;
    // Two large messages ten seconds apart: the first must arrive, whole and
    // decodable, long before the second is sent.
    let query = format!("count=2&intervalMs=10000&message.fString={}", "x".repeat(4000));
    for accept in ["application/x-ndjson", "text/event-stream"] {
        let mut response = h
            .client
            .get(h.url(&format!("/test/v1/stream?{query}")))
            .header("accept", accept)
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["content-encoding"], "gzip", "{accept}");
        let mut decoder = flate2::write::GzDecoder::new(Vec::new());
        let first = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let chunk = response.chunk().await.unwrap().expect("the stream goes on");
                decoder.write_all(&chunk).unwrap();
                decoder.flush().unwrap();
                let text = String::from_utf8_lossy(decoder.get_ref()).to_string();
                if text.contains("xxxx") && text.contains('\n') {
                    return text;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{accept}: the first message was held back in the compressor"));
        assert!(first.contains(&"x".repeat(4000)), "{accept}: {first}");
    }
}

#[tokio::test]
async fn compressed_request_bodies_are_read_and_a_zip_bomb_stops_at_the_body_limit() {
    let h = Harness::start_with("[limits]\nmax_body_size = 1048576").await;
    let body = json!({"fString": "compressed on the way in"}).to_string();
    let response = h
        .client
        .post(h.url("/test/v1/echo"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gzip(body.as_bytes()))
        .send()
        .await
        .unwrap();
    let (status, answer) = common::read_json(response).await;
    assert_eq!((status, &answer["fString"]), (200, &json!("compressed on the way in")), "{answer}");

    // 32 MiB of spaces in a 32 KB gzip body: decompressed only up to the limit.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let spaces = vec![b' '; 1 << 20];
    for _ in 0..32 {
        encoder.write_all(&spaces).unwrap();
    }
    let bomb = encoder.finish().unwrap();
    assert!(bomb.len() < 1 << 20);
    for path in ["/test/v1/echo", "/protogate.test.v1.EchoService/Echo"] {
        let mut request = h.client.post(h.url(path)).header("content-type", "application/json");
        if !path.starts_with("/test") {
            request = request.header("connect-protocol-version", "1");
        }
        let response = request.header("content-encoding", "gzip").body(bomb.clone()).send().await.unwrap();
        assert_eq!(response.status(), 413, "{path}");
    }
    assert_eq!(h.calls(), 1, "only the honest body reached the backend");
}

#[tokio::test]
async fn grpc_web_answers_are_never_recompressed() {
    let h = Harness::start().await;
    let message = prost::Message::encode_to_vec(&protogate::pb::protogate::test::v1::Everything {
        f_string: "protogate ".repeat(2000),
        ..Default::default()
    });
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    let response = h
        .client
        .post(h.url("/protogate.test.v1.EchoService/Echo"))
        .header("content-type", "application/grpc-web+proto")
        .header("accept-encoding", "gzip")
        .body(frame)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("content-encoding").is_none(), "{:?}", response.headers());
    let body = response.bytes().await.unwrap();
    assert!(body.len() > message.len(), "the message came back as it is");
}

/// A Connect server-streaming call with `connect-accept-encoding: gzip` and
/// a gzip-compressed request envelope.
#[tokio::test]
async fn connect_streams_compress_envelopes_both_ways() {
    let h = Harness::start().await;
    let request = json!({"message": {"fString": "y".repeat(4000)}, "count": 2}).to_string();
    let compressed = gzip(request.as_bytes());
    let mut envelope = vec![0x01];
    envelope.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
    envelope.extend_from_slice(&compressed);
    let response = h
        .client
        .post(h.url("/protogate.test.v1.EchoService/EchoStream"))
        .header("content-type", "application/connect+json")
        .header("connect-content-encoding", "gzip")
        .header("connect-accept-encoding", "gzip")
        .body(envelope)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["connect-content-encoding"], "gzip");
    assert!(response.headers().get("content-encoding").is_none(), "envelopes, not the HTTP body, are compressed");
    let body = response.bytes().await.unwrap();
    let mut rest = &body[..];
    let mut messages = Vec::new();
    while rest.len() >= 5 {
        let (flags, length) = (rest[0], u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize);
        let payload = &rest[5..5 + length];
        let payload = if flags & 0x01 != 0 { gunzip(payload) } else { payload.to_vec() };
        messages.push((flags, serde_json::from_slice::<Value>(&payload).unwrap()));
        rest = &rest[5 + length..];
    }
    assert_eq!(messages.len(), 3, "{messages:?}");
    for (flags, message) in &messages[..2] {
        assert_eq!(*flags, 0x01, "a 4 KB message goes compressed");
        assert_eq!(message["fString"].as_str().unwrap().len(), 4000);
    }
    assert_eq!(messages[2].0 & 0x02, 0x02, "end of stream");

    // A compressed envelope without the header, and an encoding not spoken.
    let bare = h
        .client
        .post(h.url("/protogate.test.v1.EchoService/EchoStream"))
        .header("content-type", "application/connect+json")
        .header("connect-content-encoding", "snappy")
        .body(vec![0, 0, 0, 0, 2, b'{', b'}'])
        .send()
        .await
        .unwrap();
    assert_eq!(bare.headers()["connect-accept-encoding"], "gzip");
    let text = bare.text().await.unwrap();
    assert!(text.contains("unimplemented") && text.contains("snappy"), "{text}");
}

#[tokio::test]
async fn connect_get_messages_may_be_gzip_compressed() {
    use base64::Engine;
    let h = Harness::start().await;
    let message = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(gzip(br#"{"name": "shelves/1"}"#));
    let url = h.url(&format!(
        "/library.v1.LibraryService/GetShelf?connect=v1&encoding=json&compression=gzip&base64=1&message={message}"
    ));
    let response = h.client.get(url).send().await.unwrap();
    let (status, shelf) = common::read_json(response).await;
    assert_eq!((status, &shelf["theme"]), (200, &json!("Fiction")), "{shelf}");
}

#[tokio::test]
async fn connect_node_with_gzip_both_ways_over_http1_and_http2() {
    let Some(results) = common::connect_node("connect_gzip.mjs").await else { return };
    for version in ["1.1", "2"] {
        for codec in ["json", "proto"] {
            assert_eq!(results[format!("{version} {codec} unary")], 8000, "{results}");
            assert_eq!(results[format!("{version} {codec} stream")], 24000, "{results}");
        }
    }
}

#[tokio::test]
async fn grpc_and_grpc_web_pass_compressed_messages_through() {
    use protogate::pb::protogate::test::v1::Everything;
    use protogate::pb::protogate::test::v1::echo_service_client::EchoServiceClient;
    use tonic::codec::CompressionEncoding::Gzip;
    let h = Harness::start().await;
    let channel = tonic::transport::Endpoint::from_shared(h.base.clone()).unwrap().connect().await.unwrap();
    let mut client = EchoServiceClient::new(channel).send_compressed(Gzip).accept_compressed(Gzip);
    let text = "compressed end to end ".repeat(500);
    let answer = client.echo(Everything { f_string: text.clone(), ..Default::default() }).await.unwrap();
    assert_eq!(answer.metadata().get("grpc-encoding").unwrap(), "gzip", "the backend's compressed answer came through");
    assert_eq!(answer.into_inner().f_string, text);

    // gRPC-Web: a compressed frame in, compressed frames out, untouched.
    let message = prost::Message::encode_to_vec(&Everything { f_string: text.clone(), ..Default::default() });
    let compressed = gzip(&message);
    let mut frame = vec![1u8];
    frame.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
    frame.extend_from_slice(&compressed);
    let response = h
        .client
        .post(h.url("/protogate.test.v1.EchoService/Echo"))
        .header("content-type", "application/grpc-web+proto")
        .header("grpc-encoding", "gzip")
        .header("grpc-accept-encoding", "gzip")
        .body(frame)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["grpc-encoding"], "gzip");
    let body = response.bytes().await.unwrap();
    assert_eq!(body[0], 1, "the answer's message frame is compressed");
    let length = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    let answer: Everything = prost::Message::decode(gunzip(&body[5..5 + length]).as_slice()).unwrap();
    assert_eq!(answer.f_string, text);
}

#[tokio::test]
async fn connect_node_client_and_bidi_streams_with_gzip_over_http1_and_http2() {
    // The ping-pong sends each message only once the last one is answered:
    // it finishes only over a full-duplex gateway.
    let Some(results) = common::connect_node("connect_streams.mjs").await else { return };
    for version in ["1.1", "2"] {
        for codec in ["json", "proto"] {
            let key = |what: &str| format!("{version} {codec} {what}");
            assert_eq!(results[key("client stream")], json!([3, "a", 4000]), "{results}");
            assert_eq!(results[key("bidi")], json!([1, 1, 4000]), "{results}");
            assert_eq!(results[key("bidi failure")], "PermissionDenied: refused", "{results}");
        }
    }
    for codec in ["json", "proto"] {
        assert_eq!(results[format!("2 {codec} ping pong")], json!(["ping 0", "ping 1", "ping 2"]), "{results}");
    }
}
