//! The gateway's own gRPC services on the public listener: server
//! reflection (v1, v1alpha) over exactly the services it fronts, following
//! registrations, and `grpc.health.v1.Health` for the gateway and each
//! service's upstream — with `buf curl`, tonic's reflection and health
//! clients, and a raw gRPC-Web call.

mod common;

use std::time::Duration;

use common::Harness;
use protogate::config::{Config, Flags};
use protogate::pb;
use sha2::Digest;
use tokio_stream::StreamExt;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1 as reflection;
use tonic_reflection::pb::v1alpha as alpha;

const OWN: [&str; 3] =
    ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"];

async fn channel(h: &Harness) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(h.base.clone()).unwrap().connect().await.unwrap()
}

/// Every service v1 reflection lists, sorted.
async fn listed(h: &Harness) -> Vec<String> {
    use reflection::server_reflection_client::ServerReflectionClient;
    use reflection::server_reflection_request::MessageRequest;
    use reflection::server_reflection_response::MessageResponse;
    let mut client = ServerReflectionClient::new(channel(h).await);
    let request = reflection::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = client.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    let answer = answers.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else { panic!("{answer:?}") };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    names
}

fn expected(fronted: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = fronted.iter().chain(OWN.iter()).map(|s| s.to_string()).collect();
    names.sort();
    names
}

#[tokio::test]
async fn reflection_lists_exactly_the_fronted_services_and_follows_registrations() {
    let admin = "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"t\"";
    let library = vec![("library".to_string(), pb::LIBRARY_DESCRIPTOR_SET.to_vec())];
    let h = Harness::start_with_sets(admin, library).await;
    assert_eq!(listed(&h).await, expected(&["library.v1.LibraryService"]));

    let url = format!("{}/v1/descriptor-sets/everything", h.admin.as_ref().unwrap());
    let put = h.client.put(url).bearer_auth("t").header("content-type", "application/octet-stream");
    let response = put.body(pb::EVERYTHING_DESCRIPTOR_SET.to_vec()).send().await.unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let now = listed(&h).await;
    assert!(now.contains(&"protogate.test.v1.EchoService".to_string()), "{now:?}");
    assert!(now.contains(&"library.v1.LibraryService".to_string()), "{now:?}");
}

#[tokio::test]
async fn v1alpha_serves_files_by_symbol_with_their_http_annotations() {
    use alpha::server_reflection_client::ServerReflectionClient;
    use alpha::server_reflection_request::MessageRequest;
    use alpha::server_reflection_response::MessageResponse;
    let h = Harness::start().await;
    let mut client = ServerReflectionClient::new(channel(&h).await);
    let ask = |request| alpha::ServerReflectionRequest { host: String::new(), message_request: Some(request) };
    let requests = [
        ask(MessageRequest::FileContainingSymbol("library.v1.LibraryService.GetShelf".into())),
        ask(MessageRequest::FileByFilename("google/api/annotations.proto".into())),
    ];
    let answers: Vec<_> =
        client.server_reflection_info(tokio_stream::iter(requests)).await.unwrap().into_inner().collect().await;
    let raw: Vec<Vec<u8>> = answers
        .into_iter()
        .map(|answer| match answer.unwrap().message_response {
            Some(MessageResponse::FileDescriptorResponse(mut files)) => files.file_descriptor_proto.remove(0),
            other => panic!("{other:?}"),
        })
        .collect();
    let file: prost_types::FileDescriptorProto = prost::Message::decode(raw[0].as_slice()).unwrap();
    assert_eq!(file.name(), "library/v1/library.proto");
    assert!(file.dependency.iter().any(|d| d == "google/api/annotations.proto"), "{:?}", file.dependency);
    let annotations: prost_types::FileDescriptorProto = prost::Message::decode(raw[1].as_slice()).unwrap();
    assert_eq!(annotations.name(), "google/api/annotations.proto");
    // Served as registered, options and all: the HTTP rules are there.
    let template = b"/v1/{name=shelves/*}";
    assert!(raw[0].windows(template.len()).any(|w| w == template), "the HTTP rules were dropped");
}

#[tokio::test]
async fn buf_curl_lists_and_calls_methods_by_reflection_alone() {
    let Some(buf) = common::npm_tool(".ci/tools", "buf") else { return };
    let h = Harness::start().await;
    let run = |args: Vec<String>| {
        let buf = buf.clone();
        async move {
            let output = tokio::process::Command::new(buf).args(args).output().await.unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr).to_string();
            assert!(output.status.success(), "buf curl: {stderr}");
            String::from_utf8(output.stdout).unwrap()
        }
    };
    let grpc = ["curl", "--protocol", "grpc", "--http2-prior-knowledge"].map(String::from).to_vec();
    let listed = run([grpc.clone(), vec!["--list-methods".into(), h.base.clone()]].concat()).await;
    assert!(listed.contains("library.v1.LibraryService/GetShelf"), "{listed}");
    assert!(listed.contains("protogate.test.v1.EchoService/"), "{listed}");
    assert!(listed.contains("grpc.health.v1.Health/Check"), "{listed}");
    // No --schema: buf learns the request and answer types by reflection.
    let call = vec!["-d".into(), r#"{"name": "shelves/1"}"#.into(), h.url("/library.v1.LibraryService/GetShelf")];
    let shelf: serde_json::Value = serde_json::from_str(&run([grpc, call].concat()).await).unwrap();
    assert_eq!(shelf["theme"], "Fiction", "{shelf}");
}

