//! The wire codec through the hub's public door: an inbound `event` frame decoded into an
//! [`Event::Message`](tidings_core::Event), with and without an ack id, and an outbound
//! message encoded into the frame for one connection. Time per element is per frame,
//! bookkeeping included (counters, rate and queue accounting, the written report).
//!
//! `cargo bench -p tidings-core --bench codec`

mod common;

use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::json;
use tidings_core::{Event, Frame, Input, Message, Output, Payload};

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));
    let now = Instant::now();
    let mut hub = common::hub(1, |c| c.ping_period(None));
    let conn = common::open(&mut hub, now, 1)[0];

    let event = r#"{"type":"event","event":"move","data":{"x":3,"y":4,"name":"ann"}}"#;
    let frame = Frame::text(event);
    group.bench_function(BenchmarkId::new("decode", "event"), |b| {
        b.iter(|| {
            let frame = frame.clone();
            hub.handle(now, Input::Frame { conn, frame });
            match hub.poll_output() {
                Some(Output::Event(e)) if matches!(*e, Event::Message { ack: None, .. }) => {}
                other => panic!("expected the message, got {other:?}"),
            }
        })
    });

    // A question and its answer: the ack id is free again for the next iteration.
    let question = r#"{"type":"event","event":"move","data":{"x":3,"y":4,"name":"ann"},"ack":12}"#;
    let frame = Frame::text(question);
    group.bench_function(
        BenchmarkId::new("decode", "event_with_ack_and_reply"),
        |b| {
            b.iter(|| {
                let frame = frame.clone();
                hub.handle(now, Input::Frame { conn, frame });
                match hub.poll_output().map(|o| match o {
                    Output::Event(e) => Ok(*e),
                    other => Err(other),
                }) {
                    Some(Ok(Event::Message { ack: Some(ack), .. })) => {
                        hub.reply_ack(now, conn, ack, Payload::Json(json!(true)))
                            .expect("reply");
                    }
                    other => panic!("expected the question, got {other:?}"),
                }
                common::drain(&mut hub, now)
            })
        },
    );

    let data = json!({ "x": 3, "y": 4, "name": "ann", "ok": true });
    group.bench_function(BenchmarkId::new("encode", "emit_json"), |b| {
        b.iter(|| {
            let message = Message::json("moved", data.clone());
            let delivery = hub.emit(now, conn, message).expect("emit");
            assert_eq!(delivery.queued, 1);
            common::drain(&mut hub, now)
        })
    });
    group.bench_function(BenchmarkId::new("encode", "emit_binary"), |b| {
        b.iter(|| {
            let message = Message::binary("blob", &b"0123456789abcdef"[..]);
            let delivery = hub.emit(now, conn, message).expect("emit");
            assert_eq!(delivery.queued, 1);
            common::drain(&mut hub, now)
        })
    });
    group.finish();
}

criterion_group!(all, codec);
criterion_main!(all);
