//! The loopback suite (tidings-net's testkit) on tokio's current-thread scheduler: every
//! task, the test's own included, on the test's thread.

use std::future::Future;

/// Runs `future` on a fresh current-thread tokio runtime.
fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(future)
}

tidings_net::loopback_suite!(tidings_tokio::Tokio, block_on);
