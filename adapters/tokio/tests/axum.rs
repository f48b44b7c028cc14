//! tidings on a route of an axum application, with no listener of its own: the builder's
//! origin policy, subprotocols and connect hook answer the route's upgrade requests as the
//! built-in server's, and admitted connections live in the hub. Real sockets on 127.0.0.1.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::routing::get;
use serde_json::json;
use tidings_net::reexports::tungstenite::Message as Ws;
use tidings_net::testkit::{eventually, raw, raw_json, raw_next, raw_send};
use tidings_tokio::{
    Accept, HttpResponse, Message, OriginPolicy, Refusal, Target, Tokio, Upgrader,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The application's WebSocket route: the request goes to tidings as it came.
async fn ws(
    State(tidings): State<Upgrader>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    req: Request,
) -> HttpResponse {
    tidings_tokio::upgrade(&tidings, req, remote).await
}

/// An axum application with the tidings route and a route of its own; its address.
async fn serve(tidings: Upgrader) -> SocketAddr {
    let app = axum::Router::new()
        .route("/ws", get(ws))
        .route("/hello", get(|| async { "hello from axum" }))
        .with_state(tidings);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// One HTTP/1.1 request's whole answer (the server closes after it).
async fn http(addr: SocketAddr, head: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(head.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let read = tcp.read_to_end(&mut answer);
    let _ = tokio::time::timeout(Duration::from_secs(2), read).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_axum_route_answers_with_the_builders_checks_and_hands_connections_to_the_hub() {
    let tidings = tidings_tokio::builder()
        .origin(OriginPolicy::allow(["https://*.example.com"]))
        .on_connect(|req| async move {
            match req.query_param("token").as_deref() {
                Some("s3cret") => Ok(Accept::new().name("ann")),
                _ => Err(Refusal::unauthorized("token required")),
            }
        })
        .upgrader()
        .expect("hub");
    let addr = serve(tidings.clone()).await;
    let rt = Tokio;
    let url = format!("ws://{addr}/ws");
    let with_token = format!("{url}?token=s3cret");
    let good_origin = ("origin", "https://app.example.com");

    // The origin policy, then the connect hook, each with its status and who refused.
    let foreign = raw(&rt, &with_token, &[("origin", "https://evil.com")]).await;
    assert_eq!(foreign.err().map(|e| e.0), Some(403));
    let anonymous = raw(&rt, &url, &[good_origin]).await;
    assert_eq!(anonymous.err(), Some((401, "token required".to_owned())));
    let plain = http(
        addr,
        "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(plain.starts_with("HTTP/1.1 426"), "{plain}");
    assert!(
        plain
            .to_ascii_lowercase()
            .contains("sec-websocket-version: 13"),
        "{plain}"
    );
    assert!(plain.contains("tidings-refused-by: server"), "{plain}");
    // A subprotocol tidings does not speak is refused; the one it speaks is chosen.
    let mqtt = [good_origin, ("sec-websocket-protocol", "mqtt")];
    assert_eq!(
        raw(&rt, &with_token, &mqtt).await.err().map(|e| e.0),
        Some(400)
    );
    let v1 = [good_origin, ("sec-websocket-protocol", "mqtt, tidings.v1")];
    let mut chosen = raw(&rt, &with_token, &v1).await.expect("tidings.v1");
    assert!(matches!(raw_next(&rt, &mut chosen).await, Some(Ws::Text(t)) if t.contains("welcome")));
    drop(chosen);
    let handle = tidings.handle().clone();
    eventually(&rt, "the dropped connection leaves the hub", || async {
        handle.count().await.expect("count") == 0
    })
    .await;

    // Admitted: named by the hook, in the hub, reached by the handle and by rooms.
    let mut ann = raw(&rt, &with_token, &[good_origin])
        .await
        .expect("admitted");
    assert!(matches!(raw_next(&rt, &mut ann).await, Some(Ws::Text(t)) if t.contains("welcome")));
    let id = handle
        .by_name("ann")
        .await
        .expect("by_name")
        .expect("named by the connect hook");
    let delivery = handle
        .publish(Target::conn(id), Message::text("hi", "from the app"))
        .await
        .expect("publish");
    assert_eq!(delivery.queued, 1);
    let hi = raw_json(&rt, &mut ann).await;
    assert_eq!(
        (hi["event"].as_str(), hi["data"].as_str()),
        (Some("hi"), Some("from the app"))
    );
    raw_send(
        &mut ann,
        json!({"type": "subscribe", "channel": "news", "id": "s"}),
    )
    .await;
    assert_eq!(raw_json(&rt, &mut ann).await["type"], "subscribed");
    let news = handle.to_room("news", Message::text("news", "one")).await;
    assert_eq!(news.expect("to_room").queued, 1);
    assert_eq!(raw_json(&rt, &mut ann).await["data"], "one");

    // The application's own routes are its own.
    let hello = http(
        addr,
        "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(hello.ends_with("hello from axum"), "{hello}");

    // Shutting tidings down closes its connections with 1001.
    handle.shutdown().await.expect("shutdown");
    let mut closed = None;
    while let Some(message) = raw_next(&rt, &mut ann).await {
        if let Ws::Close(frame) = message {
            closed = frame.map(|f| u16::from(f.code));
            break;
        }
    }
    assert_eq!(closed, Some(1001));
}
