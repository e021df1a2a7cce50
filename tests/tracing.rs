//! OpenTelemetry: a gateway process exports spans over OTLP/gRPC to a
//! collector stand-in inside this test (a tonic server implementing the
//! collector's trace service). The server span continues the client's W3C
//! trace, the upstream call is its child, and the backend receives the
//! gateway's context — over REST and native gRPC alike.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::echo::Echo;
use common::process::spawn_gateway;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use tokio_stream::wrappers::TcpListenerStream;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans = request.into_inner().resource_spans.into_iter().flat_map(|r| r.scope_spans).flat_map(|s| s.spans);
        self.spans.lock().unwrap().extend(spans);
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

async fn start_collector() -> (String, Collector) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let collector = Collector::default();
    let service = TraceServiceServer::new(collector.clone());
    tokio::spawn(
        tonic::transport::Server::builder().add_service(service).serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (url, collector)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    let value = span.attributes.iter().find(|a| a.key == key)?.value.as_ref()?.value.as_ref()?;
    Some(match value {
        AnyValue::StringValue(s) => s.clone(),
        AnyValue::IntValue(i) => i.to_string(),
        other => format!("{other:?}"),
    })
}

fn traceparent(parent_span: &str) -> String {
    format!("00-{TRACE_ID}-{parent_span}-01")
}

#[tokio::test]
async fn spans_continue_the_client_trace_and_reach_the_collector() {
    let (collector_url, collector) = start_collector().await;
    let (echo, _) = common::serve_echo(Echo::default()).await;
    let dir = std::env::temp_dir().join(format!("protogate-otel-{}", common::process::free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let set = dir.join("everything.binpb");
    std::fs::write(&set, protogate::pb::EVERYTHING_DESCRIPTOR_SET).unwrap();
    let config = dir.join("gateway.toml");
    let toml = format!(
        "listen = \"127.0.0.1:0\"\ndescriptors = [\"{}\"]\n[upstream]\ndefault = \"http://{echo}\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n[tracing]\notlp_endpoint = \"{collector_url}\"\nservice_name = \"gateway-under-test\"\n",
        set.display()
    );
    std::fs::write(&config, toml).unwrap();
    let mut gateway = spawn_gateway(&["serve", "--config", config.to_str().unwrap()]).await;

    // REST: the backend sees the client's trace id with the gateway's span as parent.
    let response = reqwest::Client::new()
        .get(format!("{}/test/v1/metadata", gateway.public))
        .header("traceparent", traceparent(CLIENT_SPAN))
        .header("tracestate", "vendor=opaque")
        .send()
        .await
        .unwrap();
    let (status, body) = common::read_json(response).await;
    assert_eq!(status, 200, "{body}");
    let received = body["entries"]["traceparent"].as_str().unwrap().to_string();
    assert!(received.starts_with(&format!("00-{TRACE_ID}-")), "{received}");
    assert!(!received.contains(CLIENT_SPAN), "the gateway's span is the backend's parent: {received}");
    assert_eq!(body["entries"]["tracestate"], "vendor=opaque");

    // Native gRPC pass-through: the same, with the context in the headers.
    let channel = tonic::transport::Channel::from_shared(gateway.public.clone()).unwrap().connect().await.unwrap();
    let mut client = protogate::pb::protogate::test::v1::echo_service_client::EchoServiceClient::new(channel);
    let mut request = tonic::Request::new(());
    request.metadata_mut().insert("traceparent", traceparent("1111111111111111").parse().unwrap());
    let reply = client.echo_metadata(request).await.unwrap().into_inner();
    let grpc_received = &reply.entries["traceparent"];
    assert!(grpc_received.starts_with(&format!("00-{TRACE_ID}-")), "{grpc_received}");
    assert!(!grpc_received.contains("1111111111111111"), "{grpc_received}");

    // A graceful stop flushes the batch.
    let pid = gateway.child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let exited = tokio::time::timeout(Duration::from_secs(30), gateway.child.wait()).await;
    assert!(exited.is_ok(), "the gateway did not stop");

    let spans = collector.spans.lock().unwrap().clone();
    let server = spans
        .iter()
        .find(|s| s.name == "GET /test/v1/metadata")
        .unwrap_or_else(|| panic!("no server span in {:#?}", spans));
    assert_eq!(hex(&server.trace_id), TRACE_ID);
    assert_eq!(hex(&server.parent_span_id), CLIENT_SPAN, "the client's span is the parent");
    assert_eq!(server.kind, SpanKind::Server as i32);
    assert_eq!(attribute(server, "http.route").as_deref(), Some("/test/v1/metadata"));
    assert_eq!(attribute(server, "rpc.service").as_deref(), Some("protogate.test.v1.EchoService"));
    assert_eq!(attribute(server, "rpc.method").as_deref(), Some("EchoMetadata"));
    assert_eq!(attribute(server, "http.response.status_code").as_deref(), Some("200"));

    let upstream = spans
        .iter()
        .find(|s| s.name == "protogate.test.v1.EchoService/EchoMetadata" && s.kind == SpanKind::Client as i32)
        .expect("a client span for the upstream call");
    assert_eq!(upstream.parent_span_id, server.span_id, "the upstream call is the server span's child");
    assert!(received.contains(&hex(&upstream.span_id)), "the backend's parent is the upstream span: {received}");

    let grpc_server = spans
        .iter()
        .find(|s| s.name == "protogate.test.v1.EchoService.EchoMetadata")
        .expect("a server span for the gRPC call");
    assert_eq!(hex(&grpc_server.parent_span_id), "1111111111111111");
    assert!(grpc_received.contains(&hex(&grpc_server.span_id)), "{grpc_received}");
}
