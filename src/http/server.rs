//! The HTTP/1.1 server loop, with the limits a service facing the internet needs: a deadline for
//! receiving a request's head, an idle timeout for keep-alive connections, and a bounded
//! graceful shutdown (see `docs/faults.md`).
//!
//! - **Idle** (`HTTP_IDLE_TIMEOUT`): hyper's header-read timer runs from the moment a connection
//!   waits for a request (accepted, or its previous response sent) until that request's head is
//!   complete. A connection that sends nothing for this long is closed.
//! - **Head** (`HTTP_HEADER_TIMEOUT`, shorter): once the first byte of a request arrives, its
//!   whole head (request line and headers) must arrive within this time; [`HeadDeadline`] watches
//!   the bytes read for the blank line that ends a head. A client dribbling a head byte by byte
//!   (slowloris) is cut off.
//! - **Shutdown** (`SHUTDOWN_TIMEOUT`): on the shutdown signal the listener closes, idle
//!   connections are closed at once, requests in flight get until the deadline to finish, then
//!   whatever is left is dropped.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
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
        let io = TokioIo::new(HeadDeadline::new(stream, limits.header_timeout));
        let service = TowerToHyperService::new(router.clone().map_request(
            move |mut request: axum::http::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            },
        ));
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

/// Where a connection is in its current request, as far as reading the head goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request (a new connection, or a response has been written).
    Between,
    /// Receiving a head; `newlines` counts the line feeds in a row seen so far (carriage returns
    /// ignored), two of which end it.
    Head { newlines: u8 },
    /// The head is complete: body, handler and response take as long as their own limits allow.
    Busy,
}

/// A connection's stream that fails reads with `TimedOut` when a request's head takes longer
/// than the deadline from its first byte. It sees only bytes, not HTTP: a head ends at the
/// first empty line (`\r\n\r\n`, or `\n\n` as tolerant parsers accept), and a new request
/// begins with the first byte read after a response was written (interim `1xx` responses
/// excepted).
pub struct HeadDeadline<S> {
    inner: S,
    timeout: Duration,
    phase: Phase,
    deadline: Pin<Box<Sleep>>,
}

impl<S> HeadDeadline<S> {
    pub fn new(inner: S, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            phase: Phase::Between,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    fn observe_read(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut newlines = match self.phase {
            Phase::Busy => return,
            Phase::Between => {
                self.deadline.as_mut().reset(Instant::now() + self.timeout);
                0
            }
            Phase::Head { newlines } => newlines,
        };
        for byte in bytes {
            match byte {
                b'\n' => {
                    newlines += 1;
                    if newlines == 2 {
                        self.phase = Phase::Busy;
                        return;
                    }
                }
                b'\r' => {}
                _ => newlines = 0,
            }
        }
        self.phase = Phase::Head { newlines };
    }

    fn observe_write(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() && !bytes.starts_with(b"HTTP/1.1 1") {
            self.phase = Phase::Between;
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HeadDeadline<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.observe_read(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Pending if matches!(this.phase, Phase::Head { .. }) => {
                ready!(this.deadline.as_mut().poll(cx));
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the request head was not received in time",
                )))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeadDeadline<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        this.observe_write(&buf[..written]);
        Poll::Ready(Ok(written))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        if written > 0 {
            let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| b);
            this.observe_write(first);
        }
        Poll::Ready(Ok(written))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase_after(reads: &[&[u8]]) -> Phase {
        let mut stream = HeadDeadline::new(tokio::io::empty(), Duration::from_secs(1));
        for bytes in reads {
            stream.observe_read(bytes);
        }
        stream.phase
    }

    #[tokio::test]
    async fn a_head_ends_at_the_first_empty_line_across_reads() {
        assert_eq!(
            phase_after(&[b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"]),
            Phase::Busy
        );
        assert_eq!(phase_after(&[b"GET / HTTP/1.1\nHost: a\n\n"]), Phase::Busy);
        assert_eq!(
            phase_after(&[b"GET / HTTP/1.1\r\nHost: a\r", b"\n", b"\r", b"\n"]),
            Phase::Busy
        );
        assert_eq!(
            phase_after(&[b"GET / HTTP/1.1\r\nHost: a\r\n"]),
            Phase::Head { newlines: 1 }
        );
        assert_eq!(
            phase_after(&[b"GET / HTTP/1.1\r\n", b"X: \r\n", b"Y"]),
            Phase::Head { newlines: 0 }
        );
        assert_eq!(phase_after(&[b""]), Phase::Between);
    }

    #[tokio::test]
    async fn a_response_starts_the_wait_for_the_next_request_but_an_interim_one_does_not() {
        let mut stream = HeadDeadline::new(tokio::io::empty(), Duration::from_secs(1));
        stream.observe_read(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n");
        stream.observe_write(b"HTTP/1.1 100 Continue\r\n\r\n");
        assert_eq!(stream.phase, Phase::Busy);
        stream.observe_read(b"{\"body\": 1}");
        assert_eq!(stream.phase, Phase::Busy);
        stream.observe_write(b"HTTP/1.1 200 OK\r\n");
        assert_eq!(stream.phase, Phase::Between);
        stream.observe_read(b"G");
        assert_eq!(stream.phase, Phase::Head { newlines: 0 });
    }
}
