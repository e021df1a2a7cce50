//! Per-route stream timeouts for every protocol besides REST (tests/web.rs
//! covers REST): a stream that stalls past its idle timeout, and one that
//! outlives its lifetime, end with DEADLINE_EXCEEDED in each protocol's own
//! form — gRPC trailers, gRPC-Web trailers, Connect's end-of-stream message
//! and a WebSocket close code.

mod common;

use common::Harness;
use futures_util::StreamExt;
use protogate::pb::protogate::test::v1::echo_service_client::EchoServiceClient;
use protogate::pb::protogate::test::v1::{EchoStreamRequest, Everything, FailRequest};
use tonic::Code;

const CONFIG: &str = "[timeouts]\n\
    [[timeouts.rules]]\nselector = \"protogate.test.v1.EchoService.EchoStream\"\nstream_idle = \"200ms\"\n\
    [[timeouts.rules]]\nselector = \"protogate.test.v1.EchoService.Chat\"\nstream_lifetime = \"300ms\"\n\
    [[timeouts.rules]]\nselector = \"protogate.test.v1.EchoService.Fail\"\nunary = \"100ms\"\n";

fn stalling(count: i32) -> EchoStreamRequest {
    let message = Everything { f_int32: 7, ..Default::default() };
    EchoStreamRequest { message: Some(message), count, interval_ms: 5_000, ..Default::default() }
}

#[tokio::test]
async fn grpc_streams_get_idle_and_lifetime_limits_and_unary_calls_the_route_deadline() {
    let h = Harness::start_with(CONFIG).await;
    let channel = tonic::transport::Channel::from_shared(h.base.clone()).unwrap().connect().await.unwrap();
    let mut echo = EchoServiceClient::new(channel);

    let mut stream = echo.echo_stream(stalling(2)).await.unwrap().into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap().f_int32, 7);
    let stalled = stream.message().await.unwrap_err();
    assert_eq!(
        (stalled.code(), stalled.message()),
        (Code::DeadlineExceeded, "no message within the stream's idle timeout")
    );

    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    sender.send(Everything { f_string: "hi".into(), ..Default::default() }).await.unwrap();
    let mut chat = echo.chat(tokio_stream::wrappers::ReceiverStream::new(receiver)).await.unwrap().into_inner();
    assert_eq!(chat.message().await.unwrap().unwrap().f_string, "hi");
    let ended = chat.message().await.unwrap_err();
    assert_eq!((ended.code(), ended.message()), (Code::DeadlineExceeded, "stream outlived its deadline"));
    drop(sender);

    let slow = echo.fail(FailRequest { delay_ms: 2_000, ..Default::default() }).await.unwrap_err();
    assert_eq!(slow.code(), Code::DeadlineExceeded, "{slow:?}");
    let fast = echo.fail(FailRequest { delay_ms: 0, ..Default::default() }).await;
    assert!(fast.is_ok(), "{fast:?}");
}

#[tokio::test]
async fn grpc_web_streams_end_with_a_deadline_trailer() {
    let h = Harness::start_with(CONFIG).await;
    let client = tonic_web::GrpcWebClientLayer::new();
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let service = tower::ServiceBuilder::new().layer(client).service(http);
    let mut echo = EchoServiceClient::with_origin(service, h.base.parse().unwrap());
    let mut stream = echo.echo_stream(stalling(2)).await.unwrap().into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap().f_int32, 7);
    let stalled = stream.message().await.unwrap_err();
    assert_eq!(stalled.code(), Code::DeadlineExceeded, "{stalled:?}");
}

#[tokio::test]
async fn connect_streams_end_with_a_deadline_exceeded_end_of_stream() {
    let h = Harness::start_with(CONFIG).await;
    let request = br#"{"message": {"fInt32": 7}, "count": 2, "intervalMs": 5000}"#;
    let mut payload = vec![0];
    payload.extend_from_slice(&u32::try_from(request.len()).unwrap().to_be_bytes());
    payload.extend_from_slice(request);
    let response = h
        .client
        .post(h.url("/protogate.test.v1.EchoService/EchoStream"))
        .header("content-type", "application/connect+json")
        .body(payload)
        .send()
        .await
        .unwrap();
    let body = response.bytes().await.unwrap();
    let first_len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
    assert_eq!(&body[5..5 + first_len], br#"{"fInt32":7}"#);
    let end = &body[5 + first_len..];
    assert_eq!(end[0], 2, "the end-of-stream flag");
    let end: serde_json::Value = serde_json::from_slice(&end[5..]).unwrap();
    assert_eq!(end["error"]["code"], "deadline_exceeded", "{end}");
    assert_eq!(end["error"]["message"], "no message within the stream's idle timeout");
}

#[tokio::test]
async fn websocket_streams_close_with_4004() {
    use tokio_tungstenite::tungstenite::Message;
    let h = Harness::start_with(CONFIG).await;
    let url = format!("{}/test/v1/stream", h.base.replacen("http", "ws", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    socket.send(Message::text(r#"{"message": {"fInt32": 7}, "count": 2, "intervalMs": 5000}"#)).await.unwrap();
    use futures_util::SinkExt;
    let first = socket.next().await.unwrap().unwrap();
    assert_eq!(first, Message::text(r#"{"fInt32":7}"#));
    let Message::Close(Some(close)) = socket.next().await.unwrap().unwrap() else { panic!("expected a close frame") };
    assert_eq!((u16::from(close.code), close.reason.as_str()), (4004, "no message within the stream's idle timeout"));

    let url = format!("{}/protogate.test.v1.EchoService/Chat", h.base.replacen("http", "ws", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    socket.send(Message::text(r#"{"fString": "hi"}"#)).await.unwrap();
    assert_eq!(socket.next().await.unwrap().unwrap(), Message::text(r#"{"fString":"hi"}"#));
    let Message::Close(Some(close)) = socket.next().await.unwrap().unwrap() else { panic!("expected a close frame") };
    assert_eq!(u16::from(close.code), 4004, "the chat outlived its lifetime: {close:?}");
}
