//! The accept loop and HTTP: every TCP connection is served by hyper (HTTP/1.1), with the
//! caps on pending handshakes and on connections per address. Requests for a WebSocket path
//! go to the upgrade (`upgrade.rs`); every other request goes to the application's HTTP
//! handler, so a page and a REST endpoint live on the same port as the WebSocket. hyper's
//! timer (the handshake timeout) runs on the [`Runtime`]'s clock.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::future::or;
use futures_lite::{AsyncRead, AsyncWrite};
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use smol_hyper::rt::FuturesIo;

use crate::front::Shared;
use crate::hooks::HttpResponse;
use crate::Runtime;

/// A connection in its HTTP phase, counted until dropped.
struct Pending<R: Runtime>(Arc<Shared<R>>);

impl<R: Runtime> Drop for Pending<R> {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::SeqCst);
    }
}

pub(crate) async fn accept_loop<R: Runtime>(
    rt: R,
    listener: R::TcpListener,
    shared: Arc<Shared<R>>,
) {
    loop {
        let stop = async {
            shared.handle.stopping().await;
            None
        };
        let Some(accepted) = or(async { Some(rt.accept(&listener).await) }, stop).await else {
            return; // shutting down: the listener closes with this task
        };
        match accepted {
            Ok((tcp, remote)) => {
                if shared.pending.fetch_add(1, Ordering::SeqCst) >= shared.front.pending_handshakes
                {
                    shared.pending.fetch_sub(1, Ordering::SeqCst);
                    drop(tcp); // over the limit: the cheapest answer is none
                    continue;
                }
                // Not fatal: the connection works with the kernel's own settings.
                if let Err(e) = shared.front.socket.apply(&rt.socket(&tcp)) {
                    tracing::debug!(%remote, error = %e, "could not set the socket's options");
                }
                spawn_serve(&rt, Pending(shared.clone()), tcp, remote);
            }
            // Out of file descriptors or a connection reset before accept: keep serving.
            Err(_) => {
                rt.sleep_until(std::time::Instant::now() + Duration::from_millis(5))
                    .await
            }
        }
    }
}

/// Serves an accepted connection, after the TLS handshake if the server has TLS.
fn spawn_serve<R: Runtime>(rt: &R, pending: Pending<R>, tcp: R::TcpStream, remote: SocketAddr) {
    let shared = pending.0.clone();
    #[cfg(feature = "tls")]
    if let Some(acceptor) = shared.front.tls.clone() {
        let rt2 = rt.clone();
        rt.spawn(async move {
            let until = std::time::Instant::now() + shared.front.handshake_timeout;
            let handshake = async { acceptor.accept(tcp).await.ok() };
            let timeout = async {
                rt2.sleep_until(until).await;
                None
            };
            if let Some(tls) = or(handshake, timeout).await {
                serve(shared, tls, remote).await;
            }
            drop(pending);
        });
        return;
    }
    rt.spawn(async move {
        serve(shared, tcp, remote).await;
        drop(pending); // upgraded (the connection task owns the socket now) or closed
    });
}

/// Serves one connection: HTTP requests until it upgrades or closes.
async fn serve<R, S>(shared: Arc<Shared<R>>, io: S, remote: SocketAddr)
where
    R: Runtime,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let timeout = shared.front.handshake_timeout;
    let timer = HyperTimer(shared.handle.runtime().clone());
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(respond::<R, S>(shared, remote, req).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(timer)
        .header_read_timeout(timeout)
        .max_buf_size(16 * 1024)
        .serve_connection(FuturesIo::new(io), service)
        .with_upgrades();
    let _ = connection.await;
}

pub(crate) fn plain(status: StatusCode, body: impl Into<Bytes>) -> HttpResponse {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn respond<R, S>(
    shared: Arc<Shared<R>>,
    remote: SocketAddr,
    req: Request<Incoming>,
) -> HttpResponse
where
    R: Runtime,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let front = &shared.front;
    let path = req.uri().path();
    if front.metrics.as_deref() == Some(path) {
        return match shared.handle.metrics().await {
            Ok(text) => {
                let mut response = plain(StatusCode::OK, text);
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
                );
                response
            }
            Err(_) => plain(StatusCode::SERVICE_UNAVAILABLE, "the hub has stopped\n"),
        };
    }
    if !front
        .paths
        .iter()
        .any(|p| tidings_core::path_matches(p, path))
    {
        return match &front.http {
            Some(handler) => handler(shared.handle.clone(), req).await,
            None => plain(StatusCode::NOT_FOUND, "not found\n"),
        };
    }
    match crate::upgrade::upgrade::<R, S>(&shared, remote, req).await {
        Ok(response) | Err(response) => response,
    }
}

/// hyper's timer on the runtime's clock, so a server on async-std (or tokio) runs no other
/// runtime's timer.
#[derive(Clone)]
struct HyperTimer<R>(R);

impl<R: Runtime> hyper::rt::Timer for HyperTimer<R> {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Sleeping(Box::pin(self.0.sleep_until(deadline))))
    }
}

/// A runtime's sleep as hyper's `Sleep`.
struct Sleeping<F>(Pin<Box<F>>);

impl<F: Future<Output = ()>> Future for Sleeping<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl<F: Future<Output = ()> + Send + Sync + 'static> hyper::rt::Sleep for Sleeping<F> {}
