//! Native gRPC and gRPC-Web through the gateway with real clients: tonic
//! clients for all four call kinds (compared with calling the backend
//! directly), tonic-web's client over HTTP/1.1, and hand-built grpc-web-text.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::Harness;
use futures_util::StreamExt;
use prost::Message;
use protogate::pb::library::v1::library_service_client::LibraryServiceClient;
use protogate::pb::library::v1::{GetBookRequest, StreamBooksRequest};
use protogate::pb::protogate::test::v1::echo_service_client::EchoServiceClient;
use protogate::pb::protogate::test::v1::{EchoStreamRequest, Everything, FailRequest};
use tonic::Code;
use tonic::transport::Channel;

async fn channel(addr: &str) -> Channel {
    Channel::from_shared(addr.to_string()).unwrap().connect().await.unwrap()
}

fn named(name: &str) -> Everything {
    Everything { f_string: name.into(), ..Default::default() }
}

#[tokio::test]
async fn all_four_call_kinds_give_the_same_results_as_the_backend() {
    let h = Harness::start().await;
    let direct = channel(&format!("http://{}", h.echo_addr)).await;
    let via_gateway = channel(&h.base).await;
    for channel in [direct, via_gateway] {
        let mut echo = EchoServiceClient::new(channel.clone());
        let reply = echo.echo(Everything { f_int64: -5, f_bytes: vec![0, 255], ..named("unary") }).await.unwrap();
        assert_eq!(reply.get_ref().f_int64, -5);
        assert_eq!(reply.get_ref().f_bytes, [0, 255]);

        let request = EchoStreamRequest {
            message: Some(named("s")),
            count: 3,
            fail_code: 9,
            fail_message: "stop".into(),
            interval_ms: 0,
        };
        let mut stream = echo.echo_stream(request).await.unwrap().into_inner();
        let mut received = 0;
        let end = loop {
            match stream.message().await {
                Ok(Some(_)) => received += 1,
                Ok(None) => break None,
                Err(status) => break Some(status),
            }
        };
        let end = end.unwrap();
        assert_eq!((received, end.code(), end.message()), (3, Code::FailedPrecondition, "stop"));

        let outbound = futures_util::stream::iter(vec![named("a"), named("b"), named("c")]);
        let collected = echo.collect(outbound).await.unwrap().into_inner();
        assert_eq!(collected.r_string, ["a", "b", "c"]);

        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        let mut replies = echo.chat(tokio_stream::wrappers::ReceiverStream::new(receiver)).await.unwrap().into_inner();
        sender.send(named("ping")).await.unwrap();
        assert_eq!(
            replies.message().await.unwrap().unwrap().f_string,
            "ping",
            "full duplex: a reply before the next send"
        );
        sender.send(named("pong")).await.unwrap();
        assert_eq!(replies.message().await.unwrap().unwrap().f_string, "pong");
        sender.send(Everything { f_int32: 5, ..named("gone") }).await.unwrap();
        let status = replies.message().await.unwrap_err();
        assert_eq!((status.code(), status.message()), (Code::NotFound, "gone"));

        let failed = echo
            .fail(FailRequest { code: 7, message: "no".into(), reason: "WHY".into(), ..Default::default() })
            .await
            .unwrap_err();
        assert_eq!(failed.code(), Code::PermissionDenied);
        let details = protogate::pb::google::rpc::Status::decode(failed.details()).unwrap();
        assert_eq!(details.details[0].type_url, "type.googleapis.com/google.rpc.ErrorInfo");

        let mut request = tonic::Request::new(());
        request.metadata_mut().insert("echo-header-colour", "green".parse().unwrap());
        request.metadata_mut().insert("tenant", "acme".parse().unwrap());
        let reply = echo.echo_metadata(request).await.unwrap();
        assert_eq!(reply.metadata().get("colour").unwrap(), "green");
        assert_eq!(reply.get_ref().entries["tenant"], "acme");
    }
}

#[tokio::test]
async fn library_calls_pass_through_and_unknown_methods_are_unimplemented() {
    let h = Harness::start().await;
    let mut library = LibraryServiceClient::new(channel(&h.base).await);
    let book = library.get_book(GetBookRequest { name: "shelves/1/books/3".into() }).await.unwrap().into_inner();
    assert_eq!((book.title.as_str(), book.copies_sold), ("Solaris", 9_007_199_254_740_993));
    let books: Vec<_> = library
        .stream_books(StreamBooksRequest { parent: "shelves/1".into() })
        .await
        .unwrap()
        .into_inner()
        .collect()
        .await;
    assert_eq!(books.len(), 3);

    let mut grpc = tonic::client::Grpc::new(channel(&h.base).await);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/nowhere.v1.Nothing/Call");
    let codec = tonic_prost::ProstCodec::<GetBookRequest, GetBookRequest>::default();
    let status = grpc.unary(tonic::Request::new(GetBookRequest::default()), path, codec).await.unwrap_err();
    assert_eq!((status.code(), status.message()), (Code::Unimplemented, "unknown method /nowhere.v1.Nothing/Call"));
}

