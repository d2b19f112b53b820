//! Bounded connections for every server Tufa runs (the index and the proxy).
//!
//! `axum::serve` accepts without limit and never times a connection out, so one client holding
//! half-sent requests can take every descriptor and stop uploads and signing. Here each connection
//! is served by hyper's HTTP/1 connection with:
//!
//! - a header timeout: a request's headers must be complete this long after the connection opens
//!   or the previous response ends, however slowly they trickle (hyper's `header_read_timeout`);
//! - an idle timeout: a connection on which no byte moves while no request is in progress
//!   (kept-alive connections between requests, stalled headers), or whose client takes nothing
//!   written to it, is closed; a response that streams from a slow source may pause;
//! - a body deadline with a minimum rate, as Apache's `mod_reqtimeout`: a request body gets
//!   `body_timeout`, extended by one second per `min_body_rate` bytes received, so a slow body
//!   cannot hold a temporary file and a descriptor indefinitely while a fast one is never cut;
//! - a connection limit: above it, a connection is answered 503 with the reason and closed, never
//!   left to fail later with "Too many open files";
//! - `TCP_NODELAY`, so that the last part of a response is never held back for the client's
//!   delayed acknowledgement of the part before.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tower_service::Service;

/// Descriptors kept free of connections for the database, files being uploaded or served, and
/// the listener.
const RESERVED_DESCRIPTORS: u64 = 128;

/// Descriptors one connection may hold: its socket, and a file it uploads or downloads.
const DESCRIPTORS_PER_CONNECTION: u64 = 2;

/// Refusals being written at once; beyond this a connection over the limit is closed unanswered.
const MAX_REFUSALS: usize = 64;

/// How long a refusal may take to write and to drain what the client sent (closing a socket with
/// unread data resets it, which can destroy the 503 before the client reads it).
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);

/// The largest request head (request line and headers). hyper's default (~400 KiB) would let
/// 1,000 connections hold 400 MB; twine, pip and uv send well under 8 KiB.
const MAX_HEAD_SIZE: usize = 16 * 1024;

/// How long a server waits, after an accept error (such as running out of descriptors), before
/// accepting again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(250);

/// The bounds on every connection of one server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// A request's headers must arrive within this time.
    pub header_timeout: Duration,
    /// A connection with no bytes moving and no request in progress, or whose client takes
    /// nothing written to it, is closed after this time.
    pub idle_timeout: Duration,
    /// Time a request body gets before it must keep up with `min_body_rate`.
    pub body_timeout: Duration,
    /// Bytes per second a request body must average after `body_timeout`.
    pub min_body_rate: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(15),
            body_timeout: Duration::from_secs(30),
            min_body_rate: 1024,
        }
    }
}

/// Why a set of limits cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    #[error("{0} must be at least 1")]
    Zero(&'static str),
}

impl Limits {
    /// Refuses limits that would stop a server from answering anything.
    pub fn check(&self) -> Result<(), LimitsError> {
        let zero = [
            (self.max_connections == 0, "the connection limit"),
            (self.header_timeout.is_zero(), "the header timeout"),
            (self.idle_timeout.is_zero(), "the idle timeout"),
            (self.body_timeout.is_zero(), "the body timeout"),
            (self.min_body_rate == 0, "the minimum body rate"),
        ];
        match zero.into_iter().find(|(is_zero, _)| *is_zero) {
            Some((_, what)) => Err(LimitsError::Zero(what)),
            None => Ok(()),
        }
    }
}

/// Raises this process's soft limit on open files to its hard limit, and returns the soft limit
/// now in force (`None`: unlimited).
pub fn raise_open_files_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return limit.maximum;
        }
    }
    limit.current
}

/// The connection limit that fits in `open_files` descriptors.
fn fitted(max_connections: usize, open_files: Option<u64>) -> usize {
    let Some(open_files) = open_files else {
        return max_connections;
    };
    let fits = open_files.saturating_sub(RESERVED_DESCRIPTORS) / DESCRIPTORS_PER_CONNECTION;
    max_connections.min(usize::try_from(fits).unwrap_or(usize::MAX).max(1))
}

