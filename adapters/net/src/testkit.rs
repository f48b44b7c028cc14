//! The loopback test suite, written once over [`Runtime`] and run by each adapter's tests
//! (`loopback_suite!(Smol, smol::block_on)`). Every case starts a real server on
//! 127.0.0.1 and talks to it over real sockets: with our [`Client`], and with plain
//! tungstenite clients, so the suite does not only check that our client agrees with our
//! server. Not part of the public API.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::time::{Duration, Instant};

use async_tungstenite::WebSocketStream;
use futures_lite::future::or;
use futures_lite::StreamExt;
use serde_json::{json, Value};
use tungstenite::client::IntoClientRequest;
use tungstenite::Message as Ws;

use crate::{Builder, Client, ClientBuilder, ClientEvent, Runtime, Server};

pub mod cases;
pub mod conformance;
pub mod flow;
pub mod hostile;
pub mod raw;
pub mod recovery;

/// Everything a log subscriber wrote, for tests that read tidings' log lines back: install
/// a subscriber whose writer is `move || captured.clone()`.
#[derive(Clone, Default)]
pub struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// The lines written so far.
    pub fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The lines holding every part of `parts`.
    pub fn lines_with(&self, parts: &[&str]) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .collect()
    }

    /// The one line that holds every part of `parts`; fails listing every line otherwise.
    pub fn line_with(&self, parts: &[&str]) -> String {
        let found = self.lines_with(parts);
        assert_eq!(
            found.len(),
            1,
            "one line with {parts:?} in:\n{}",
            self.lines().join("\n")
        );
        found[0].clone()
    }
}

/// Generates one `#[test]` per case of the suite for a runtime.
#[macro_export]
macro_rules! loopback_suite {
    ($runtime:expr, $block_on:path) => {
        $crate::loopback_suite!(@in cases $runtime, $block_on;
            handle_publishes_to_rooms_namespaces_and_all_but_one,
            handle_manages_connections_names_and_metadata,
            handle_receives_unrouted_messages_with_timeout_and_cancellation,
            handle_batches_and_cancels,
            emit_with_ack_both_ways_and_timeouts,
            router_handlers_fallback_hooks_and_subscribe_authorization,
            origin_is_refused_or_allowed_by_pattern,
            connect_hook_refuses_with_401_or_admits_with_identity,
            subprotocols_first_supported_wins,
            plain_http_is_served_beside_the_websocket,
            metrics_are_served_and_move_with_their_events,
            oversized_message_is_closed_with_1009,
            client_that_stops_answering_pings_is_closed_in_time,
            client_that_stops_reading_is_cut_while_others_get_everything,
            a_reader_that_reads_slowly_is_not_cut_by_the_write_timeout,
            frames_handed_out_before_a_close_go_out_even_while_a_write_is_stuck,
            a_ping_while_a_write_is_stuck_is_answered_between_whole_frames,
            graceful_shutdown_delivers_queued_messages_then_1001,
            bring_your_own_server_hands_over_a_websocket,
            client_publishes_and_unsubscribes,
            transport_error_closes_after_the_configured_delay,
            peer_close_is_echoed_and_reported,
            a_slow_router_stops_the_reading_of_sockets,
            handler_context_namespaces_and_client_details,
        );
        $crate::loopback_suite!(@in flow $runtime, $block_on;
            a_burst_is_pushed_back_to_its_publisher_and_only_the_stalled_reader_is_cut,
            an_application_publish_waits_for_room,
            a_burst_past_the_write_window_goes_out_on_write_reports_alone,
            a_stalled_reader_s_backlog_waits_in_the_hub_not_in_its_socket,
        );
        $crate::loopback_suite!(@in recovery $runtime, $block_on;
            a_reconnecting_client_gets_what_it_missed_once_in_order,
            a_plain_client_that_comes_back_with_its_position_recovers,
            subscribe_from_a_kept_position_and_a_refused_reconnect,
            a_restarted_server_starts_new_epochs,
        );
        $crate::loopback_suite!(@in raw $runtime, $block_on;
            raw_clients_get_text_binary_and_fragmented_messages_back_as_they_came,
            a_room_is_shared_by_raw_and_tidings_clients,
            the_subprotocol_chooses_the_protocol_over_the_path,
            a_raw_path_answers_its_heartbeat_and_ping_measures_the_round_trip,
            a_stalled_raw_reader_is_cut_while_raw_readers_get_everything,
            a_raw_message_over_the_limit_closes_with_1009,
            a_raw_websocket_the_application_upgraded_is_managed_by_its_url,
        );
        $crate::loopback_suite!(@in conformance $runtime, $block_on;
            protocol_md_transcripts_hold,
        );
        $crate::loopback_suite!(@in hostile $runtime, $block_on;
            protocol_violations_close_with_1002,
            bad_close_frames_get_1002_and_good_ones_an_echo,
            oversized_and_endless_messages_close_with_1009,
            invalid_utf8_closes_with_1007,
            binary_where_text_is_expected_closes_with_1003,
            huge_names_get_an_error_reply_and_the_connection_stays,
            connection_cap_refuses_with_503,
            bad_handshakes_get_their_http_status,
            a_subscription_flood_is_refused_then_closed_and_freed,
            a_silent_http_client_is_cut_at_the_handshake_timeout,
            unauthenticated_peers_are_closed_with_4005,
            ping_floods_and_event_spam_are_rate_limited,
            a_rate_limited_burst_still_gets_every_accepted_answer,
            stray_and_duplicate_acks_are_never_a_success,
            one_address_and_slow_handshakes_cannot_take_everything,
            soak_returns_every_table_and_memory_to_baseline,
        );
        $crate::__loopback_tls_cases!($runtime, $block_on);
    };
    (@in $module:ident $runtime:expr, $block_on:path; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let rt = $runtime;
                $block_on($crate::testkit::with_deadline(
                    rt.clone(),
                    $crate::testkit::$module::$case(rt),
                ));
            }
        )*
    };
}

