//! Registration from gRPC server reflection against real tonic-reflection
//! servers: v1, the v1alpha fallback, a backend without reflection, and the
//! refresh that follows a redeploy.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use common::Harness;
use protogate::pb;
use protogate::pb::library::v1::library_service_server::LibraryServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

#[derive(Clone, Copy)]
enum Reflection {
    V1,
    V1Alpha,
    None,
}

/// The library backend with the given reflection service.
async fn backend(reflection: Reflection) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let builder = || {
        tonic_reflection::server::Builder::configure().register_encoded_file_descriptor_set(pb::LIBRARY_DESCRIPTOR_SET)
    };
    let mut router = tonic::transport::Server::builder()
        .add_service(LibraryServiceServer::new(protogate::example::Library::seeded()));
    router = match reflection {
        Reflection::V1 => router.add_service(builder().build_v1().unwrap()),
        Reflection::V1Alpha => router.add_service(builder().build_v1alpha().unwrap()),
        Reflection::None => router,
    };
    tokio::spawn(router.serve_with_incoming(TcpListenerStream::new(listener)));
    addr
}

async fn reflect(h: &Harness, name: &str, backend: SocketAddr) -> (u16, serde_json::Value) {
    let url = format!("{}/v1/descriptor-sets/{name}:reflect?upstream=http://{backend}", h.admin.as_ref().unwrap());
    common::read_json(h.client.post(url).send().await.unwrap()).await
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_register_the_backend_services() {
    let h = Harness::start_with_sets("[admin]\nlisten = \"127.0.0.1:0\"", Vec::new()).await;
    assert_eq!(h.get_json("/v1/shelves/1").await.0, 404);
    let (status, body) = reflect(&h, "lib", backend(Reflection::V1).await).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["services"], serde_json::json!(["library.v1.LibraryService"]));
    let (status, body) = h.get_json("/v1/shelves/1").await;
    assert_eq!((status, &body["theme"]), (200, &serde_json::json!("Fiction")));

    let alpha = backend(Reflection::V1Alpha).await;
    let (status, body) = reflect(&h, "lib", alpha).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["upstream"], format!("http://{alpha}"));
    assert_eq!(body["version"], 1, "the same schema read twice is the same version");

    let (status, body) = reflect(&h, "other", backend(Reflection::None).await).await;
    assert_eq!(status, 502, "{body}");
    assert!(body["message"].as_str().unwrap().contains("does not offer server reflection"), "{body}");
}

/// A reflection service that answers with one of several schemas, for a
/// redeploy.
#[derive(Clone)]
struct Switch<S> {
    schemas: Vec<S>,
    current: Arc<AtomicUsize>,
}

impl<S> tonic::server::NamedService for Switch<S> {
    const NAME: &'static str = "grpc.reflection.v1.ServerReflection";
}

impl<S, B> tower::Service<http::Request<B>> for Switch<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let index = self.current.load(Ordering::SeqCst);
        self.schemas[index].call(request)
    }
}

#[tokio::test]
async fn reflect_flag_follows_a_redeploy_and_keeps_the_last_good_schema() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let schema = |set: &'static [u8]| {
        tonic_reflection::server::Builder::configure().register_encoded_file_descriptor_set(set).build_v1().unwrap()
    };
    let broken = "syntax = \"proto3\";\npackage broken.v1;\nimport \"google/api/annotations.proto\";\nmessage R {}\n\
                  service B { rpc M(R) returns (R) { option (google.api.http) = { get: \"/v1/{\" }; } }\n";
    let broken = protogate::registry::source::compile_protos(&[("broken.proto".into(), broken.into())], &[]).unwrap();
    let current = Arc::new(AtomicUsize::new(0));
    let switch = Switch {
        schemas: vec![
            schema(pb::LIBRARY_DESCRIPTOR_SET),
            schema(pb::EVERYTHING_DESCRIPTOR_SET),
            schema(Box::leak(broken.into_boxed_slice())),
        ],
        current: current.clone(),
    };
    let server = tonic::transport::Server::builder()
        .add_service(LibraryServiceServer::new(protogate::example::Library::seeded()))
        .add_service(switch)
        .serve_with_incoming(TcpListenerStream::new(listener));
    tokio::spawn(server);

    let toml = format!("[registry]\nreflect = [\"http://{addr}\"]\nreflect_interval = \"100ms\"");
    let h = Harness::start_with_sets(&toml, Vec::new()).await;
    wait_until(&h, "/v1/shelves/1", 200).await;
    current.store(1, Ordering::SeqCst);
    // The echo service is now in the schema; the backend does not serve it.
    wait_until(&h, "/test/v1/echo", 501).await;
    assert_eq!(h.get_json("/v1/shelves/1").await.0, 404, "the old schema was replaced");

    // A schema the gateway rejects leaves the last good one serving.
    current.store(2, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.get_json("/test/v1/echo").await.0, 501);
}

async fn wait_until(h: &Harness, path: &str, status: u16) {
    for _ in 0..200 {
        if h.get_json(path).await.0 == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path} never answered {status}");
}