/// Serves `router` on `listener` with `limits` until `shutdown` completes, then lets the
/// requests in progress finish. Handlers see the client's address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut limits = limits;
    let open_files = raise_open_files_limit();
    let fits = fitted(limits.max_connections, open_files);
    if fits < limits.max_connections {
        tracing::warn!(
            "serving at most {fits} connections, not {}: the limit on open files is {} \
             (raise it with `ulimit -n` or LimitNOFILE=)",
            limits.max_connections,
            open_files.unwrap_or_default()
        );
        limits.max_connections = fits;
    }
    // Semaphores count in u32 when acquired many at once (to wait for every connection).
    let max_connections = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let connections = Arc::new(Semaphore::new(max_connections as usize));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS));
    let (stop, stopped) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) if is_connection_error(&error) => continue,
                Err(error) => {
                    tracing::error!("accepting a connection: {error}");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        // A response leaves in several writes (its head, then its body as it is read from disk
        // or from the index). With Nagle's algorithm, a write smaller than a segment waits for
        // the previous one to be acknowledged, and clients delay that by 40 ms: every file on a
        // kept-alive connection took ~44 ms (tests/wire.rs).
        if let Err(error) = stream.set_nodelay(true) {
            tracing::warn!("TCP_NODELAY not set on the connection from {peer}: {error}");
        }
        match Arc::clone(&connections).try_acquire_owned() {
            Ok(permit) => {
                let router = router.clone();
                let stopped = stopped.clone();
                tokio::spawn(async move {
                    connection(stream, peer, router, limits, stopped).await;
                    drop(permit);
                });
            }
            Err(_) => {
                if let Ok(permit) = Arc::clone(&refusals).try_acquire_owned() {
                    tokio::spawn(async move {
                        refuse(stream, limits.max_connections).await;
                        drop(permit);
                    });
                }
            }
        }
    }
    let _ = stop.send(true);
    // Every connection holds a permit until it ends: having them all means all have ended.
    let _all = connections.acquire_many(max_connections).await;
    Ok(())
}

/// Errors of one connection being accepted, not of the listener: retry at once.
fn is_connection_error(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Answers a connection over the limit with 503 and the reason, and closes it.
async fn refuse(mut stream: TcpStream, max_connections: usize) {
    let reason =
        format!("Too many connections: this server serves {max_connections} at once; retry later");
    let body = format!("503 {reason}\n");
    let answer = format!(
        "HTTP/1.1 503 {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < 64 * 1024 {
            match tokio::io::AsyncReadExt::read(&mut stream, &mut sink).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// Serves one connection until it ends, times out, or the server shuts down.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
    mut stopped: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: Arc::clone(&activity),
    });
    let service = {
        let activity = Arc::clone(&activity);
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let mut router = router.clone();
            let busy = Busy::new(Arc::clone(&activity));
            async move {
                let too_slow = Arc::new(OnceLock::new());
                let mut request =
                    request.map(|body| BodyDeadline::new(body, limits, Arc::clone(&too_slow)));
                request.extensions_mut().insert(ConnectInfo(peer));
                let response: Result<Response, Infallible> = router.call(request).await;
                // However the handler reported the failed body, the client learns why.
                let response = match too_slow.get() {
                    Some(error) => request_timeout(error),
                    None => response.unwrap_or_else(|never| match never {}),
                };
                // The request stays in progress until its response is sent: a response that
                // streams from a slow source may pause, a client that stops reading may not.
                Ok::<_, Infallible>(response.map(|body| {
                    axum::body::Body::new(WhileBusy {
                        inner: body,
                        _busy: busy,
                    })
                }))
            }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD_SIZE)
        .serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let mut stopping = false;
    loop {
        let check = activity.idle_check(limits.idle_timeout);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!("connection from {peer} ended: {error}");
                }
                return;
            }
            () = tokio::time::sleep_until(check) => {
                if activity.is_idle(limits.idle_timeout) {
                    tracing::debug!("closing the connection from {peer}: idle");
                    return;
                }
            }
            changed = stopped.changed(), if !stopping => {
                stopping = true;
                if changed.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// 408 with the reason in the status line, closing the connection (the rest of the body is
/// not read).
fn request_timeout(error: &BodyTooSlow) -> Response {
    let reason = format!("Request Timeout: {error}");
    let mut response = (
        StatusCode::REQUEST_TIMEOUT,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CONNECTION, "close"),
        ],
        format!("408 {reason}\n"),
    )
        .into_response();
    response
        .extensions_mut()
        .insert(crate::reason_phrase(&reason));
    response
}

/// When bytes last moved on a connection, since when a write waits for the client, and how
/// many of its requests are in progress.
#[derive(Debug)]
struct Activity {
    origin: Instant,
    /// Milliseconds from `origin` to the last read or write that moved bytes.
    last_millis: AtomicU64,
    /// Milliseconds from `origin`, plus one, to when the client stopped taking what is written
    /// to it; 0 while writes go through.
    blocked_millis: AtomicU64,
    busy: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Activity {
            origin: Instant::now(),
            last_millis: AtomicU64::new(0),
            blocked_millis: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        }
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    fn touch(&self) {
        self.last_millis.store(self.millis(), Ordering::Relaxed);
    }