/// The `wss://` case, when tidings-net is built with TLS (a `cfg` inside
/// `loopback_suite!` would test the calling crate's features instead).
#[cfg(feature = "tls")]
#[doc(hidden)]
#[macro_export]
macro_rules! __loopback_tls_cases {
    ($runtime:expr, $block_on:path) => {
        $crate::loopback_suite!(@in cases $runtime, $block_on;
            tls_serves_wss_to_our_client_and_tungstenite,
        );
    };
}

/// Without TLS there is no `wss://` case.
#[cfg(not(feature = "tls"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __loopback_tls_cases {
    ($runtime:expr, $block_on:path) => {};
}

/// Runs `test`, failing it if it takes more than a minute (a hang is a failure, not a
/// stuck CI run).
pub async fn with_deadline<R: Runtime>(rt: R, test: impl Future<Output = ()>) {
    let limit = Duration::from_secs(60);
    let sleep = rt.sleep_until(Instant::now() + limit);
    or(test, async {
        sleep.await;
        panic!("test did not finish within {limit:?}");
    })
    .await;
}

/// Starts `builder` on an ephemeral loopback port.
pub async fn start<R: Runtime>(builder: Builder<R>) -> Server<R> {
    builder.bind("127.0.0.1:0").await.expect("bind")
}

/// Our client, connected to `path` of `server`.
pub async fn client<R: Runtime>(rt: &R, server: &Server<R>, path: &str) -> Client<R> {
    ClientBuilder::new(rt.clone(), &server.ws_url(path))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("connect")
}

/// Our client's next event that is not a welcome, within 5 s.
pub async fn event<R: Runtime>(client: &Client<R>) -> ClientEvent {
    loop {
        match client.next_timeout(Duration::from_secs(5)).await {
            Some(ClientEvent::Welcome { .. }) => continue,
            Some(event) => return event,
            None => panic!("no event within 5 s"),
        }
    }
}

