//! What tidings logs through `tracing`, read back from a real subscriber (tracing-subscriber's
//! `fmt`, as an application would install it) over real sockets: a connection's opening and
//! closing inside its span, and its handlers' own logs too; a refused upgrade; a slow
//! consumer cut as a warning; and nothing per message. Its own test binary: the subscriber is global, for the server's tasks too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::json;
use tidings_net::testkit::{
    client, raw, raw_json, raw_send, start, subscribe, with_deadline, Captured,
};
use tidings_net::{Builder, ClientEvent, Refusal, Router};
use tidings_smol::reexports::http::StatusCode;
use tidings_smol::{Accept, CloseCode, Config, Message, Smol};

#[test]
fn connections_refusals_and_cuts_are_logged_in_each_connection_s_span() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .without_time()
        .with_max_level(tracing::Level::INFO)
        .init();
    let rt = Smol;
    smol::block_on(with_deadline(rt, async {
        let config = Config::default()
            .max_queue_frames(32)
            .write_window(8)
            .slow_consumer_timeout(Duration::from_millis(300));
        let (closes_tx, closes) = async_channel::unbounded();
        let router = Router::new()
            .on(
                "hello",
                |ctx: tidings_smol::Ctx, _: serde_json::Value| async move {
                    tracing::info!("the application's handler ran");
                    let _ = ctx.reply("hi").await;
                },
            )
            .on_disconnect(move |d| {
                let tx = closes_tx.clone();
                async move {
                    let _ = tx.send((d.conn, d.code)).await;
                }
            });
        let builder = Builder::new(rt)
            .config(config)
            .router(router)
            .on_connect(|req| async move {
                if req.query_param("room").as_deref() == Some("private") {
                    return Err(Refusal::new(StatusCode::FORBIDDEN, "members only"));
                }
                Ok(Accept::new())
            });
        let server = start(builder).await;
        let handle = server.handle();

        // A client that comes and goes, closing normally.
        let polite = client(&rt, &server, "/ws").await;
        let Some(ClientEvent::Welcome {
            conn: polite_id, ..
        }) = polite.next().await
        else {
            panic!("no welcome");
        };
        // Its event's handler logs inside the connection's span.
        polite
            .emit_with_ack("hello", json!({}), Some(Duration::from_secs(5)))
            .await
            .expect("an answer");
        polite.close().await.expect("close");
        let (gone, code) = closes.recv().await.expect("a disconnect");
        assert_eq!(
            (gone.to_string(), code),
            (polite_id.clone(), CloseCode::NORMAL)
        );

        // One the application closes: a normal close by the server is not a cut.
        let dismissed = client(&rt, &server, "/ws").await;
        let Some(ClientEvent::Welcome {
            conn: dismissed_id, ..
        }) = dismissed.next().await
        else {
            panic!("no welcome");
        };
        let conn: tidings_smol::ConnId = dismissed_id.parse().expect("a connection id");
        handle
            .close(conn, CloseCode::NORMAL, "come back tomorrow")
            .await
            .expect("close");
        let (gone, code) = closes.recv().await.expect("a disconnect");
        assert_eq!((gone, code), (conn, CloseCode::NORMAL));

        // A refused upgrade.
        let refused = raw(&rt, &server.ws_url("/ws?room=private"), &[]).await;
        assert_eq!(refused.err().map(|(status, _)| status), Some(403));

        // A subscriber that stops reading while the room gets a thousand messages.
        let mut slow = raw(&rt, &server.ws_url("/ws"), &[]).await.expect("connect");
        raw_send(&mut slow, subscribe("feed")).await;
        raw_json(&rt, &mut slow).await;
        let pad = "x".repeat(16 * 1024);
        for n in 0..1_000 {
            let message = Message::json("item", json!({"n": n, "pad": pad}));
            let _ = handle
                .try_publish(tidings_smol::Target::room("/", "feed"), message)
                .await;
        }
        let (slow_id, code) = closes.recv().await.expect("the slow consumer's disconnect");
        assert_eq!(code, CloseCode::SLOW_CONSUMER);
        drop(slow);
        handle.shutdown().await.expect("shutdown");

        let polite_span = format!("conn{{id={polite_id} remote=127.0.0.1:");
        let opened = captured.line_with(&[&polite_span, "connection opened"]);
        assert!(
            opened.contains(" INFO ") && opened.contains("path=/ws"),
            "{opened}"
        );
        let closed = captured.line_with(&[&polite_span, "connection closed"]);
        assert!(
            closed.contains("code=1000") && closed.contains("by=\"peer\""),
            "{closed}"
        );

        let handled = captured.line_with(&[&polite_span, "the application's handler ran"]);
        assert!(handled.contains(" INFO "), "{handled}");

        let dismissed_span = format!("conn{{id={dismissed_id} ");
        let closed = captured.line_with(&[&dismissed_span, "connection closed"]);
        for part in [" INFO ", "code=1000", "by=\"server\"", "come back tomorrow"] {
            assert!(closed.contains(part), "{part} in {closed}");
        }

        let refusal = captured.line_with(&["upgrade refused"]);
        for part in [
            "status=403",
            "by=\"application\"",
            "reason=\"members only\"",
            "path=\"/ws\"",
        ] {
            assert!(refusal.contains(part), "{part} in {refusal}");
        }

        let cut = captured.line_with(&[&format!("conn{{id={slow_id} "), "slow consumer cut"]);
        assert!(cut.contains(" WARN ") && cut.contains("code=4000"), "{cut}");

        // Nothing per message: a thousand publishes, a handful of lines.
        let lines = captured.lines();
        assert!(lines.len() <= 10, "{}", lines.join("\n"));
        assert!(
            !lines.iter().any(|l| l.contains("item")),
            "{}",
            lines.join("\n")
        );
    }));
}
