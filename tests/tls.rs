//! TLS on both sides: the public listener with ALPN h2 and http/1.1 (curl,
//! reqwest, a tonic client), certificates swapped on disk under an open
//! stream, client certificates, and `https://` upstreams.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::certs::Ca;
use protogate::config::{Config, Flags};
use protogate::pb::library::v1::library_service_client::LibraryServiceClient;
use protogate::pb::library::v1::{GetBookRequest, GetShelfRequest};
use protogate::{example, pb, server};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("protogate-tls-{name}-{}", common::process::free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn library() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    example::serve_library(listener);
    addr
}

/// The library backend served over TLS as `tls` says, on port 0.
async fn tls_library(tls: ServerTlsConfig) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = pb::library::v1::library_service_server::LibraryServiceServer::new(example::Library::seeded());
    tokio::spawn(
        tonic::transport::Server::builder()
            .tls_config(tls)
            .unwrap()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    addr
}

async fn gateway(toml: &str, upstream: String) -> server::Server {
    let flags = Flags { listen: Some("127.0.0.1:0".into()), upstreams: vec![upstream], ..Flags::default() };
    let config = Config::from_toml(toml, &flags).unwrap();
    let sets = vec![("library".to_string(), pb::LIBRARY_DESCRIPTOR_SET.to_vec())];
    server::start_with_sets(&config, sets).await.unwrap()
}

fn tls_toml(cert: &Path, key: &Path, extra: &str) -> String {
    format!("[tls]\ncert_file = {:?}\nkey_file = {:?}\nreload_interval = \"100ms\"\n{extra}", cert, key)
}

/// A client trusting `ca` that presents `leaf` as its certificate.
fn client_presenting(ca: &str, addr: SocketAddr, leaf: &common::certs::Leaf) -> reqwest::Client {
    let identity = reqwest::Identity::from_pem(format!("{}{}", leaf.cert, leaf.key).as_bytes()).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .resolve("localhost", addr)
        .identity(identity)
        .build()
        .unwrap()
}

fn client_trusting(ca: &str, addr: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .resolve("localhost", addr)
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_public_listener_speaks_h2_and_http1_over_tls() {
    let (ca, dir) = (Ca::new("test ca"), temp_dir("alpn"));
    let (cert, key) = ca.leaf(&["localhost", "127.0.0.1"]).write(&dir, "server");
    let server = gateway(&tls_toml(&cert, &key, ""), format!("http://{}", library().await)).await;
    let addr = server.local_addr;
    let url = format!("https://localhost:{}/v1/shelves/1", addr.port());

    let response = client_trusting(&ca.pem, addr).get(&url).send().await.unwrap();
    assert_eq!((response.status().as_u16(), response.version()), (200, http::Version::HTTP_2));
    let http1 = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap())
        .resolve("localhost", addr)
        .http1_only()
        .build()
        .unwrap();
    let response = http1.get(&url).send().await.unwrap();
    assert_eq!((response.status().as_u16(), response.version()), (200, http::Version::HTTP_11));
    let plain = reqwest::get(format!("http://{addr}/v1/shelves/1")).await;
    assert!(plain.is_err() || plain.unwrap().status() != 200, "plain text must not be served on the TLS port");

    // curl, as the README shows it, negotiating h2 by ALPN.
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let resolve = format!("localhost:{}:127.0.0.1", addr.port());
    let output = tokio::process::Command::new("curl")
        .args(["-s", "--cacert", ca_file.to_str().unwrap(), "--resolve", &resolve, "-w", "\n%{http_version}", &url])
        .output()
        .await;
    match output {
        Ok(output) => {
            let text = String::from_utf8_lossy(&output.stdout).to_string();
            assert!(text.ends_with("\n2") && text.contains("shelves/1"), "curl: {text}");
        }
        Err(e) => common::skip(&format!("curl ({e})"), "apt-get install curl"),
    }
    server.shutdown().await.unwrap();
}

