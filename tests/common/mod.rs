//! Test harness: the library and echo backends on port 0, the gateway in
//! front of them on port 0, and a real HTTP client.

#![allow(dead_code)]

pub mod certs;
pub mod echo;
pub mod fleet;
pub mod hostile;
pub mod process;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::StreamExt;
use protogate::config::{Config, Flags};
use protogate::pb::protogate::test::v1::echo_service_server::EchoServiceServer;
use protogate::{example, pb, server};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

/// Skips a test for a missing tool: refused under `CI=true` (where
/// `.ci/run` installs everything), and otherwise said on the terminal's own
/// stderr, past cargo test's output capture, so a plain `cargo test` shows
/// what did not run and why.
pub fn skip(missing: &str, install: &str) {
    assert!(std::env::var("CI").is_err(), "{missing} is missing under CI=true; .ci/run installs it ({install})");
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {}: {missing} is missing ({install})", current_test());
}

/// An npm tool `.ci/run` installs under `dir` (relative to the repository),
/// or `None` after a printed skip.
pub fn npm_tool(dir: &str, name: &str) -> Option<std::path::PathBuf> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir).join("node_modules/.bin").join(name);
    if path.exists() {
        return Some(path);
    }
    skip(&format!("{dir}/node_modules/.bin/{name}"), ".ci/run installs it with npm");
    None
}

fn current_test() -> String {
    std::thread::current().name().unwrap_or("a test").to_string()
}

pub struct Harness {
    pub base: String,
    /// The admin API, when the configuration enables it.
    pub admin: Option<String>,
    pub library_addr: SocketAddr,
    pub echo_addr: SocketAddr,
    pub client: reqwest::Client,
    /// Calls the echo backend received.
    pub echo_calls: Arc<AtomicUsize>,
    /// TCP connections the echo backend accepted.
    pub echo_connections: Arc<AtomicUsize>,
    pub server: Option<server::Server>,
    config_path: Option<std::path::PathBuf>,
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with("").await
    }

    /// Starts everything with extra TOML configuration.
    pub async fn start_with(toml: &str) -> Self {
        let sets = vec![
            ("library".to_string(), pb::LIBRARY_DESCRIPTOR_SET.to_vec()),
            ("everything".to_string(), pb::EVERYTHING_DESCRIPTOR_SET.to_vec()),
        ];
        Self::start_with_sets(toml, sets).await
    }

    /// Starts everything with the configuration in a file, so it can be
    /// reloaded: rewrite `config_file()` and call the reloader.
    pub async fn start_with_file(toml: &str) -> Self {
        let path = std::env::temp_dir().join(format!("protogate-harness-{}.toml", process::free_port()));
        std::fs::write(&path, toml).unwrap();
        let sets = vec![
            ("library".to_string(), pb::LIBRARY_DESCRIPTOR_SET.to_vec()),
            ("everything".to_string(), pb::EVERYTHING_DESCRIPTOR_SET.to_vec()),
        ];
        Self::start_from(Some(path), toml, sets).await
    }

    /// Starts the backends and a gateway serving only `sets` at first.
    pub async fn start_with_sets(toml: &str, sets: Vec<(String, Vec<u8>)>) -> Self {
        Self::start_from(None, toml, sets).await
    }

    async fn start_from(file: Option<std::path::PathBuf>, toml: &str, sets: Vec<(String, Vec<u8>)>) -> Self {
        let library = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let library_addr = library.local_addr().unwrap();
        example::serve_library(library);
        let echo = echo::Echo::default();
        let echo_calls = echo.calls.clone();
        let (echo_addr, echo_connections) = serve_echo(echo).await;
        let flags = Flags {
            listen: Some("127.0.0.1:0".into()),
            descriptors: Vec::new(),
            upstreams: vec![format!("http://{library_addr}")],
            ..Flags::default()
        };
        let mut flags = flags;
        if sets.iter().any(|(name, _)| name == "everything") {
            flags.upstreams.push(format!("protogate.test.v1.EchoService=http://{echo_addr}"));
        }
        let config = match &file {
            Some(path) => Config::load(Some(path), &flags).unwrap(),
            None => Config::from_toml(toml, &flags).unwrap(),
        };
        let server = server::start_with_sets(&config, sets).await.unwrap();
        Self {
            base: format!("http://{}", server.local_addr),
            admin: server.admin_addr.map(|a| format!("http://{a}")),
            library_addr,
            echo_addr,
            client: reqwest::Client::new(),
            echo_calls,
            echo_connections,
            server: Some(server),
            config_path: file,
        }
    }

    /// The file `start_with_file` loaded.
    pub fn config_file(&self) -> std::path::PathBuf {
        self.config_path.clone().expect("started with start_with_file")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn calls(&self) -> usize {
        self.echo_calls.load(Ordering::SeqCst)
    }

    /// GET, returning status and parsed JSON.
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        read_json(response).await
    }

    /// POST a JSON text, returning status and parsed JSON.
    pub async fn post_json(&self, path: &str, body: &str) -> (u16, serde_json::Value) {
        let response = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        read_json(response).await
    }
}

/// The README's complete policy example, every policy on for the example
/// library service.
pub const POLICY_EXAMPLE: &str = "examples/policies/gateway.toml";

/// The policy example as a user loads it, in front of the example library backend, both
/// listeners on port 0; with the public base URL.
pub async fn policy_example() -> (server::Server, String) {
    let flags = Flags {
        listen: Some("127.0.0.1:0".into()),
        admin_listen: Some("127.0.0.1:0".into()),
        upstreams: vec![process::library_backend().await],
        ..Flags::default()
    };
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(POLICY_EXAMPLE);
    let config = Config::load(Some(&example), &flags).unwrap();
    let server = server::start(&config).await.unwrap();
    let base = format!("http://{}", server.local_addr);
    (server, base)
}

pub async fn read_json(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, json)
}

/// Serves the echo backend on port 0, counting accepted connections.
pub async fn serve_echo(echo: echo::Echo) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    let incoming = TcpListenerStream::new(listener).inspect(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(echo::TrailerEchoLayer)
            .add_service(
                EchoServiceServer::new(echo)
                    .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
                    .send_compressed(tonic::codec::CompressionEncoding::Gzip),
            )
            .serve_with_incoming(incoming),
    );
    (addr, connections)
}

/// Runs a connect-node script of tests/clients against a fresh gateway
/// (base URL and echo descriptor set as arguments) and reads the JSON it
/// prints; none, with a printed skip, without connect-node. Bounded: a
/// gateway that held messages back would leave a duplex script waiting.
pub async fn connect_node(script: &str) -> Option<serde_json::Value> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients");
    if !std::path::Path::new(dir).join("node_modules/@connectrpc/connect-node").exists() {
        skip("connect-node", "cd tests/clients && npm install");
        return None;
    }
    let h = Harness::start().await;
    let set = std::env::temp_dir().join(format!("protogate-node-{}.binpb", process::free_port()));
    std::fs::write(&set, pb::EVERYTHING_DESCRIPTOR_SET).unwrap();
    let run = tokio::process::Command::new("node")
        .arg(format!("{dir}/{script}"))
        .arg(&h.base)
        .arg(&set)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(120), run)
        .await
        .unwrap_or_else(|_| panic!("{script} finished within 120 s"))
        .expect("node runs");
    let _ = std::fs::remove_file(&set);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout} {}", String::from_utf8_lossy(&output.stderr));
    Some(serde_json::from_str(stdout.trim()).unwrap())
}
