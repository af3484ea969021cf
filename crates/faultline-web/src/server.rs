//! Serving the router on a listener the way a service exposed to untrusted clients must: a
//! client gets `header_timeout` to send each request's header (from the connection's start or
//! the end of the previous answer, so an idle kept-alive connection is closed too), at most
//! `max_connections` are served at once (more wait in the listen queue, so file descriptors
//! are never exhausted), and a stop finishes the requests in flight for at most `drain`, then
//! closes what is left (a half-sent request holds nothing up). A connection speaks HTTP/1.1, or
//! HTTP/2 when it opens with HTTP/2's preface (cleartext, "prior knowledge"), as gRPC clients
//! do; a client that has not told which within `header_timeout` is closed. On HTTP/2, at most
//! [`H2_STREAMS`] requests at once per connection, a peer that stops answering pings is
//! dropped, and a connection with no request under way for `header_timeout` is closed, as an
//! idle HTTP/1.1 one is (a gRPC channel connects again for its next call).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use http_body::{Frame, SizeHint};
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower_service::Service;

/// Limits of [`serve`].
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub header_timeout: Duration,
    pub max_connections: usize,
    /// How long a stop waits for requests in flight.
    pub drain: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            header_timeout: Duration::from_secs(10),
            max_connections: 512,
            drain: Duration::from_secs(5),
        }
    }
}

/// Requests served at once on one HTTP/2 connection.
pub const H2_STREAMS: u32 = 64;

/// Whether the client's first bytes are HTTP/2's connection preface, read without taking them;
/// `None` when it closed or had not told within `wait`.
async fn opens_with_h2_preface(stream: &TcpStream, wait: Duration) -> Option<bool> {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let told = async {
        let mut first = [0u8; PREFACE.len()];
        loop {
            let n = stream.peek(&mut first).await.ok()?;
            if n == 0 {
                return None;
            }
            if first[..n] != PREFACE[..n] {
                return Some(false);
            }
            if n == PREFACE.len() {
                return Some(true);
            }
            // A preface split over segments (clients send it whole): a peek would answer the
            // same bytes at once, so wait a moment for the rest.
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    };
    tokio::time::timeout(wait, told).await.ok().flatten()
}

/// Serves `app` on `listener` until `shutdown` completes, then drains (see the module doc).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    options: ServerOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    // Tells connections still saying which protocol they speak that the server stops.
    let (stopping, stopped) = tokio::sync::watch::channel(false);
    let mut h1 = http1::Builder::new();
    h1.timer(TokioTimer::new()).header_read_timeout(options.header_timeout);
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_concurrent_streams(H2_STREAMS)
        .keep_alive_interval(options.header_timeout)
        .keep_alive_timeout(options.header_timeout);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors or a connection reset while queued: wait, go on.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let (watcher, h1, h2, mut stopped) = (graceful.watcher(), h1.clone(), h2.clone(), stopped.clone());
        let (app, service) = (app.clone(), TowerToHyperService::new(app.clone()));
        let header_timeout = options.header_timeout;
        tokio::spawn(async move {
            let told = tokio::select! {
                told = opens_with_h2_preface(&stream, header_timeout) => told,
                _ = stopped.wait_for(|stopping| *stopping) => None,
            };
            let ended = match told {
                Some(false) => watcher.watch(h1.serve_connection(TokioIo::new(stream), service)).await,
                Some(true) => {
                    let activity = Arc::new(Activity::new());
                    let service = tracked(app, activity.clone());
                    tokio::select! {
                        ended = watcher.watch(h2.serve_connection(TokioIo::new(stream), service)) => ended,
                        // Nothing under way: dropping the connection closes it.
                        () = activity.idle_for(header_timeout) => Ok(()),
                    }
                }
                None => Ok(()),
            };
            if let Err(e) = ended {
                tracing::debug!("connection ended: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    if tokio::time::timeout(options.drain, graceful.shutdown()).await.is_err() {
        tracing::warn!("closing connections still open after {:?}", options.drain);
    }
    Ok(())
}

/// The requests under way on one HTTP/2 connection (an answer still being sent counts), and
/// when one last started or ended.
struct Activity {
    under_way: AtomicUsize,
    opened: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity { under_way: AtomicUsize::new(0), opened: Instant::now(), last_ms: AtomicU64::new(0) }
    }

    fn stamp(&self) {
        self.last_ms.store(self.opened.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn start(self: &Arc<Self>) -> UnderWay {
        self.under_way.fetch_add(1, Ordering::AcqRel);
        self.stamp();
        UnderWay(self.clone())
    }

    /// Completes once no request has been under way for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let quiet = self.opened.elapsed().saturating_sub(last);
            if self.under_way.load(Ordering::Acquire) == 0 && quiet >= limit {
                return;
            }
            tokio::time::sleep(limit.saturating_sub(quiet).max(Duration::from_millis(100))).await;
        }
    }
}

/// A request under way, until its answer's body is sent or dropped.
struct UnderWay(Arc<Activity>);

impl Drop for UnderWay {
    fn drop(&mut self) {
        self.0.stamp();
        self.0.under_way.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `app` for one HTTP/2 connection, each request counted in `activity` from its start until its
/// answer's body is done with.
fn tracked(
    app: Router,
    activity: Arc<Activity>,
) -> impl hyper::service::Service<
    Request<hyper::body::Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
        let under_way = activity.start();
        let mut app = app.clone();
        async move {
            let response = app.call(request.map(Body::new)).await?;
            Ok(response.map(|body| Body::new(Tracked { body, _under_way: under_way })))
        }
    })
}

/// An answer's body, holding its request [`UnderWay`].
struct Tracked {
    body: Body,
    _under_way: UnderWay,
}

impl http_body::Body for Tracked {
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
