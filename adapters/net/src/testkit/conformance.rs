//! PROTOCOL.md against a running server: every `transcript` block of the spec is replayed with
//! raw WebSocket clients on a fresh server, and every frame the spec shows the server sending
//! must arrive, in order, as written. The spec cannot drift from the server without this
//! failing. The transcript notation and the example application are described in the spec's
//! last section; the application is [`example_app`].

use std::collections::btree_map::{BTreeMap, Entry};
use std::time::Duration;

use async_tungstenite::WebSocketStream;
use serde_json::{json, Value};
use tidings_core::{AppHeartbeat, Config, History, Message, Payload, Target};

use super::*;
use crate::{Ctx, Router};

const SPEC: &str = include_str!("../../../../PROTOCOL.md");

/// One line of a transcript.
#[derive(Debug)]
struct Line {
    client: char,
    sends: bool,
    text: String,
}

/// The `transcript` blocks of the spec, in order.
fn transcripts() -> Vec<Vec<Line>> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<Line>> = None;
    for line in SPEC.lines() {
        match (line, current.as_mut()) {
            ("```transcript", None) => current = Some(Vec::new()),
            ("```", Some(_)) => blocks.extend(current.take()),
            (line, Some(block)) => block.push(parse(line)),
            _ => {}
        }
    }
    blocks
}

fn parse(line: &str) -> Line {
    let (head, text) = line
        .split_once(' ')
        .unwrap_or_else(|| panic!("a transcript line is `> frame` or `< frame`: {line:?}"));
    let (client, arrow) = match head.len() {
        1 => ('a', head),
        2 => (head.chars().next().unwrap_or('a'), &head[1..]),
        _ => panic!("bad transcript line: {line:?}"),
    };
    assert!(
        arrow == ">" || arrow == "<",
        "bad transcript line: {line:?}"
    );
    Line {
        client,
        sends: arrow == ">",
        text: text.to_owned(),
    }
}

/// A line as the frame it stands for: JSON text, a binary frame (a JSON header, `\n`, bytes)
/// from a client, a text batch (lines joined by `\n`) from the server, or plain text.
fn frame_of(line: &Line) -> Ws {
    if serde_json::from_str::<Value>(&line.text).is_ok() {
        return Ws::text(line.text.clone());
    }
    match line.text.split_once("\\n") {
        Some((header, rest)) if line.sends && serde_json::from_str::<Value>(header).is_ok() => {
            let mut bytes = header.as_bytes().to_vec();
            bytes.push(b'\n');
            bytes.extend_from_slice(rest.as_bytes());
            Ws::binary(bytes)
        }
        _ => Ws::text(line.text.replace("\\n", "\n")),
    }
}

/// Whether `got` matches `want`: equal JSON values, where a `"…"` in `want` matches anything.
fn matches(want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::String(s), _) if s == "…" => true,
        (Value::Object(w), Value::Object(g)) => {
            w.len() == g.len()
                && w.iter()
                    .all(|(k, v)| g.get(k).is_some_and(|gv| matches(v, gv)))
        }
        (Value::Array(w), Value::Array(g)) => {
            w.len() == g.len() && w.iter().zip(g).all(|(w, g)| matches(w, g))
        }
        _ => want == got,
    }
}

