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
//!
//! A request answered without its body having been read (401 before the body, 405, 413) would
//! leave the rest of that body on the connection. hyper, seeing the body dropped, reads once
//! more and, unless that finishes the body, closes the connection after the answer; when that
//! happens after the answer's head is written, the answer does not say `Connection: close`, and
//! a client reusing the connection loses its next request. So before the answer goes out, the
//! rest of the body is read and discarded ([`drain`]): up to [`DRAIN_LIMIT`] bytes arriving
//! within [`DRAIN_TIME`], and the connection is kept. Beyond either, the answer says
//! `Connection: close`, and after it the connection goes on reading and discarding what the
//! client still sends for up to [`LINGER_TIME`] ([`Deadlines`]), so a client still sending its
//! body reads the answer instead of a reset. Either way the body is read while the connection is
//! busy with its request, never after the response is sent, where its bytes would count as the
//! first of the next request's head and start the head deadline.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, Response, header};
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Bytes, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

/// The most of an unread request body that is read and discarded to keep its connection.
pub const DRAIN_LIMIT: u64 = 64 * 1024;
/// How long the answer to a request waits for the unread rest of its body.
pub const DRAIN_TIME: Duration = Duration::from_secs(1);
/// How long a connection closed after an answer given before its request's body was read goes
/// on reading (and discarding) what the client still sends.
pub const LINGER_TIME: Duration = Duration::from_secs(2);

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
        let state = Arc::new(ConnectionState::default());
        let io = TokioIo::new(Deadlines::new(stream, Arc::clone(&state), limits));
        let router = router.clone();
        let service = TowerToHyperService::new(tower::service_fn(move |request| {
            respond(router.clone(), Arc::clone(&state), peer, request)
        }));
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

/// Answers one request of a connection with `router`, keeping the connection's phase: busy from
/// the end of the request's head until hyper has sent the response. What the router left unread
/// of the request body is drained before the response goes out, or the response closes the
/// connection (see the module's documentation).
async fn respond(
    router: Router,
    state: Arc<ConnectionState>,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    // hyper has the whole head: no head deadline until the response is sent.
    state.phase.store(BUSY, Ordering::SeqCst);
    let (rest_tx, mut rest_rx) = oneshot::channel();
    let mut request = request.map(|body| {
        Body::new(Unread {
            body: Some(body),
            rest: Some(rest_tx),
        })
    });
    request.extensions_mut().insert(ConnectInfo(peer));
    let mut response = router.oneshot(request).await?;
    // The router has dropped the request (or still holds its body somewhere: then it is its
    // business, and nothing is received here).
    if let Ok(rest) = rest_rx.try_recv()
        && !drain(rest).await
    {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        state.linger.store(true, Ordering::SeqCst);
    }
    // When hyper has sent the whole body (and drops it), the connection waits for its next
    // request.
    let sent = ResponseSent(state);
    Ok(response.map(|body| {
        Body::new(body.map_frame(move |frame| {
            let _ = &sent;
            frame
        }))
    }))
}

/// Reads and discards `rest`, what is left of a request body, when it is at most
/// [`DRAIN_LIMIT`] bytes and arrives within [`DRAIN_TIME`]; whether it was all read (and the
/// connection can serve another request).
async fn drain(mut rest: Incoming) -> bool {
    if rest.size_hint().lower() > DRAIN_LIMIT {
        return false;
    }
    let read_all = async move {
        let mut left = DRAIN_LIMIT;
        while let Some(frame) = rest.frame().await {
            let Ok(frame) = frame else {
                return false;
            };
            if let Some(data) = frame.data_ref() {
                let Some(still) = left.checked_sub(data.len() as u64) else {
                    return false;
                };
                left = still;
            }
        }
        true
    };
    tokio::time::timeout(DRAIN_TIME, read_all)
        .await
        .unwrap_or(false)
}