#[tokio::test]
async fn grpc_web_binary_works_with_tonic_web_client_over_http1() {
    let h = Harness::start().await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let service = tower::ServiceBuilder::new().layer(tonic_web::GrpcWebClientLayer::new()).service(client);
    let mut echo = EchoServiceClient::with_origin(service, h.base.parse().unwrap());
    let reply = echo.echo(named("web")).await.unwrap();
    assert_eq!(reply.get_ref().f_string, "web");
    let request = EchoStreamRequest {
        message: Some(named("w")),
        count: 2,
        fail_code: 5,
        fail_message: "end".into(),
        interval_ms: 0,
    };
    let mut stream = echo.echo_stream(request).await.unwrap().into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap().f_string, "w");
    assert_eq!(stream.message().await.unwrap().unwrap().f_string, "w");
    let status = stream.message().await.unwrap_err();
    assert_eq!((status.code(), status.message()), (Code::NotFound, "end"));
    let failed =
        echo.fail(FailRequest { code: 8, message: "slow down".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!((failed.code(), failed.message()), (Code::ResourceExhausted, "slow down"));
}

/// One gRPC(-Web) data frame.
fn frame(message: &impl Message) -> Vec<u8> {
    let bytes = message.encode_to_vec();
    let mut out = vec![0];
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(&bytes);
    out
}

/// Splits a decoded grpc-web body into data frames and the trailer text.
fn frames(mut body: &[u8]) -> (Vec<Vec<u8>>, String) {
    let (mut data, mut trailers) = (Vec::new(), String::new());
    while body.len() >= 5 {
        let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        let payload = body[5..5 + len].to_vec();
        if body[0] & 0x80 != 0 {
            trailers = String::from_utf8(payload).unwrap();
        } else {
            data.push(payload);
        }
        body = &body[5 + len..];
    }
    (data, trailers)
}

#[tokio::test]
async fn grpc_web_text_is_base64_both_ways_with_trailers_in_the_last_frame() {
    let h = Harness::start().await;
    let request = EchoStreamRequest { message: Some(named("text")), count: 2, ..Default::default() };
    let response = h
        .client
        .post(h.url("/protogate.test.v1.EchoService/EchoStream"))
        .header("content-type", "application/grpc-web-text")
        .header("accept", "application/grpc-web-text")
        .header("x-grpc-web", "1")
        .body(STANDARD.encode(frame(&request)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("application/grpc-web-text"), "{content_type} {:?}", response.headers());
    let text = response.text().await.unwrap();
    // Chunks are encoded one by one, each padded: decode 4-character quanta.
    let quanta = text.trim().as_bytes().chunks(4);
    let body: Vec<u8> = quanta.flat_map(|q| STANDARD.decode(q).unwrap()).collect();
    let (data, trailers) = frames(&body);
    assert_eq!(data.len(), 2);
    assert_eq!(Everything::decode(data[0].as_slice()).unwrap().f_string, "text");
    assert!(trailers.contains("grpc-status:0"), "{trailers:?}");

    // Bad base64 gets a gRPC error, and the gateway keeps serving.
    let broken = h
        .client
        .post(h.url("/protogate.test.v1.EchoService/Echo"))
        .header("content-type", "application/grpc-web-text")
        .body("@@@not base64@@@")
        .send()
        .await
        .unwrap();
    assert_eq!(broken.headers()["grpc-status"], "13");
    assert_eq!(broken.headers()["grpc-message"], "tonic-web:%20Invalid%20symbol%2064,%20offset%200.");
    assert_eq!(h.get_json("/v1/shelves/1").await.0, 200);
}

#[tokio::test]
async fn truncated_grpc_web_frames_get_a_grpc_error_and_the_gateway_keeps_serving() {
    let h = Harness::start().await;
    let mut body = frame(&named("cut"));
    body.truncate(body.len() - 2);
    let response = h
        .client
        .post(h.url("/protogate.test.v1.EchoService/Echo"))
        .header("content-type", "application/grpc-web+proto")
        .body(body)
        .send()
        .await
        .unwrap();
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap();
    let status = headers.get("grpc-status").map(|v| v.to_str().unwrap().to_string()).unwrap_or_else(|| frames(&body).1);
    assert!(!status.is_empty() && status != "0" && !status.contains("grpc-status:0"), "{headers:?} {body:?}");
    assert_eq!(h.get_json("/v1/shelves/1").await.0, 200);
}

/// connect-node's gRPC and gRPC-Web transports on the JSON codec reach the
/// protobuf-only echo backend: every call kind gRPC-Web has and every one
/// gRPC has, exact 64-bit integers, bytes, errors before and during a
/// stream, and gzip-compressed JSON messages.
#[tokio::test]
async fn grpc_and_grpc_web_json_codec_clients_reach_a_protobuf_backend() {
    let Some(results) = common::connect_node("grpc_json.mjs").await else { return };
    let unary = serde_json::json!(["9007199254740993", 2, [0, 255], ["a", "b"]]);
    for transport in ["grpc h2", "grpc h2 gzip", "grpc-web h1", "grpc-web h2"] {
        assert_eq!(results[format!("{transport} unary")], unary, "{transport}: {results}");
        assert_eq!(results[format!("{transport} server stream")], serde_json::json!(["s", "s", "s"]), "{results}");
        assert_eq!(results[format!("{transport} error")], "NotFound: no such thing", "{results}");
        assert_eq!(results[format!("{transport} stream error")], "FailedPrecondition: stopped", "{results}");
    }
    for transport in ["grpc h2", "grpc h2 gzip"] {
        assert_eq!(results[format!("{transport} client stream")], serde_json::json!(["a", "b", "c"]), "{results}");
        assert_eq!(results[format!("{transport} bidi")], serde_json::json!(["x", "y"]), "{results}");
    }
}

/// One gRPC-Web data frame around `payload` as it is.
fn raw_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// gRPC-Web `+json` by hand: JSON messages in and out, and each bad input
/// refused with a gRPC status that says what was wrong.
#[tokio::test]
async fn grpc_web_json_messages_are_transcoded_and_bad_ones_refused() {
    let h = Harness::start().await;
    let call = |content_type: &'static str, encoding: Option<&'static str>, body: Vec<u8>| {
        let request = h.client.post(h.url("/protogate.test.v1.EchoService/Echo"));
        // As grpc-web clients do, the answer is asked for in the same form.
        let mut request = request.header("content-type", content_type).header("accept", content_type);
        if let Some(encoding) = encoding {
            request = request.header("grpc-encoding", encoding);
        }
        async move { request.body(body).send().await.unwrap() }
    };
    let response =
        call("application/grpc-web+json", None, raw_frame(br#"{"fString":"hi","fInt64":"9007199254740993"}"#)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/grpc-web+json");
    let (data, trailers) = frames(&response.bytes().await.unwrap());
    let answer: serde_json::Value = serde_json::from_slice(&data[0]).unwrap();
    assert_eq!(answer, serde_json::json!({"fString": "hi", "fInt64": "9007199254740993"}));
    assert!(trailers.contains("grpc-status:0"), "{trailers:?}");
    assert!(!trailers.contains("protogate"), "the gateway's own markers stay inside: {trailers:?}");

    // The text variant: base64 framing, JSON inside.
    let body = STANDARD.encode(raw_frame(br#"{"fBool":true}"#)).into_bytes();
    let response = call("application/grpc-web-text+json", None, body).await;
    assert_eq!(response.headers()["content-type"], "application/grpc-web-text+json");
    let text = response.text().await.unwrap();
    let body: Vec<u8> = text.trim().as_bytes().chunks(4).flat_map(|q| STANDARD.decode(q).unwrap()).collect();
    assert_eq!(frames(&body).0[0], br#"{"fBool":true}"#);

    let refusals: [(&[u8], Option<&str>, &str, &str); 3] = [
        (br#"{"fInt32":"seven"}"#, None, "3", "stream message 1: invalid JSON body: field \"fInt32\""),
        (br#"{"nope":1}"#, None, "3", "stream message 1: invalid JSON body"),
        (b"{\"fString\":\"x\"}", Some("br"), "12", "unsupported grpc-encoding \"br\"; accepted: identity,gzip"),
    ];
    for (message, encoding, code, text) in refusals {
        let response = call("application/grpc-web+json", encoding, raw_frame(message)).await;
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap();
        let (_, trailers) = frames(&body);
        let status = headers.get("grpc-status").map(|v| v.to_str().unwrap().to_string()).unwrap_or_else(|| {
            trailers.lines().find_map(|l| l.strip_prefix("grpc-status:")).unwrap_or_default().trim().to_string()
        });
        let said = headers.get("grpc-message").map(|v| v.to_str().unwrap().to_string()).unwrap_or(trailers.clone());
        let said = percent_encoding::percent_decode_str(&said).decode_utf8_lossy().to_string();
        assert_eq!(status, code, "{message:?}: {headers:?} {trailers}");
        assert!(said.contains(text), "{message:?}: {said}");
        if code == "12" {
            assert_eq!(headers["grpc-accept-encoding"], "identity,gzip");
        }
    }

    // A body that ends inside an envelope is not a shorter message.
    let mut truncated = raw_frame(br#"{"fString":"cut"}"#);
    truncated.truncate(9);
    let response = call("application/grpc-web+json", None, truncated).await;
    let headers = response.headers().clone();
    let said = headers.get("grpc-message").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    assert_eq!(headers.get("grpc-status").map(|v| v.to_str().unwrap()), Some("3"), "{headers:?}");
    assert!(percent_encoding::percent_decode_str(&said).decode_utf8_lossy().contains("truncated envelope"), "{said}");

    // The gateway keeps serving.
    let response = call("application/grpc-web+json", None, raw_frame(br#"{"fString":"after"}"#)).await;
    assert!(frames(&response.bytes().await.unwrap()).1.contains("grpc-status:0"));
}