/// The example application the spec's transcripts run against (the spec's last section).
pub fn example_app<R: Runtime>() -> (Config, Router<R>) {
    let config = Config::default()
        .client_publish(true)
        .answer_timeout(Duration::from_secs(1))
        .app_heartbeat(Some(AppHeartbeat::default()))
        .history("feed:*", History::new(100, Duration::from_secs(120)))
        // Epochs counted from 0, as the spec's transcripts show them.
        .seed(Some(0));
    let batch_ttl = Duration::from_millis(500);
    let router = Router::new()
        .on("save", |_, _: Value| async { json!({"saved": true}) })
        .on("buy", |ctx: Ctx<R>, _: Value| async move {
            let _ = ctx.error_code("sold_out", "none left").await;
        })
        .on_raw("upload", |_, data: Payload| async move {
            match data {
                Payload::Binary(bytes) => json!({ "bytes": bytes.len() }),
                _ => json!({ "bytes": null }),
            }
        })
        .on("join_me", |ctx: Ctx<R>, channel: String| async move {
            let _ = ctx.join_pinned(&channel).await;
        })
        .on("kick", |ctx: Ctx<R>, channel: String| async move {
            let _ = ctx.leave(&channel).await;
        })
        .on("headline", |ctx: Ctx<R>, _: Value| async move {
            let headline = Message::json("headline", json!({"title": "hi"}))
                .id("m2")
                .reply_to("m1")
                .timestamp(1_700_000_000_000);
            let _ = ctx
                .handle()
                .publish(Target::room("/", "news"), headline)
                .await;
        })
        .on("ask", |ctx: Ctx<R>, _: Value| async move {
            let asked = ctx.emit_with_ack("question", "are you there?", None).await;
            if let Some(answer) = asked.ok().and_then(|a| a.as_json()) {
                let _ = ctx.emit("answered", answer).await;
            }
        })
        .on("cursor", move |ctx: Ctx<R>, at: Value| async move {
            let target = Target::room("/", "doc-1");
            let handle = ctx.handle();
            let _ = handle
                .publish_batched(target, "cursor", "cursor", at, batch_ttl)
                .await;
        })
        .on("log", move |ctx: Ctx<R>, line: String| async move {
            let handle = ctx.handle();
            let _ = handle
                .publish_batched_text(Target::all(), "log", "log-lines", &line, batch_ttl)
                .await;
        })
        .authorize_subscribe(|_, channel| async move {
            match channel.starts_with("private-") {
                true => Err("members only".to_owned()),
                false => Ok(()),
            }
        });
    (config, router)
}

pub async fn protocol_md_transcripts_hold<R: Runtime>(rt: R) {
    the_notation_reads_every_line();
    let blocks = transcripts();
    assert!(blocks.len() >= 10, "the spec's transcripts were lost");
    for (n, block) in blocks.iter().enumerate() {
        let (config, router) = example_app::<R>();
        let server = start(Builder::new(rt.clone()).config(config).router(router)).await;
        let mut clients: BTreeMap<char, WebSocketStream<R::TcpStream>> = BTreeMap::new();
        for (i, line) in block.iter().enumerate() {
            let at = format!("transcript {} line {}: {}", n + 1, i + 1, line.text);
            if let Entry::Vacant(slot) = clients.entry(line.client) {
                let mut ws = raw(&rt, &server.ws_url("/ws"), &[]).await.expect("connect");
                // The welcome comes first; it is checked only where the transcript shows it.
                let shows_welcome = !line.sends && line.text.contains(r#""type":"welcome""#);
                if !shows_welcome {
                    let welcome = raw_next(&rt, &mut ws).await.expect("welcome");
                    assert!(welcome.to_text().is_ok_and(|t| t.contains("welcome")));
                }
                slot.insert(ws);
            }
            let Some(ws) = clients.get_mut(&line.client) else {
                unreachable!("inserted above")
            };
            let expected = frame_of(line);
            if line.sends {
                ws.send(expected)
                    .await
                    .unwrap_or_else(|e| panic!("{at}: {e}"));
                continue;
            }
            let got = raw_next(&rt, ws)
                .await
                .unwrap_or_else(|| panic!("{at}: the connection ended"));
            let same = match (&expected, &got) {
                (Ws::Text(want), Ws::Text(got)) => {
                    match (serde_json::from_str(want), serde_json::from_str(got)) {
                        (Ok(want), Ok(got)) => matches(&want, &got),
                        _ => want == got,
                    }
                }
                _ => expected == got,
            };
            assert!(same, "{at}\n  got: {got:?}");
        }
    }
}

/// The reader of the notation sees what the spec's last section says it means.
fn the_notation_reads_every_line() {
    let blocks = transcripts();
    let lines: Vec<&Line> = blocks.iter().flatten().collect();
    assert!(lines.iter().any(|l| l.client == 'b' && !l.sends));
    let binary = lines
        .iter()
        .find(|l| l.sends && l.text.contains("upload"))
        .map(|l| frame_of(l));
    assert!(matches!(binary, Some(Ws::Binary(b)) if b.ends_with(b"}\nhello")));
    let batch = lines.iter().find(|l| l.text.starts_with("log-lines"));
    assert_eq!(
        batch.map(|l| frame_of(l)),
        Some(Ws::text("log-lines\nfirst line\nsecond line"))
    );
    assert!(matches(
        &json!({"a": "…", "b": [1]}),
        &json!({"a": {"x": 1}, "b": [1]})
    ));
    assert!(!matches(&json!({"a": 1}), &json!({"a": 1, "extra": 2})));
}
