//! The HTTP serving loop: accepts connections and serves the application on
//! each with hyper (HTTP/1.1 and HTTP/2 cleartext on one port), within limits
//! that keep the server responsive when clients misbehave.
//!
//! - **Connections**: at most [`Limits::max_connections`] are open at once.
//!   While all slots are taken the loop does not call `accept`, so further
//!   connections wait in the kernel's listen backlog (and beyond that the
//!   kernel refuses them) until a slot frees.
//! - **Request heads**: a new connection must deliver its first request
//!   within [`Limits::header_timeout`]. On HTTP/1.1 hyper enforces the same
//!   timeout for every later request too; its clock starts as soon as the
//!   connection waits for the next request (not at that request's first
//!   byte), so an idle keep-alive HTTP/1.1 connection is closed after the
//!   header timeout when that is shorter than the idle timeout.
//! - **Idle connections**: a connection with no request in flight (none
//!   being received, handled or answered) is closed after
//!   [`Limits::idle_timeout`]. A request counts as in flight until its
//!   response body has been sent in full, so a long-lived response stream
//!   (a runner's `WatchRequests`) keeps its connection, on either protocol.
//! - **HTTP/2 peers** are pinged every [`H2_PING_INTERVAL`]; one that does not
//!   answer within [`H2_PING_TIMEOUT`] is dropped, also while it has streams
//!   open.
//! - **Request bodies** must arrive in full within [`Limits::body_timeout`]
//!   of their request head (every RPC's request is a single message).
//!
//! - **TLS** (when configured, [`crate::tls`]): the handshake must finish
//!   within [`Limits::header_timeout`] of the connection being accepted;
//!   then the limits above apply as on a plain connection.
//!
//! Each request carries the client's address as
//! [`axum::extract::ConnectInfo<SocketAddr>`] in its extensions.
//!
//! Closing a connection for a timeout starts hyper's graceful shutdown
//! (HTTP/2: GOAWAY); one that is still open, with nothing in flight, after
//! [`CLOSE_GRACE`] is dropped. Shutting the server down closes the listener,
//! starts the graceful shutdown of every connection and waits until each has
//! finished the requests it has in flight.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http::Request;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::tls::Certificates;

