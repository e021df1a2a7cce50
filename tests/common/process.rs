//! Real processes for tests: `redis-server` on a free port and gateway
//! processes (the `protogate` binary) whose addresses are read from the log.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const BIN: &str = env!("CARGO_BIN_EXE_protogate");

pub struct Redis {
    child: Child,
    pub port: u16,
}

pub struct Gateway {
    pub child: Child,
    pub public: String,
    pub admin: String,
}

impl Redis {
    /// Starts redis-server on a free port, or `None` (a printed skip) where
    /// it is not installed outside CI.
    pub async fn start() -> Option<Self> {
        let port = free_port();
        Self::start_on(port).await
    }

    pub async fn start_on(port: u16) -> Option<Self> {
        let spawned = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) => {
                super::skip(&format!("redis-server ({e})"), "apt-get install redis-server");
                return None;
            }
        };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Some(Self { child, port });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not start on port {port}");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub async fn stop(mut self) -> u16 {
        self.child.kill().await.unwrap();
        self.port
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub async fn library_backend() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    protogate::example::serve_library(listener);
    url
}

/// Starts `protogate` with `args` and waits until both listeners are up.
pub async fn spawn_gateway(args: &[&str]) -> Gateway {
    let mut child = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "info,protogate=debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (mut public, mut admin) = (None, None);
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let value =
                |marker: &str| line.split_once(marker).map(|(_, rest)| rest.split(' ').next().unwrap().to_string());
            admin = admin.take().or_else(|| value("admin_addr="));
            public = public.take().or_else(|| value("local_addr="));
            if public.is_some() && admin.is_some() {
                return;
            }
        }
        panic!("the gateway exited before listening");
    })
    .await;
    assert!(found.is_ok(), "the gateway did not start");
    // Warnings and errors show in the output of a failing test.
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("WARN") || line.contains("ERROR") {
                println!("gateway: {line}");
            }
        }
    });
    Gateway { child, public: format!("http://{}", public.unwrap()), admin: format!("http://{}", admin.unwrap()) }
}
