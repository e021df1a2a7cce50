//! The accept loop: HTTP/1.1 and HTTP/2 (h2c, or TLS with ALPN) on one port through
//! hyper-util's auto builder, with the connection-level limits that keep
//! one slow or hostile peer from holding what others need. axum::serve
//! exposes none of these: with it, half-sent headers stayed open for good
//! (500 of 500 still open at 59 s) and zero-window HTTP/2 clients held
//! every request permit.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use crate::config::Limits;
use crate::middleware::auth::certificate::ClientCertificate;

/// Serves `app` on `listener` until `signal` turns true, then lets
/// connections finish (HTTP/2 clients get GOAWAY) for `drain_timeout`.
pub fn spawn(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<super::tls::Acceptor>,
    mut signal: watch::Receiver<bool>,
) -> JoinHandle<io::Result<()>> {
    tokio::spawn(async move {
        let builder = builder(&limits);
        let graceful = GracefulShutdown::new();
        let connections = Arc::new(Semaphore::new(limits.max_connections));
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: pause, never spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = async { signal.wait_for(|stop| *stop).await.map(drop) } => break,
            };
            let Ok(permit) = connections.clone().try_acquire_owned() else {
                tracing::warn!(%peer, max = limits.max_connections, "connection refused: limits.max_connections reached");
                continue;
            };
            // Without TCP_NODELAY a response written in two parts waited for
            // the client's delayed ACK: 44 ms per request at one connection.
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
            let socket = SendProgress::new(tcp, limits.send_timeout);
            let app = app.clone();
            let service = move |certificate: Option<Arc<ClientCertificate>>| {
                TowerToHyperService::new(app.map_request(move |mut request: http::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    if let Some(certificate) = &certificate {
                        request.extensions_mut().insert(certificate.clone());
                    }
                    request
                }))
            };
            match &tls {
                None => {
                    let service = service(None);
                    let connection = builder.serve_connection_with_upgrades(TokioIo::new(socket), service);
                    let connection = graceful.watch(connection.into_owned());
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                        drop(permit);
                    });
                }
                Some(tls) => {
                    // The handshake runs on the connection's own task, bounded
                    // like a request's headers, so a silent peer holds nothing.
                    let (acceptor, builder, handshake) = (tls.acceptor(), builder.clone(), limits.header_read_timeout);
                    let watcher = graceful.watcher();
                    tokio::spawn(async move {
                        let stream = match tokio::time::timeout(handshake, acceptor.accept(socket)).await {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                            Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                        };
                        // Read once per connection; only a verified chain is there.
                        let certificate = stream.get_ref().1.peer_certificates().and_then(|chain| chain.first());
                        let service =
                            service(certificate.and_then(|der| ClientCertificate::from_der(der)).map(Arc::new));
                        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                        if let Err(e) = watcher.watch(connection.into_owned()).await {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                        drop(permit);
                    });
                }
            }
        }
        if tokio::time::timeout(limits.drain_timeout, graceful.shutdown()).await.is_err() {
            tracing::warn!(grace = ?limits.drain_timeout, "connections still open after the drain timeout; closing them");
        }
        Ok(())
    })
}

fn builder(limits: &Limits) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    let header_bytes = u32::try_from(limits.max_header_bytes + limits.max_uri_length).unwrap_or(u32::MAX);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // The request line and headers must fit; the limits layer answers
        // oversized ones in the protocol's form, hyper only past this.
        .max_buf_size((limits.max_header_bytes + limits.max_uri_length + 4096).max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_streams_per_connection)
        .max_header_list_size(header_bytes)
        // Dead peers are found by pings, not by TCP keep-alive's hours.
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        // Rapid-reset style floods end the connection early.
        .max_pending_accept_reset_streams(64)
        .max_local_error_reset_streams(256);
    builder
}

/// A client socket whose writes must make progress: a write (or flush)
/// that stays pending for `timeout` fails the connection, so a client that
/// stops reading cannot keep its requests' permits and buffers forever.
struct SendProgress {
    inner: TcpStream,
    timeout: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl SendProgress {
    fn new(inner: TcpStream, timeout: Duration) -> Self {
        Self { inner, timeout, stalled: None }
    }

    fn track<T>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let timeout = self.timeout;
        let stalled = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + timeout)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => {
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading its response")))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for SendProgress {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendProgress {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.track(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.track(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.track(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
