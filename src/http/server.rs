//! The HTTP/1.1 server loop, with the limits a service facing the internet needs: a deadline for
//! receiving a request's head, an idle timeout for keep-alive connections, a stall timeout for
//! writing a response, and a bounded graceful shutdown (see `docs/faults.md`).
//!
//! - **Idle** (`HTTP_IDLE_TIMEOUT`): hyper's header-read timer runs from the moment a connection
//!   waits for a request (accepted, or its previous response sent) until that request's head is
//!   complete. A connection that sends nothing for this long is closed.
//! - **Head** (`HTTP_HEADER_TIMEOUT`, shorter): once the first byte of a request arrives, its
//!   head (request line and headers) must be complete within this time. The connection's stream
//!   ([`Deadlines`]) sees the first byte; hyper says when the head is complete, by handing the
//!   request to the service. A client dribbling a head byte by byte (slowloris) is cut off.
//! - **Write** (`HTTP_WRITE_TIMEOUT`): a response write that makes no progress for this long
//!   (a client that stopped reading) fails, and the connection with it.
//! - **Shutdown** (`SHUTDOWN_TIMEOUT`): on the shutdown signal the listener closes, idle
//!   connections are closed at once, requests in flight get until the deadline to finish, then
//!   whatever is left is dropped.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

/// The server's time limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From the first byte of a request to the end of its head.
    pub header_timeout: Duration,
    /// From when a connection waits for a request to the end of that request's head.
    pub idle_timeout: Duration,
    /// How long a response write may make no progress.
    pub write_timeout: Duration,
    /// How long a shutdown waits for requests in flight.
    pub shutdown_timeout: Duration,
}

/// Serves `router` on `listener` until `shutdown` completes, then shuts down within
/// `limits.shutdown_timeout`. Each request carries `ConnectInfo<SocketAddr>` of its peer.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // Reap finished connections so the set stays as large as the open ones.
        while connections.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: wait a little instead of spinning.
                    tracing::warn!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let phase = Arc::new(AtomicU8::new(WAITING));
        let io = TokioIo::new(Deadlines::new(stream, Arc::clone(&phase), limits));
        let on_request = Arc::clone(&phase);
        let service = router
            .clone()
            .map_request(move |mut request: axum::http::Request<Incoming>| {
                // hyper has the whole head: no head deadline until the response is sent.
                on_request.store(BUSY, Ordering::SeqCst);
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            })
            .map_response(move |response: axum::response::Response| {
                // When hyper has sent the whole body (and drops it), the connection waits for
                // its next request.
                let sent = ResponseSent(Arc::clone(&phase));
                response.map(|body| {
                    Body::new(body.map_frame(move |frame| {
                        let _ = &sent;
                        frame
                    }))
                })
            });
        let service = TowerToHyperService::new(service);
        let connection = graceful.watch(http.serve_connection(io, service));
        connections.spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%peer, error = %err, "connection closed with an error");
            }
        });
    }
    drop(listener);
    let open = graceful.count();
    if tokio::time::timeout(limits.shutdown_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            open,
            timeout_ms = limits.shutdown_timeout.as_millis() as u64,
            "requests still in flight when the shutdown deadline passed; closing their connections"
        );
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}
/// Phases of a connection: waiting for a request, receiving its head, or busy with it.
const WAITING: u8 = 0;
const HEAD: u8 = 1;
const BUSY: u8 = 2;

/// Dropped with a response's body, once hyper has sent it: the connection waits again.
struct ResponseSent(Arc<AtomicU8>);

impl Drop for ResponseSent {
    fn drop(&mut self) {
        let _ = self
            .0
            .compare_exchange(BUSY, WAITING, Ordering::SeqCst, Ordering::SeqCst);
    }
}

/// A connection's stream that fails with `TimedOut` when a request's head is not complete
/// within `header_timeout` of its first byte, or when a write makes no progress for
/// `write_timeout`. The phase is shared with the connection's service, which marks a request
/// whose head hyper has parsed, and with its responses, which mark when one has been sent.
pub struct Deadlines<S> {
    inner: S,
    phase: Arc<AtomicU8>,
    limits: Limits,
    head: Pin<Box<Sleep>>,
    write: Pin<Box<Sleep>>,
    write_armed: bool,
}

impl<S> Deadlines<S> {
    pub fn new(inner: S, phase: Arc<AtomicU8>, limits: Limits) -> Self {
        Self {
            inner,
            phase,
            limits,
            head: Box::pin(tokio::time::sleep(limits.header_timeout)),
            write: Box::pin(tokio::time::sleep(limits.write_timeout)),
            write_armed: false,
        }
    }

    /// A write (or flush) is pending: fails once it has made no progress for the write timeout.
    fn poll_write_stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if !self.write_armed {
            self.write
                .as_mut()
                .reset(Instant::now() + self.limits.write_timeout);
            self.write_armed = true;
        }
        ready!(self.write.as_mut().poll(cx));
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client did not read the response in time",
        ))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Deadlines<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let first_bytes = buf.filled().len() > before
                    && this
                        .phase
                        .compare_exchange(WAITING, HEAD, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok();
                if first_bytes {
                    this.head
                        .as_mut()
                        .reset(Instant::now() + this.limits.header_timeout);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.phase.load(Ordering::SeqCst) == HEAD => {
                ready!(this.head.as_mut().poll(cx));
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the request head was not received in time",
                )))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Deadlines<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Pending => this.poll_write_stall(cx).map(Err),
            done => {
                this.write_armed = false;
                done
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => this.poll_write_stall(cx).map(Err),
            done => {
                this.write_armed = false;
                done
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => this.poll_write_stall(cx).map(Err),
            done => {
                this.write_armed = false;
                done
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
