//! Arbitrary bytes from a client: as one text frame (when UTF-8), as a binary frame, line by
//! line as many frames, and as a query string. The hub must answer every text frame it sends
//! with JSON, never panic, and free everything once the connection goes.

#![no_main]

use std::time::Instant;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tidings_core::{Config, ConnectionInfo, Frame, Hub, Input, Output};

fn drain(hub: &mut Hub) {
    while let Some(out) = hub.poll_output() {
        if let Output::Transmit { conn, frame } = out {
            if let Frame::Text(text) = &frame {
                if let Err(e) = serde_json::from_str::<serde_json::Value>(text.as_str()) {
                    panic!("the hub sent a text frame that is not JSON ({e}): {text:?}");
                }
            }
            hub.handle(Instant::now(), Input::Written { conn, frames: 1 });
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // The clock is only the virtual clock's base; the hub never reads one.
    let now = Instant::now();
    let config = Config::default()
        .max_errors(10_000)
        .max_message_size(1 << 20);
    let mut hub = Hub::new(config).expect("valid config");
    let query = String::from_utf8_lossy(data).into_owned();
    let conn = hub
        .open(now, ConnectionInfo::new("/ws").query(query))
        .expect("room for one");
    if let Some(info) = hub.info(conn) {
        for key in ["user_id", "token", ""] {
            let _ = info.query_param(key);
        }
    }
    drain(&mut hub);
    if let Ok(text) = std::str::from_utf8(data) {
        hub.handle(
            now,
            Input::Frame {
                conn,
                frame: Frame::text(text),
            },
        );
        drain(&mut hub);
        for line in text.lines() {
            hub.handle(
                now,
                Input::Frame {
                    conn,
                    frame: Frame::text(line),
                },
            );
            drain(&mut hub);
        }
    }
    hub.handle(
        now,
        Input::Frame {
            conn,
            frame: Frame::Binary(Bytes::copy_from_slice(data)),
        },
    );
    drain(&mut hub);
    hub.handle(
        now,
        Input::PeerClosed {
            conn,
            code: None,
            reason: String::new(),
        },
    );
    drain(&mut hub);
    let left = hub.footprint();
    assert_eq!(
        left.sessions + left.rooms + left.names + left.timers + left.pending_acks,
        0,
        "{left:?}"
    );
    assert_eq!(
        (left.batches, left.pending_outputs, left.namespaces),
        (0, 0, 1),
        "{left:?}"
    );
});
