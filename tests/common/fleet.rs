//! Backends that can die: each a library server on its own thread and
//! runtime, counting the calls it gets and optionally answering late.
//! `kill` drops the runtime, so every connection dies at once as in a
//! crashed process; `restart` serves again on the same address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use protogate::example::{self, Library};
use protogate::pb::library::v1::library_service_server::LibraryServiceServer;
use tonic::server::NamedService;

/// One call a member received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub started: std::time::Instant,
    pub ended: Option<std::time::Instant>,
    /// The `x-consumer` metadata the gateway forwarded, if any.
    pub consumer: Option<String>,
}

pub type Log = Arc<std::sync::Mutex<Vec<Received>>>;

pub struct Member {
    pub addr: SocketAddr,
    /// Every call, in the order they arrived.
    pub log: Log,
    /// Calls of the library service this member answered or started.
    pub calls: Arc<AtomicUsize>,
    /// Milliseconds added before each answer.
    pub delay_ms: Arc<AtomicU64>,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Member {
    pub fn start(delay_ms: u64) -> Self {
        Self::start_with(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), delay_ms)
    }

    pub fn start_at(addr: SocketAddr) -> Self {
        Self::start_with(std::net::TcpListener::bind(addr).unwrap(), 0)
    }

    fn start_with(listener: std::net::TcpListener, delay_ms: u64) -> Self {
        let mut member = Self {
            addr: listener.local_addr().unwrap(),
            calls: Arc::default(),
            log: Arc::default(),
            delay_ms: Arc::new(AtomicU64::new(delay_ms)),
            stop: None,
            thread: None,
        };
        member.serve(listener);
        member
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn serve(&mut self, listener: std::net::TcpListener) {
        listener.set_nonblocking(true).unwrap();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let (calls, delay_ms, log) = (self.calls.clone(), self.delay_ms.clone(), self.log.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
            runtime.spawn(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let service = Counted { inner: LibraryServiceServer::new(Library::seeded()), calls, delay_ms, log };
                let (_reporter, health) = tonic_health::server::health_reporter();
                tonic::transport::Server::builder()
                    .add_service(health)
                    .add_service(service)
                    .serve_with_incoming(example::incoming(listener))
                    .await
            });
            let _ = stopped.recv();
            // Dropping the runtime drops every connection task: a crash.
            runtime.shutdown_timeout(Duration::ZERO);
        });
        self.stop = Some(stop);
        self.thread = Some(thread);
    }

    /// Stops the backend abruptly: its connections drop mid-call.
    pub fn kill(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }

    /// Serves again on the same address.
    pub fn restart(&mut self) {
        self.kill();
        let listener = (0..100)
            .find_map(|_| {
                std::net::TcpListener::bind(self.addr).ok().or_else(|| {
                    std::thread::sleep(Duration::from_millis(50));
                    None
                })
            })
            .expect("the port is free again");
        self.serve(listener);
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

#[derive(Clone)]
struct Counted<S> {
    inner: S,
    calls: Arc<AtomicUsize>,
    delay_ms: Arc<AtomicU64>,
    log: Log,
}

impl<S: NamedService> NamedService for Counted<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower::Service<http::Request<B>> for Counted<S>
where
    S: tower::Service<http::Request<B>> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let delay = Duration::from_millis(self.delay_ms.load(Ordering::SeqCst));
        let consumer = request.headers().get("x-consumer").and_then(|v| v.to_str().ok()).map(str::to_string);
        let entry = Received {
            path: request.uri().path().to_string(),
            started: std::time::Instant::now(),
            ended: None,
            consumer,
        };
        let index = {
            let mut log = self.log.lock().unwrap();
            log.push(entry);
            log.len() - 1
        };
        let (answer, log) = (self.inner.call(request), self.log.clone());
        Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let answer = answer.await;
            log.lock().unwrap()[index].ended = Some(std::time::Instant::now());
            answer
        })
    }
}