#[tokio::test]
async fn health_reports_the_gateway_and_each_service_by_its_upstream() {
    let h = Harness::start().await;
    let mut client = HealthClient::new(channel(&h).await);
    let check = |service: &str| HealthCheckRequest { service: service.into() };
    for service in ["", "library.v1.LibraryService", "protogate.test.v1.EchoService"] {
        let answer = client.check(check(service)).await.unwrap().into_inner();
        assert_eq!(answer.status(), ServingStatus::Serving, "{service:?}");
    }
    let unknown = client.check(check("no.such.Service")).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    // Watch on an unknown name says so and keeps the call open.
    let mut watch = client.watch(check("no.such.Service")).await.unwrap().into_inner();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::ServiceUnknown);
    let more = tokio::time::timeout(Duration::from_millis(1500), watch.next()).await;
    assert!(more.is_err(), "the watch ended or repeated itself: {more:?}");
}

#[tokio::test]
async fn a_service_whose_upstream_is_down_is_not_serving_while_the_gateway_is() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let flags =
        Flags { listen: Some("127.0.0.1:0".into()), upstreams: vec![format!("http://{dead}")], ..Flags::default() };
    let config = Config::from_toml("[upstream]\nconnect_timeout = \"200ms\"", &flags).unwrap();
    let sets = vec![("library".to_string(), pb::LIBRARY_DESCRIPTOR_SET.to_vec())];
    let server = protogate::server::start_with_sets(&config, sets).await.unwrap();
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", server.local_addr)).unwrap();
    let mut client = HealthClient::new(endpoint.connect().await.unwrap());
    let check = |service: &str| HealthCheckRequest { service: service.into() };
    let gateway = client.check(check("")).await.unwrap().into_inner();
    assert_eq!(gateway.status(), ServingStatus::Serving);
    let library = client.check(check("library.v1.LibraryService")).await.unwrap().into_inner();
    assert_eq!(library.status(), ServingStatus::NotServing);
}

#[tokio::test]
async fn grpc_web_clients_reach_the_health_service() {
    let h = Harness::start().await;
    // An empty HealthCheckRequest in one uncompressed frame, over HTTP/1.1.
    let response = h
        .client
        .post(h.url("/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc-web+proto")
        .body(vec![0u8, 0, 0, 0, 0])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.bytes().await.unwrap();
    // Status SERVING (field 1 = 1), then the trailers frame with status 0.
    assert_eq!(&body[..7], &[0, 0, 0, 0, 2, 0x08, 0x01], "{body:?}");
    assert!(String::from_utf8_lossy(&body[7..]).contains("grpc-status:0"), "{body:?}");
}

#[tokio::test]
async fn the_services_can_be_turned_off_and_put_behind_auth() {
    let h = Harness::start_with("[grpc]\nreflection = false\nhealth = false").await;
    let mut client = HealthClient::new(channel(&h).await);
    let off = client.check(HealthCheckRequest::default()).await.unwrap_err();
    assert_eq!(off.code(), tonic::Code::Unimplemented, "{off:?}");

    let guarded = r#"
[auth.api_keys]
keys = [{ consumer = "ops", sha256 = "KEY" }]
[[auth.rules]]
selector = "grpc.health.v1.Health"
require = "authenticated"
"#;
    let hash: String = sha2::Sha256::digest(b"probe-key").iter().map(|b| format!("{b:02x}")).collect();
    let h = Harness::start_with(&guarded.replace("KEY", &hash)).await;
    let mut client = HealthClient::new(channel(&h).await);
    let refused = client.check(HealthCheckRequest::default()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    let mut request = tonic::Request::new(HealthCheckRequest::default());
    request.metadata_mut().insert("x-api-key", "probe-key".parse().unwrap());
    assert_eq!(client.check(request).await.unwrap().into_inner().status(), ServingStatus::Serving);
    // Reflection is not under that rule.
    assert!(listed(&h).await.contains(&"library.v1.LibraryService".to_string()));
}

#[tokio::test]
async fn watches_hear_not_serving_and_end_when_the_gateway_drains() {
    let mut h = Harness::start().await;
    let mut client = HealthClient::new(channel(&h).await);
    let check = |service: &str| HealthCheckRequest { service: service.into() };
    let mut watches = Vec::new();
    for service in ["", "library.v1.LibraryService"] {
        let mut watch = client.watch(check(service)).await.unwrap().into_inner();
        assert_eq!(watch.next().await.unwrap().unwrap().status(), ServingStatus::Serving, "{service:?}");
        watches.push(watch);
    }
    let server = h.server.take().unwrap();
    let drained = tokio::spawn(server.shutdown());
    for mut watch in watches {
        let said = tokio::time::timeout(Duration::from_secs(5), watch.next()).await.expect("a word within 5 s");
        assert_eq!(said.unwrap().unwrap().status(), ServingStatus::NotServing);
        let after = tokio::time::timeout(Duration::from_secs(5), watch.next()).await.expect("the end within 5 s");
        assert!(after.is_none(), "the watch goes on: {after:?}");
    }
    // Nothing else is open, so the drain finishes without its grace period.
    tokio::time::timeout(Duration::from_secs(10), drained).await.expect("drained").unwrap().unwrap();
}