async fn grpc_client(ca: &str, addr: SocketAddr) -> LibraryServiceClient<tonic::transport::Channel> {
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)).domain_name("localhost");
    let channel = tonic::transport::Endpoint::from_shared(format!("https://127.0.0.1:{}", addr.port()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    LibraryServiceClient::new(channel)
}

#[tokio::test]
async fn a_swapped_certificate_serves_new_connections_while_open_streams_finish() {
    let (old_ca, new_ca, dir) = (Ca::new("old ca"), Ca::new("new ca"), temp_dir("swap"));
    let (cert, key) = old_ca.leaf(&["localhost"]).write(&dir, "server");
    let server = gateway(&tls_toml(&cert, &key, ""), format!("http://{}", library().await)).await;
    let addr = server.local_addr;

    // A gRPC client over TLS, with a bidi stream left open across the swap.
    let mut client = grpc_client(&old_ca.pem, addr).await;
    let shelf = client.get_shelf(GetShelfRequest { name: "shelves/1".into() }).await.unwrap();
    assert_eq!(shelf.get_ref().name, "shelves/1");
    let (names, receiver) = tokio::sync::mpsc::channel(4);
    let mut books =
        client.lookup_books(tokio_stream::wrappers::ReceiverStream::new(receiver)).await.unwrap().into_inner();
    names.send(GetBookRequest { name: "shelves/1/books/1".into() }).await.unwrap();
    assert_eq!(books.message().await.unwrap().unwrap().name, "shelves/1/books/1");

    new_ca.leaf(&["localhost"]).write(&dir, "server");
    let url = format!("https://localhost:{}/v1/shelves/1", addr.port());
    let mut swapped = false;
    for _ in 0..100 {
        // A fresh client each time: a new connection, a new handshake.
        if client_trusting(&new_ca.pem, addr).get(&url).send().await.is_ok_and(|r| r.status() == 200) {
            swapped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(swapped, "new connections never got the new certificate");
    assert!(client_trusting(&old_ca.pem, addr).get(&url).send().await.is_err(), "the old certificate is still served");

    names.send(GetBookRequest { name: "shelves/1/books/2".into() }).await.unwrap();
    assert_eq!(books.message().await.unwrap().unwrap().name, "shelves/1/books/2");
    drop(names);
    assert!(books.message().await.unwrap().is_none(), "the open stream ends cleanly");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn client_certificates_are_required_when_a_client_ca_is_set() {
    let (ca, clients, dir) = (Ca::new("server ca"), Ca::new("client ca"), temp_dir("mtls"));
    let (cert, key) = ca.leaf(&["localhost"]).write(&dir, "server");
    let client_ca = dir.join("clients.pem");
    std::fs::write(&client_ca, &clients.pem).unwrap();
    let extra = format!("client_ca_file = {client_ca:?}");
    let server = gateway(&tls_toml(&cert, &key, &extra), format!("http://{}", library().await)).await;
    let addr = server.local_addr;
    let url = format!("https://localhost:{}/v1/shelves/1", addr.port());

    assert!(client_trusting(&ca.pem, addr).get(&url).send().await.is_err(), "a client without a certificate got in");
    let stranger = Ca::new("another ca").leaf(&["intruder"]);
    let with = |leaf: &common::certs::Leaf| client_presenting(&ca.pem, addr, leaf);
    assert!(with(&stranger).get(&url).send().await.is_err(), "a certificate from another CA got in");
    let response = with(&clients.leaf(&["app"])).get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn https_upstreams_are_verified_against_the_configured_ca() {
    let (ca, dir) = (Ca::new("backend ca"), temp_dir("upstream"));
    let leaf = ca.leaf(&["backend.internal"]);
    let addr = tls_library(ServerTlsConfig::new().identity(Identity::from_pem(&leaf.cert, &leaf.key))).await;
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let upstream = format!("https://127.0.0.1:{}", addr.port());

    let toml = format!("[upstream.tls]\nca_file = {ca_file:?}\nserver_name = \"backend.internal\"");
    let server = gateway(&toml, upstream.clone()).await;
    let response = reqwest::get(format!("http://{}/v1/shelves/1", server.local_addr)).await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    server.shutdown().await.unwrap();

    // Without the CA the backend's certificate is refused: 503, not an answer.
    let server = gateway("[upstream.tls]\nserver_name = \"backend.internal\"", upstream).await;
    let response = reqwest::get(format!("http://{}/v1/shelves/1", server.local_addr)).await.unwrap();
    assert_eq!(response.status(), 503);
    server.shutdown().await.unwrap();
}

/// A backend that requires client certificates (mTLS) accepts the
/// gateway's configured one, and refuses a gateway without it. Also the
/// gRPC pass-through and health checks reach it over the same connection.
#[tokio::test]
async fn mtls_upstreams_get_the_configured_client_certificate() {
    let (ca, dir) = (Ca::new("internal ca"), temp_dir("upstream-mtls"));
    let leaf = ca.leaf(&["backend.internal"]);
    let identity = Identity::from_pem(&leaf.cert, &leaf.key);
    let addr =
        tls_library(ServerTlsConfig::new().identity(identity).client_ca_root(Certificate::from_pem(&ca.pem))).await;
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let (cert_file, key_file) = ca.leaf(&["gateway.internal"]).write(&dir, "gateway");
    let upstream = format!("https://127.0.0.1:{}", addr.port());
    let trust = format!("[upstream.tls]\nca_file = {ca_file:?}\nserver_name = \"backend.internal\"\n");

    let identified = format!("{trust}cert_file = {cert_file:?}\nkey_file = {key_file:?}");
    let server = gateway(&identified, upstream.clone()).await;
    let response = reqwest::get(format!("http://{}/v1/shelves/1", server.local_addr)).await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.local_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let shelf =
        LibraryServiceClient::new(channel).get_shelf(GetShelfRequest { name: "shelves/1".into() }).await.unwrap();
    assert_eq!(shelf.into_inner().name, "shelves/1", "native gRPC pass-through over mTLS");
    server.shutdown().await.unwrap();

    let anonymous = gateway(&trust, upstream).await;
    let response = reqwest::get(format!("http://{}/v1/shelves/1", anonymous.local_addr)).await.unwrap();
    assert_eq!(response.status(), 503, "the backend refuses a gateway without a certificate");
    anonymous.shutdown().await.unwrap();
}

/// With `auth.client_certificates`, a verified client certificate is a
/// credential: its common name is the consumer and its subject the
/// forwarded subject (client-sent copies stripped), and a route that needs
/// a caller refuses a client without one.
#[tokio::test]
async fn a_verified_client_certificate_is_an_identity_for_auth_and_forwarding() {
    let (ca, clients, dir) = (Ca::new("server ca"), Ca::new("client ca"), temp_dir("mtls-identity"));
    let (cert, key) = ca.leaf(&["localhost"]).write(&dir, "server");
    let client_ca = dir.join("clients.pem");
    std::fs::write(&client_ca, &clients.pem).unwrap();
    let toml = format!(
        "{}\n[auth]\nclient_certificates = true\n[[auth.rules]]\nselector = \"protogate.test.v1.EchoService.EchoMetadata\"\n",
        tls_toml(&cert, &key, &format!("client_ca_file = {client_ca:?}\nclient_auth = \"optional\""))
    );
    let h = common::Harness::start_with(&toml).await;
    let addr: SocketAddr = h.base.trim_start_matches("http://").parse().unwrap();
    let url = format!("https://localhost:{}/test/v1/metadata", addr.port());
    let call = |client: reqwest::Client| {
        let url = url.clone();
        async move {
            let response = client.get(&url).header("grpc-metadata-x-subject", "spoofed").send().await.unwrap();
            common::read_json(response).await
        }
    };

    let (status, body) = call(client_trusting(&ca.pem, addr)).await;
    assert_eq!((status, &body["code"]), (401, &serde_json::json!(16)), "no certificate, no caller: {body}");
    let (status, body) = call(client_presenting(&ca.pem, addr, &clients.leaf(&["app"]))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["entries"]["x-consumer"], "app", "{body}");
    assert_eq!(body["entries"]["x-subject"], "CN=app", "the subject, not the client's copy: {body}");
}

#[test]
fn client_certificates_as_credentials_need_a_client_ca() {
    let flags = Flags { upstreams: vec!["http://127.0.0.1:9".into()], ..Flags::default() };
    let errors = Config::from_toml("[auth]\nclient_certificates = true\n", &flags).unwrap_err().to_string();
    assert!(errors.contains("`auth.client_certificates`: needs `tls.client_ca_file`"), "{errors}");
}
