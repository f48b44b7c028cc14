//! What the Redis backplane logs through `tracing` when Redis goes away and comes back, read
//! back from tracing-subscriber's `fmt` (its own test binary: the subscriber is global).
//! Needs `redis-server` on the PATH, as the other backplane tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use tidings_net::testkit::Captured;
use tidings_redis::testing::RedisServer;
use tidings_redis::Redis;

/// Waits until `check` holds of the captured lines, or fails showing them.
async fn until(captured: &Captured, what: &str, check: impl Fn(&Captured) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check(captured) {
        assert!(
            Instant::now() < deadline,
            "no {what} in:\n{}",
            captured.lines().join("\n")
        );
        smol::Timer::after(Duration::from_millis(10)).await;
    }
}

#[test]
fn an_outage_is_logged_as_it_starts_while_it_lasts_and_as_it_ends() {
    let Some(mut redis) = RedisServer::start_or_skip() else {
        return;
    };
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .without_time()
        .with_max_level(tracing::Level::INFO)
        .init();
    let port = redis.port();
    smol::block_on(async {
        let server = tidings_smol::builder()
            .backplane(Redis::new(redis.url()))
            .bind("127.0.0.1:0")
            .await
            .expect("bind");
        let up = |c: &Captured| c.lines_with(&[" INFO ", "backplane up"]).len();
        until(&captured, "first backplane up", |c| up(c) == 1).await;

        redis.kill();
        until(&captured, "backplane down", |c| {
            c.lines_with(&[" WARN ", "backplane down"]).len() == 1
        })
        .await;
        until(&captured, "failed reconnects", |c| {
            !c.lines_with(&[" WARN ", "redis backplane: cannot connect", "error="])
                .is_empty()
                && !c
                    .lines_with(&[" INFO ", "redis backplane: reconnecting", "retry_in="])
                    .is_empty()
        })
        .await;

        redis = RedisServer::start_on(port);
        until(&captured, "backplane up again", |c| up(c) == 2).await;
        assert!(server.handle().backplane().is_some_and(|s| s.up));
        drop(redis);
    });
}