/// A request body as the router sees it. Dropped before its end, it hands the rest back to
/// [`respond`] instead of dropping it, which would have hyper close the connection.
struct Unread {
    /// `None` once the body has ended or failed.
    body: Option<Incoming>,
    rest: Option<oneshot::Sender<Incoming>>,
}

impl HttpBody for Unread {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let Some(body) = this.body.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = ready!(Pin::new(body).poll_frame(cx));
        if !matches!(frame, Some(Ok(_))) {
            this.body = None;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(|body| body.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |body| body.size_hint())
    }
}

impl Drop for Unread {
    fn drop(&mut self) {
        if let (Some(body), Some(rest)) = (self.body.take(), self.rest.take())
            && !body.is_end_stream()
        {
            let _ = rest.send(body);
        }
    }
}

/// Phases of a connection: waiting for a request, receiving its head, or busy with it.
const WAITING: u8 = 0;
const HEAD: u8 = 1;
const BUSY: u8 = 2;

/// What a connection's stream ([`Deadlines`]) shares with its service.
#[derive(Debug)]
pub struct ConnectionState {
    /// [`WAITING`], [`HEAD`] or [`BUSY`].
    phase: AtomicU8,
    /// The last response closes the connection while the client may still be sending a body:
    /// read (and discard) what comes until the client closes, for up to [`LINGER_TIME`].
    linger: AtomicBool,
}

impl Default for ConnectionState {
    fn default() -> Self {
        Self {
            phase: AtomicU8::new(WAITING),
            linger: AtomicBool::new(false),
        }
    }
}

/// Dropped with a response's body, once hyper has sent it: the connection waits again.
struct ResponseSent(Arc<ConnectionState>);

impl Drop for ResponseSent {
    fn drop(&mut self) {
        let _ = self
            .0
            .phase
            .compare_exchange(BUSY, WAITING, Ordering::SeqCst, Ordering::SeqCst);
    }
}

/// A connection's stream that fails with `TimedOut` when a request's head is not complete
/// within `header_timeout` of its first byte, or when a write makes no progress for
/// `write_timeout`. The phase is shared with the connection's service, which marks a request
/// whose head hyper has parsed, and with its responses, which mark when one has been sent.
/// When the service asks for it, shutting the stream down lingers: after the end of the
/// response, what the client still sends is read and discarded until it closes its side, for
/// up to [`LINGER_TIME`] (closing a socket with unread data would reset the connection, and
/// the client could lose the response).
pub struct Deadlines<S> {
    inner: S,
    state: Arc<ConnectionState>,
    limits: Limits,
    head: Pin<Box<Sleep>>,
    write: Pin<Box<Sleep>>,
    write_armed: bool,
    /// Set once the write side is shut down, when lingering: until when.
    linger: Option<Pin<Box<Sleep>>>,
}

impl<S> Deadlines<S> {
    pub fn new(inner: S, state: Arc<ConnectionState>, limits: Limits) -> Self {
        Self {
            inner,
            state,
            limits,
            head: Box::pin(tokio::time::sleep(limits.header_timeout)),
            write: Box::pin(tokio::time::sleep(limits.write_timeout)),
            write_armed: false,
            linger: None,
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
                        .state
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
            Poll::Pending if this.state.phase.load(Ordering::SeqCst) == HEAD => {
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

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Deadlines<S> {
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
        let this = self.get_mut();
        if this.linger.is_none() {
            ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            if !this.state.linger.load(Ordering::SeqCst) {
                return Poll::Ready(Ok(()));
            }
            this.linger = Some(Box::pin(tokio::time::sleep(LINGER_TIME)));
        }
        let Some(linger) = this.linger.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let mut scratch = [0u8; 8192];
        // A bounded number of reads per poll, so a fast sender does not hold the thread.
        for _ in 0..16 {
            if linger.is_elapsed() {
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut buf) {
                // The client has closed its side (or the connection broke): done.
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => {
                    ready!(linger.as_mut().poll(cx));
                    return Poll::Ready(Ok(()));
                }
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