/// Default for [`Limits::header_timeout`].
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`Limits::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default for [`Limits::body_timeout`].
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// The most connections the default limit allows, however many files the
/// process may open.
pub const MAX_DEFAULT_CONNECTIONS: usize = 25_000;
/// File descriptors the default connection limit leaves for everything else
/// (the listener, database files and connections, logs).
pub const RESERVED_FILES: u64 = 64;
/// How often an HTTP/2 connection is pinged.
pub const H2_PING_INTERVAL: Duration = Duration::from_secs(20);
/// How long an HTTP/2 peer may take to answer a ping before it is dropped.
pub const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a connection being closed (nothing in flight) may take to go.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How often, at most, the loop warns that every connection slot is taken.
const FULL_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// What one client may hold of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A connection's first request head must arrive in full within this
    /// time (on HTTP/1.1, every later one too).
    pub header_timeout: Duration,
    /// A connection with no request in flight is closed after this long.
    pub idle_timeout: Duration,
    /// Open connections at most; further ones wait to be accepted.
    pub max_connections: usize,
    /// A request body must arrive in full within this time of its head.
    pub body_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: default_max_connections(),
            body_timeout: DEFAULT_BODY_TIMEOUT,
        }
    }
}

impl std::fmt::Display for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "request heads within {:?}, idle connections closed after {:?}, at most {} connections, \
             request bodies within {:?}",
            self.header_timeout, self.idle_timeout, self.max_connections, self.body_timeout
        )
    }
}

/// The soft limit on open files (`RLIMIT_NOFILE`) of this process; `None`
/// when unlimited or unknown.
pub fn open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass, which lives on our stack.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (rc == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// The default connection limit: what the open-files limit leaves after
/// [`RESERVED_FILES`], at most [`MAX_DEFAULT_CONNECTIONS`] (and at least 1).
pub fn default_max_connections() -> usize {
    connections_for(open_files_limit())
}

fn connections_for(open_files: Option<u64>) -> usize {
    match open_files {
        None => MAX_DEFAULT_CONNECTIONS,
        Some(files) => usize::try_from(files.saturating_sub(RESERVED_FILES))
            .unwrap_or(usize::MAX)
            .clamp(1, MAX_DEFAULT_CONNECTIONS),
    }
}

/// Serves `app` on `listener` within `limits` (over TLS with `tls`) until
/// `shutdown` completes; then stops accepting and returns once every
/// connection has finished.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
    tls: Option<Arc<Certificates>>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        limits.max_connections >= 1,
        "the connection limit must be at least 1"
    );
    for (name, timeout) in [
        ("header", limits.header_timeout),
        ("idle", limits.idle_timeout),
        ("body", limits.body_timeout),
    ] {
        anyhow::ensure!(
            !timeout.is_zero(),
            "the {name} timeout must be longer than 0"
        );
    }
    let slots = u32::try_from(limits.max_connections)
        .ok()
        .filter(|n| (*n as usize) <= Semaphore::MAX_PERMITS)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the connection limit {} is too large",
                limits.max_connections
            )
        })?;
    let permits = Arc::new(Semaphore::new(slots as usize));
    let builder = Arc::new(builder(&limits));
    let (stop, stopped) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    let mut last_full_warning: Option<Instant> = None;

    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let now = Instant::now();
                if last_full_warning.is_none_or(|at| now - at >= FULL_WARNING_INTERVAL) {
                    last_full_warning = Some(now);
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "all connection slots are taken; new connections wait in the listen \
                         backlog until one frees"
                    );
                }
                tokio::select! {
                    permit = permits.clone().acquire_owned() => {
                        permit.expect("the semaphore is never closed")
                    }
                    () = &mut shutdown => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    if !is_connection_error(&e) {
                        // Out of file descriptors and the like: pause
                        // instead of spinning, then try again.
                        tracing::error!("accepting a connection failed: {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let accepted = Accepted {
            stream,
            peer,
            permit,
            builder: builder.clone(),
            app: app.clone(),
            limits,
            stopped: stopped.clone(),
        };
        tokio::spawn(accepted.serve(tls.as_ref().map(|c| c.acceptor())));
    }

    // Connections waiting in the backlog are refused from here on.
    drop(listener);
    let _ = stop.send(true);
    // Every connection holds a slot until it ends.
    let _all = permits
        .acquire_many(slots)
        .await
        .expect("the semaphore is never closed");
    Ok(())
}

/// Errors of one connection that has gone before it was accepted; the
/// listener itself is fine.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT);
    builder
}

/// One accepted connection, to be served plain or over TLS.
struct Accepted {
    stream: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
    builder: Arc<auto::Builder<TokioExecutor>>,
    app: axum::Router,
    limits: Limits,
    stopped: watch::Receiver<bool>,
}

impl Accepted {
    /// Serves the connection, after a TLS handshake with `tls` (which must
    /// end within the header timeout).
    async fn serve(self, tls: Option<TlsAcceptor>) {
        let Accepted {
            stream,
            peer,
            permit,
            builder,
            app,
            limits,
            stopped,
        } = self;
        let Some(acceptor) = tls else {
            return serve_connection(stream, peer, permit, builder, app, limits, stopped).await;
        };
        match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => {
                serve_connection(stream, peer, permit, builder, app, limits, stopped).await
            }
            Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
            Err(_) => {
                tracing::debug!(%peer, "closing a connection whose TLS handshake took too long")
            }
        }
    }
}

/// Serves one connection until it ends, closing it when it breaks a limit
/// or the server stops.
async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
    builder: Arc<auto::Builder<TokioExecutor>>,
    app: axum::Router,
    limits: Limits,
    mut stopped: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let _permit = permit;
    let (activity, mut changes) = Activity::new();
    let body_timeout = limits.body_timeout;
    let service = tower::service_fn(move |request: Request<Incoming>| {
        let app = app.clone();
        let in_flight = activity.start();
        async move {
            let mut request = request.map(|body| Body::new(DeadlineBody::new(body, body_timeout)));
            request.extensions_mut().insert(ConnectInfo(peer));
            let response = app.oneshot(request).await?;
            Ok::<_, Infallible>(response.map(|body| Body::new(InFlightBody { body, in_flight })))
        }
    });
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
    let mut conn = pin!(conn);
    // Since when the connection is being closed (a limit, or the server stops).
    let mut closing: Option<Instant> = None;
    loop {
        let deadline = changes.current().deadline(&limits, closing);
        let expired = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
                return;
            }
            changed = stopped.changed(), if closing.is_none() => {
                if changed.is_ok() {
                    closing = Some(Instant::now());
                    conn.as_mut().graceful_shutdown();
                }
            }
            () = changes.changed() => {}
            () = expired => {
                if closing.is_some() {
                    tracing::debug!(%peer, "dropping a connection that did not close in time");
                    return;
                }
                tracing::debug!(%peer, "closing a connection that broke a time limit");
                closing = Some(Instant::now());
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// What a connection is doing, as its requests see it.
#[derive(Debug, Clone, Copy)]
struct State {
    /// Requests received and not yet answered in full.
    in_flight: usize,
    /// Whether any request has arrived.
    served: bool,
    /// When the connection was accepted, or since when nothing is in flight.
    since: Instant,
}

impl State {
    /// When the connection has broken a limit if nothing changes before
    /// (none while a request is in flight); `closing` is since when it is
    /// being closed, if it is.
    fn deadline(&self, limits: &Limits, closing: Option<Instant>) -> Option<Instant> {
        if self.in_flight > 0 {
            return None;
        }
        Some(match closing {
            Some(closing) => self.since.max(closing) + CLOSE_GRACE,
            None if self.served => self.since + limits.idle_timeout,
            None => self.since + limits.header_timeout,
        })
    }
}

/// One connection's [`State`], updated by its requests.
#[derive(Clone)]
struct Activity(Arc<watch::Sender<State>>);

impl Activity {
    fn new() -> (Self, Watched) {
        let (sender, receiver) = watch::channel(State {
            in_flight: 0,
            served: false,
            since: Instant::now(),
        });
        (Self(Arc::new(sender)), Watched(receiver))
    }

    /// A request has arrived; it is in flight until the guard is dropped.
    fn start(&self) -> InFlight {
        self.0.send_modify(|state| {
            state.in_flight += 1;
            state.served = true;
        });
        InFlight(self.clone())
    }
}

/// The connection task's view of its [`Activity`].
struct Watched(watch::Receiver<State>);

impl Watched {
    /// The state now; [`Watched::changed`] waits for the next change after it.
    fn current(&mut self) -> State {
        *self.0.borrow_and_update()
    }

    async fn changed(&mut self) {
        // The sender lives as long as the service, which the connection owns.
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Marks a request as in flight while alive.
struct InFlight(Activity);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.0.send_modify(|state| {
            state.in_flight -= 1;
            if state.in_flight == 0 {
                state.since = Instant::now();
            }
        });
    }
}

/// A response body that keeps its request in flight until it has been sent
/// in full (or dropped).
struct InFlightBody {
    body: Body,
    #[allow(dead_code)] // held for its Drop
    in_flight: InFlight,
}

impl HttpBody for InFlightBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body that fails once its deadline has passed before it ended.
struct DeadlineBody<B> {
    body: B,
    deadline: Pin<Box<Sleep>>,
    timeout: Duration,
    ended: bool,
}

impl<B> DeadlineBody<B> {
    fn new(body: B, timeout: Duration) -> Self {
        Self {
            body,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timeout,
            ended: false,
        }
    }
}

/// The error of a request body that took longer than the body timeout.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimeout(Duration);

impl<B> HttpBody for DeadlineBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(None) => {
                this.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(frame)) => Poll::Ready(Some(frame.map_err(Into::into))),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.ended = true;
                    Poll::Ready(Some(Err(Box::new(BodyTimeout(this.timeout)))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;

    #[test]
    fn default_connection_limit_follows_the_open_files_limit() {
        assert_eq!(connections_for(None), MAX_DEFAULT_CONNECTIONS);
        assert_eq!(connections_for(Some(1024)), 960);
        assert_eq!(connections_for(Some(1_048_576)), MAX_DEFAULT_CONNECTIONS);
        assert_eq!(connections_for(Some(10)), 1);
        let here = default_max_connections();
        assert!((1..=MAX_DEFAULT_CONNECTIONS).contains(&here), "{here}");
    }

    #[test]
    fn deadlines_follow_what_the_connection_does() {
        let limits = Limits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1,
            body_timeout: Duration::from_secs(30),
        };
        let since = Instant::now();
        let fresh = State {
            in_flight: 0,
            served: false,
            since,
        };
        assert_eq!(
            fresh.deadline(&limits, None),
            Some(since + limits.header_timeout)
        );
        let idle = State {
            served: true,
            ..fresh
        };
        assert_eq!(
            idle.deadline(&limits, None),
            Some(since + limits.idle_timeout)
        );
        // Being closed: a little longer from when the closing began.
        let later = since + Duration::from_secs(70);
        assert_eq!(
            idle.deadline(&limits, Some(later)),
            Some(later + CLOSE_GRACE)
        );
        let busy = State {
            in_flight: 1,
            ..idle
        };
        assert_eq!(busy.deadline(&limits, None), None);
        assert_eq!(busy.deadline(&limits, Some(later)), None);
    }

    fn limits() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            max_connections: 4,
            body_timeout: Duration::from_secs(30),
        }
    }

    #[tokio::test]
    async fn requests_carry_the_client_address() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = axum::Router::new().route(
            "/peer",
            axum::routing::get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                peer.to_string()
            }),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, app, limits(), None, async {
            let _ = stopped.await;
        }));

        let mut client = TcpStream::connect(address).await.unwrap();
        let me = client.local_addr().unwrap();
        client
            .write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        client.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with(&me.to_string()), "{response}");

        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn stopping_waits_for_requests_in_flight() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (entered, mut handler_entered) = tokio::sync::mpsc::channel::<()>(1);
        let (finish, finished) = watch::channel(false);
        let app = axum::Router::new().route(
            "/slow",
            axum::routing::get(move || {
                let (entered, mut finished) = (entered.clone(), finished.clone());
                async move {
                    entered.send(()).await.unwrap();
                    finished.wait_for(|done| *done).await.unwrap();
                    "done"
                }
            }),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, app, limits(), None, async {
            let _ = stopped.await;
        }));
        let mut client = TcpStream::connect(address).await.unwrap();
        client
            .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        handler_entered.recv().await.unwrap();

        // Told to stop while the request is in flight: it does not stop yet
        // (nothing can end that request but the handler).
        stop.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!server.is_finished(), "stopped with a request in flight");

        finish.send(true).unwrap();
        let mut response = String::new();
        client.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with("done"), "{response}");
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_body_that_arrives_in_time_is_passed_on() {
        let body = DeadlineBody::new(
            http_body_util::Full::new(Bytes::from_static(b"hello")),
            Duration::from_secs(10),
        );
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes, Bytes::from_static(b"hello"));
    }

    #[tokio::test]
    async fn a_body_that_trickles_past_its_deadline_fails() {
        // A byte every 100 ms for a second: each in time on its own (a
        // timeout between frames would never fire), too slow in total.
        let body = Body::from_stream(async_stream::stream! {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                yield Ok::<_, std::io::Error>(Bytes::from_static(b"x"));
            }
        });
        let started = Instant::now();
        let error = DeadlineBody::new(body, Duration::from_millis(300))
            .collect()
            .await
            .map(|_| ())
            .unwrap_err();
        eprintln!("failed after {:?}", started.elapsed());
        assert!(error.is::<BodyTimeout>(), "{error}");
    }
}
