//! The loopback suite (tidings-net's testkit) on tokio's multi-threaded scheduler: real
//! sockets on 127.0.0.1.

use std::future::Future;

/// Runs `future` on a fresh multi-threaded tokio runtime (a worker per core).
fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(future)
}

tidings_net::loopback_suite!(tidings_tokio::Tokio, block_on);