    fn write_blocked(&self) {
        let _ = self.blocked_millis.compare_exchange(
            0,
            self.millis() + 1,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    fn write_unblocked(&self) {
        self.blocked_millis.store(0, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.origin + Duration::from_millis(self.last_millis.load(Ordering::Relaxed))
    }

    fn blocked_since(&self) -> Option<Instant> {
        match self.blocked_millis.load(Ordering::Relaxed) {
            0 => None,
            millis => Some(self.origin + Duration::from_millis(millis - 1)),
        }
    }

    /// When the connection may next have been idle for `timeout`.
    fn idle_check(&self, timeout: Duration) -> Instant {
        let since = match (self.busy.load(Ordering::Relaxed), self.blocked_since()) {
            (_, Some(blocked)) => blocked,
            (0, None) => self.last(),
            (_, None) => Instant::now(),
        };
        since + timeout
    }

    /// Idle: nothing in progress and no byte moved for `timeout`, or a client that has taken
    /// nothing written to it for `timeout`.
    fn is_idle(&self, timeout: Duration) -> bool {
        let quiet = self.busy.load(Ordering::Relaxed) == 0 && self.last().elapsed() >= timeout;
        let stuck = self
            .blocked_since()
            .is_some_and(|since| since.elapsed() >= timeout);
        quiet || stuck
    }
}

/// Marks a request as being handled while it lives; the idle timeout waits for handlers.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(activity: Arc<Activity>) -> Self {
        activity.busy.fetch_add(1, Ordering::Relaxed);
        Busy(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request in progress until hyper has sent or dropped it.
struct WhileBusy {
    inner: axum::body::Body,
    _busy: Busy,
}

impl HttpBody for WhileBusy {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A socket that records when bytes move.
struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Watched<T> {
    fn wrote(&self, result: &Poll<std::io::Result<usize>>) {
        match result {
            Poll::Pending => self.activity.write_blocked(),
            Poll::Ready(written) => {
                self.activity.write_unblocked();
                if matches!(written, Ok(n) if *n > 0) {
                    self.activity.touch();
                }
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(&result);
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body that fails once it falls behind its deadline.
struct BodyDeadline<B> {
    inner: B,
    started: Instant,
    received: u64,
    limits: Limits,
    timer: Pin<Box<Sleep>>,
    /// Set when the deadline passed, for the connection to answer 408.
    too_slow: Arc<OnceLock<BodyTooSlow>>,
}

/// A request body arrived slower than the server accepts.
#[derive(Clone, Debug, thiserror::Error)]
#[error(
    "the request body arrived too slowly ({received} bytes in {seconds} s; this server needs \
     {rate} bytes/s after the first {grace} s)"
)]
struct BodyTooSlow {
    received: u64,
    seconds: u64,
    rate: u64,
    grace: u64,
}

impl<B> BodyDeadline<B> {
    fn new(inner: B, limits: Limits, too_slow: Arc<OnceLock<BodyTooSlow>>) -> Self {
        let started = Instant::now();
        BodyDeadline {
            inner,
            started,
            received: 0,
            limits,
            timer: Box::pin(tokio::time::sleep_until(started + limits.body_timeout)),
            too_slow,
        }
    }

    fn deadline(&self) -> Instant {
        let earned =
            Duration::from_secs_f64(self.received as f64 / self.limits.min_body_rate as f64);
        self.started + self.limits.body_timeout + earned
    }
}

impl<B> HttpBody for BodyDeadline<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    let deadline = this.deadline();
                    this.timer.as_mut().reset(deadline);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    let error = BodyTooSlow {
                        received: this.received,
                        seconds: this.started.elapsed().as_secs(),
                        rate: this.limits.min_body_rate,
                        grace: this.limits.body_timeout.as_secs(),
                    };
                    let _ = this.too_slow.set(error.clone());
                    Poll::Ready(Some(Err(Box::new(error))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_limit_fits_in_the_open_files() {
        assert_eq!(fitted(4096, None), 4096);
        assert_eq!(fitted(4096, Some(1024)), (1024 - 128) / 2);
        assert_eq!(fitted(100, Some(1_048_576)), 100);
        assert_eq!(fitted(100, Some(10)), 1);
    }

    #[test]
    fn zero_limits_are_refused() {
        assert!(Limits::default().check().is_ok());
        let limits = Limits {
            min_body_rate: 0,
            ..Limits::default()
        };
        assert!(limits.check().unwrap_err().to_string().contains("rate"));
    }
}