/// A plain tungstenite client; `Err((status, body))` if the upgrade is refused.
pub async fn raw<R: Runtime>(
    rt: &R,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<WebSocketStream<R::TcpStream>, (u16, String)> {
    let mut request = url.into_client_request().expect("url");
    for (name, value) in headers {
        let name = http::HeaderName::from_bytes(name.as_bytes()).expect("header name");
        request
            .headers_mut()
            .insert(name, value.parse().expect("header value"));
    }
    let authority = request.uri().authority().expect("authority").to_string();
    let tcp = rt.connect(&authority).await.expect("tcp connect");
    match async_tungstenite::client_async(request, tcp).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err((response.status().as_u16(), body))
        }
        Err(e) => panic!("handshake failed: {e}"),
    }
}

/// The next message a raw client reads that is not a ping or pong, within 5 s.
pub async fn raw_next<R: Runtime, S>(rt: &R, ws: &mut WebSocketStream<S>) -> Option<Ws>
where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin,
{
    let sleep = rt.sleep_until(Instant::now() + Duration::from_secs(5));
    let read = async {
        loop {
            match ws.next().await {
                Some(Ok(Ws::Ping(_) | Ws::Pong(_))) => continue,
                Some(Ok(message)) => return Some(message),
                Some(Err(_)) | None => return None,
            }
        }
    };
    or(read, async {
        sleep.await;
        panic!("no message within 5 s");
    })
    .await
}

/// The next JSON text frame a raw client reads (welcome frames skipped).
pub async fn raw_json<R: Runtime, S>(rt: &R, ws: &mut WebSocketStream<S>) -> Value
where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin,
{
    loop {
        match raw_next(rt, ws).await {
            Some(Ws::Text(text)) => {
                let value: Value = serde_json::from_str(&text).expect("JSON");
                if value["type"] != "welcome" {
                    return value;
                }
            }
            other => panic!("expected a JSON text frame, got {other:?}"),
        }
    }
}

/// Sends a JSON frame from a raw client.
pub async fn raw_send<S>(ws: &mut WebSocketStream<S>, frame: Value)
where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin,
{
    futures_util::SinkExt::send(ws, Ws::text(frame.to_string()))
        .await
        .expect("send");
}

/// Sleeps on the runtime.
pub async fn sleep<R: Runtime>(rt: &R, duration: Duration) {
    rt.sleep_until(Instant::now() + duration).await;
}

/// Polls `check` every 10 ms until it holds, failing after 5 s.
pub async fn eventually<R: Runtime, F, Fut>(rt: &R, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(Instant::now() < until, "never true: {what}");
        sleep(rt, Duration::from_millis(10)).await;
    }
}

/// A hub without a server of its own, and the application's own accept loop for one
/// socket: `upgrade` is the application's handshake, and the WebSocket it makes is handed
/// to the hub with `info`. Returns the hub's handle, the address to connect to, and the
/// connection once it is open.
pub async fn own_server<R, U, Fut>(
    rt: &R,
    info: tidings_core::ConnectionInfo,
    upgrade: U,
) -> (
    crate::Handle<R>,
    std::net::SocketAddr,
    async_channel::Receiver<tidings_core::ConnId>,
)
where
    R: Runtime,
    U: FnOnce(R::TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = WebSocketStream<R::TcpStream>> + Send,
{
    let handle = Builder::new(rt.clone()).start().expect("start");
    let listener = rt.bind("127.0.0.1:0").await.expect("bind");
    let addr = rt.local_addr(&listener).expect("addr");
    let (opened_tx, opened) = async_channel::bounded(1);
    let (own, rt2) = (handle.clone(), rt.clone());
    rt.spawn(async move {
        let (tcp, _) = rt2.accept(&listener).await.expect("accept");
        let ws = upgrade(tcp).await;
        let conn = own
            .open(info, ws, Some(Duration::from_millis(200)))
            .await
            .expect("open");
        let _ = opened_tx.send(conn).await;
    });
    (handle, addr, opened)
}

/// A subscribe frame.
pub fn subscribe(channel: &str) -> Value {
    json!({"type": "subscribe", "channel": channel})
}
