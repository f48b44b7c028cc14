//! The wire codec (PROTOCOL.md in code): client frames in, server frames out.
//!
//! Every frame is a JSON object with a `type`. Binary frames carry the same JSON header on
//! their first line, then `\n`, then the raw payload. Outbound frames are encoded once into
//! shared bytes; decoding takes untrusted input and answers every fault with an [`ErrorCode`]
//! and a reason, never a panic.

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::batch::{Batch, Kind};
use crate::codec::Codec;
use crate::frame::{Frame, Text};
use crate::history::Position;
use crate::ids::AckId;
use crate::message::{Message, Payload, Target};
use crate::request::{Body, DecodeError, ErrorCode, Request};

/// The protocol version in the `welcome` frame.
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest `ack` number a client may use: 2^53 - 1, the largest integer a JavaScript
/// number holds exactly. Larger ones are refused as `malformed`.
pub const MAX_ACK: u64 = (1 << 53) - 1;

/// PROTOCOL.md's codec: what [`Protocol::Tidings`](crate::Protocol::Tidings) connections
/// speak.
pub(crate) struct Tidings;

impl Codec for Tidings {
    fn decode(&self, frame: &Frame) -> Result<Request, DecodeError> {
        match frame {
            Frame::Text(text) => decode_text(text.as_str()),
            Frame::Binary(bytes) => decode_binary(bytes),
            Frame::Ping(_) | Frame::Pong(_) => Err(DecodeError {
                code: ErrorCode::Malformed,
                message: "a control frame is not a request".into(),
                id: None,
                ack: None,
            }),
        }
    }

    fn publication(
        &self,
        target: &Target,
        message: &Message,
        position: Option<(u64, u64)>,
        ack: Option<AckId>,
    ) -> Option<Frame> {
        Some(encode_publication(target, message, position, ack))
    }

    fn batch(&self, batch: &Batch) -> Frame {
        match batch.kind() {
            Kind::Json => encode_batch(&batch.event, batch.target.channel(), batch.items()),
            Kind::Text => encode_text_batch(&batch.event, &String::from_utf8_lossy(batch.items())),
        }
    }

    fn envelopes(&self) -> bool {
        true
    }
}

/// One server frame's header fields. Absent fields are not written.
#[derive(Serialize, Default)]
pub(crate) struct Envelope<'a> {
    #[serde(rename = "type")]
    pub kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ts: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<&'a str>,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<&'a str>,
    /// Set on `subscribed`/`unsubscribed` the application caused, not the client.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub server: bool,
    /// Set on a server's `subscribed` to a channel the client may not leave.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pinned: bool,
    /// On a `subscribed` that asked to recover: whether the missed publications follow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
    /// Why a recovery or a history request could not be served.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    /// An `ack` frame's failure: the application's error, or its silence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Data<'a>>,
}

/// `{"code":...,"message":...}`: why an ack request failed.
#[derive(Serialize)]
pub(crate) struct Failure<'a> {
    pub code: &'a str,
    pub message: &'a str,
}

/// A payload's JSON form, borrowed.
pub(crate) struct Data<'a>(&'a Payload);

impl Serialize for Data<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Payload::Json(v) => v.serialize(s),
            Payload::Text(t) => s.serialize_str(t),
            // Binary payloads never go in `data`: `encode` puts them after the header line.
            Payload::Binary(_) => s.serialize_unit(),
        }
    }
}

/// Serialises a value whose `Serialize` cannot fail (string-keyed JSON, plain structs).
fn json_bytes(value: &impl Serialize, extra: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(128 + extra);
    // serde_json fails only on non-string map keys or a failing custom impl; neither exists in
    // `Envelope` or `serde_json::Value`, so the error arm is unreachable in practice.
    if serde_json::to_writer(&mut buf, value).is_err() {
        buf.clear();
        buf.extend_from_slice(b"{}");
    }
    buf
}

/// Encodes a frame: text with `data` inline, or binary with the payload after the header.
pub(crate) fn encode<'a>(mut env: Envelope<'a>, payload: Option<&'a Payload>) -> Frame {
    match payload {
        Some(Payload::Binary(bytes)) => {
            env.data = None;
            let mut buf = BytesMut::from(&json_bytes(&env, 0)[..]);
            buf.reserve(1 + bytes.len());
            buf.extend_from_slice(b"\n");
            buf.extend_from_slice(bytes);
            Frame::Binary(buf.freeze())
        }
        Some(p) => {
            env.data = Some(Data(p));
            text_frame(json_bytes(&env, 0))
        }
        None => text_frame(json_bytes(&env, 0)),
    }
}

fn text_frame(json: Vec<u8>) -> Frame {
    // serde_json writes UTF-8 only; `Text::from_utf8` re-checks rather than trusting it.
    match Text::from_utf8(Bytes::from(json)) {
        Ok(t) => Frame::Text(t),
        Err(_) => Frame::Text(Text::from_static("{}")),
    }
}

/// A publication of `message` to `target`: an `event`, with its position in the channel's
/// stream (offset, epoch) if it has one, and the ack it asks for.
pub(crate) fn encode_publication(
    target: &Target,
    message: &Message,
    position: Option<(u64, u64)>,
    ack: Option<AckId>,
) -> Frame {
    encode(
        Envelope {
            kind: "event",
            event: Some(&message.event),
            channel: target.channel(),
            id: message.id.as_deref(),
            reply_to: message.reply_to.as_deref(),
            ts: message.timestamp,
            offset: position.map(|p| p.0),
            epoch: position.map(|p| p.1),
            ack: ack.map(|a| a.0),
            ..Envelope::default()
        },
        Some(&message.payload),
    )
}

/// What a refused frame asked, to answer it by: the client's `id` (echoed as `ref`), the
/// `ack` number of an `event` that asked for one, and the channel it was about.
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct Asked<'a> {
    pub reference: Option<&'a str>,
    pub ack: Option<u64>,
    pub channel: Option<&'a str>,
}

/// `{"type":"error","code":...,"message":...}` with the request's `ref`, `ack` and `channel`
/// if any. An `ack` here answers the client's ack request of that number.
pub(crate) fn encode_error(code: ErrorCode, message: &str, asked: Asked<'_>) -> Frame {
    encode(
        Envelope {
            kind: "error",
            code: Some(code.as_str()),
            message: Some(message),
            reference: asked.reference,
            ack: asked.ack,
            channel: asked.channel,
            ..Envelope::default()
        },
        None,
    )
}

/// `{"type":"ack","ack":n,"error":{"code":...,"message":...}}`: an ack request that failed.
pub(crate) fn encode_failed_ack(ack: u64, code: &str, message: &str) -> Frame {
    encode(
        Envelope {
            kind: "ack",
            ack: Some(ack),
            error: Some(Failure { code, message }),
            ..Envelope::default()
        },
        None,
    )
}

/// A JSON batch frame: `{"type":"batch","event":...,"channel":...,"messages":[items]}`.
/// `items` are already-serialised JSON values joined by commas.
fn encode_batch(event: &str, channel: Option<&str>, items: &[u8]) -> Frame {
    #[derive(Serialize)]
    struct Head<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        event: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        channel: Option<&'a str>,
    }
    let head = json_bytes(
        &Head {
            kind: "batch",
            event,
            channel,
        },
        items.len() + 16,
    );
    // Reopen the object to append `"messages":[...]`: head ends with `}`.
    let mut buf = head;
    buf.pop();
    buf.extend_from_slice(b",\"messages\":[");
    buf.extend_from_slice(items);
    buf.extend_from_slice(b"]}");
    text_frame(buf)
}

/// `{"type":"history","channel":...,"offset":...,"epoch":...,"publications":[...]}`: `head`
/// (kind `history`) with the kept publications, each the event frame it went out as. A
/// binary publication appears as its header with `"binary":true` (its payload cannot be
/// JSON): a client gets it whole by recovering.
pub(crate) fn encode_history<'f>(
    head: Envelope<'_>,
    publications: impl Iterator<Item = &'f Frame>,
) -> Frame {
    let mut buf = json_bytes(&head, 256);
    // Reopen the object to append `"publications":[...]`: head ends with `}`.
    buf.pop();
    buf.extend_from_slice(b",\"publications\":[");
    for (n, frame) in publications.enumerate() {
        if n > 0 {
            buf.push(b',');
        }
        match frame {
            Frame::Text(text) => buf.extend_from_slice(text.as_str().as_bytes()),
            Frame::Binary(bytes) => {
                let end = bytes
                    .iter()
                    .position(|&b| b == b'\n')
                    .unwrap_or(bytes.len());
                // The header is an object: `{` then its fields.
                buf.extend_from_slice(b"{\"binary\":true,");
                buf.extend_from_slice(bytes.get(1..end).unwrap_or_default());
            }
            Frame::Ping(_) | Frame::Pong(_) => buf.extend_from_slice(b"null"),
        }
    }
    buf.extend_from_slice(b"]}");
    text_frame(buf)
}

/// A text batch frame: the header line, then one line per item.
fn encode_text_batch(header: &str, lines: &str) -> Frame {
    let mut s = String::with_capacity(header.len() + 1 + lines.len());
    s.push_str(header);
    s.push('\n');
    s.push_str(lines);
    Frame::Text(Text::from(s))
}

/// The `welcome` frame greeting a new connection; `heartbeat` is the application heartbeat's
/// `(ping, pong)` texts, if one is configured.
pub(crate) fn encode_welcome(
    conn: &str,
    ping_interval_ms: Option<u64>,
    silence_ms: Option<u64>,
    heartbeat: Option<(&str, &str)>,
) -> Frame {
    #[derive(Serialize)]
    struct Heartbeat<'a> {
        ping: &'a str,
        pong: &'a str,
    }
    #[derive(Serialize)]
    struct Welcome<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        version: u32,
        conn: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        ping_interval_ms: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        heartbeat: Option<Heartbeat<'a>>,
    }
    text_frame(json_bytes(
        &Welcome {
            kind: "welcome",
            version: PROTOCOL_VERSION,
            conn,
            ping_interval_ms,
            timeout_ms: silence_ms,
            heartbeat: heartbeat.map(|(ping, pong)| Heartbeat { ping, pong }),
        },
        0,
    ))
}

/// The flat shape every client frame is read into; unknown fields are ignored so that newer
/// clients can add fields without breaking older servers.
#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "type")]
    kind: Option<String>,
    channel: Option<String>,
    event: Option<String>,
    data: Option<Value>,
    id: Option<String>,
    ack: Option<u64>,
    since: Option<u64>,
    epoch: Option<u64>,
    limit: Option<u64>,
}

/// Decodes a text frame's JSON.
pub(crate) fn decode_text(text: &str) -> Result<Request, DecodeError> {
    decode(text.as_bytes(), None)
}

/// Decodes a binary frame: a JSON header line, `\n`, then the payload.
pub(crate) fn decode_binary(bytes: &Bytes) -> Result<Request, DecodeError> {
    let Some(split) = bytes.iter().position(|&b| b == b'\n') else {
        return Err(DecodeError {
            code: ErrorCode::Malformed,
            message: "binary frame has no JSON header line".into(),
            id: None,
            ack: None,
        });
    };
    decode(&bytes[..split], Some(bytes.slice(split + 1..)))
}

/// What a frame that is not decoded asked (its `id`, and the `ack` of an `event`), read
/// leniently so that its refusal can be matched to it. `None`s if it is not a JSON object.
pub(crate) fn peek(frame: &Frame) -> (Option<String>, Option<u64>) {
    let header = match frame {
        Frame::Text(text) => text.as_str().as_bytes(),
        Frame::Binary(bytes) => {
            let end = bytes
                .iter()
                .position(|&b| b == b'\n')
                .unwrap_or(bytes.len());
            &bytes[..end]
        }
        Frame::Ping(_) | Frame::Pong(_) => return (None, None),
    };
    peek_header(header)
}

fn peek_header(header: &[u8]) -> (Option<String>, Option<u64>) {
    /// Every field as any JSON value, so that a wrong type elsewhere does not hide these.
    #[derive(Deserialize)]
    struct Loose {
        #[serde(rename = "type")]
        kind: Option<Value>,
        id: Option<Value>,
        ack: Option<Value>,
    }
    let Ok(loose) = serde_json::from_slice::<Loose>(header) else {
        return (None, None);
    };
    let id = match loose.id {
        Some(Value::String(id)) => Some(id),
        _ => None,
    };
    let is_event = loose.kind.as_ref().and_then(Value::as_str) == Some("event");
    let ack = loose
        .ack
        .as_ref()
        .and_then(Value::as_u64)
        .filter(|&ack| is_event && ack <= MAX_ACK);
    (id, ack)
}

fn decode(header: &[u8], binary: Option<Bytes>) -> Result<Request, DecodeError> {
    let raw: Raw = serde_json::from_slice(header).map_err(|e| {
        let (id, ack) = peek_header(header);
        DecodeError {
            code: ErrorCode::Malformed,
            message: format!("malformed frame: {e}"),
            id,
            ack,
        }
    })?;
    let id = raw.id;
    if raw.ack.is_some_and(|ack| ack > MAX_ACK) {
        return Err(DecodeError {
            code: ErrorCode::Malformed,
            message: format!("`ack` must be an integer from 0 to {MAX_ACK} (2^53 - 1)"),
            id,
            ack: None,
        });
    }
    // Only an `event`'s ack is a request of the client's that an error answers.
    let asked_ack = raw.ack.filter(|_| raw.kind.as_deref() == Some("event"));
    let fail = |code, message: String, id: Option<String>| {
        Err(DecodeError {
            code,
            message,
            id,
            ack: asked_ack,
        })
    };
    let Some(kind) = raw.kind else {
        return fail(ErrorCode::MissingField, "missing field `type`".into(), id);
    };
    let data = match binary {
        Some(bytes) => Payload::Binary(bytes),
        None => Payload::Json(raw.data.unwrap_or(Value::Null)),
    };
    macro_rules! need {
        ($field:expr, $name:literal) => {
            match $field {
                Some(v) => v,
                None => {
                    return fail(
                        ErrorCode::MissingField,
                        format!("`{}` needs field `{}`", kind, $name),
                        id,
                    )
                }
            }
        };
    }
    let body = match kind.as_str() {
        "subscribe" => Body::Subscribe {
            channel: need!(raw.channel, "channel"),
            recover: match raw.since {
                Some(since) => Some(Position {
                    since,
                    epoch: need!(raw.epoch, "epoch"),
                }),
                None => None,
            },
        },
        "history" => Body::History {
            channel: need!(raw.channel, "channel"),
            since: match raw.since {
                Some(since) => Some(Position {
                    since,
                    epoch: need!(raw.epoch, "epoch"),
                }),
                None => None,
            },
            limit: raw.limit,
        },
        "unsubscribe" => Body::Unsubscribe {
            channel: need!(raw.channel, "channel"),
        },
        "publish" => Body::Publish {
            channel: need!(raw.channel, "channel"),
            event: need!(raw.event, "event"),
            data,
        },
        "event" => Body::Event {
            event: need!(raw.event, "event"),
            data,
            ack: raw.ack,
        },
        "ack" => Body::Ack {
            ack: need!(raw.ack, "ack"),
            data,
        },
        "ping" => Body::Ping,
        _ => {
            // Echo at most a short prefix of an unknown type: the reason stays small.
            let shown: String = kind.chars().take(32).collect();
            return fail(
                ErrorCode::UnknownType,
                format!("unknown frame type {shown:?}"),
                id,
            );
        }
    };
    Ok(Request { id, body })
}

/// Checks a room, channel, event or namespace name: non-empty, at most `max` bytes, no
/// control characters.
pub(crate) fn check_name(name: &str, max: usize) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("empty")
    } else if name.len() > max {
        Err("too long")
    } else if name.chars().any(char::is_control) {
        Err("contains control characters")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(frame: &Frame) -> Value {
        serde_json::from_str(frame.as_text().expect("text frame")).expect("json")
    }

    #[test]
    fn event_envelope_writes_only_present_fields() {
        let p = Payload::Json(json!({"a": 1}));
        let f = encode(
            Envelope {
                kind: "event",
                event: Some("chat"),
                channel: Some("lobby"),
                id: Some("m1"),
                reply_to: Some("m0"),
                ts: Some(17),
                offset: Some(3),
                ..Envelope::default()
            },
            Some(&p),
        );
        assert_eq!(
            parse(&f),
            json!({"type":"event","event":"chat","channel":"lobby","id":"m1","reply_to":"m0",
                   "ts":17,"offset":3,"data":{"a":1}})
        );
    }

    #[test]
    fn text_payload_is_a_json_string() {
        let p = Payload::Text("hi \"there\"\n".into());
        let f = encode(
            Envelope {
                kind: "event",
                event: Some("x"),
                ..Envelope::default()
            },
            Some(&p),
        );
        assert_eq!(parse(&f)["data"], json!("hi \"there\"\n"));
    }

    #[test]
    fn binary_payload_follows_a_header_line_and_decodes_back() {
        let p = Payload::Binary(Bytes::from_static(b"\x00\x01\n\xff"));
        let f = encode(
            Envelope {
                kind: "event",
                event: Some("blob"),
                ..Envelope::default()
            },
            Some(&p),
        );
        let Frame::Binary(bytes) = f else {
            panic!("expected binary")
        };
        let nl = bytes.iter().position(|&b| b == b'\n').expect("header line");
        let head: Value = serde_json::from_slice(&bytes[..nl]).expect("header json");
        assert_eq!(head, json!({"type":"event","event":"blob"}));
        assert_eq!(&bytes[nl + 1..], b"\x00\x01\n\xff");
        // The same layout decodes as a client frame.
        match decode_binary(&bytes) {
            Ok(Request {
                body: Body::Event { event, data, .. },
                ..
            }) => {
                assert_eq!(event, "blob");
                assert_eq!(data, p);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn batch_frame_holds_items_in_order() {
        let f = encode_batch("typing", Some("room"), b"1,{\"u\":\"a\"},\"x\"");
        assert_eq!(
            parse(&f),
            json!({"type":"batch","event":"typing","channel":"room","messages":[1,{"u":"a"},"x"]})
        );
        assert_eq!(
            encode_text_batch("typing", "a\nb").as_text(),
            Some("typing\na\nb")
        );
    }

    #[test]
    fn decodes_every_request_type() {
        let cases = [
            (
                r#"{"type":"subscribe","channel":"c","id":"r1"}"#,
                Some("r1"),
                Body::Subscribe {
                    channel: "c".into(),
                    recover: None,
                },
            ),
            (
                r#"{"type":"subscribe","channel":"c","since":4,"epoch":9}"#,
                None,
                Body::Subscribe {
                    channel: "c".into(),
                    recover: Some(Position { since: 4, epoch: 9 }),
                },
            ),
            (
                r#"{"type":"history","channel":"c","limit":3,"id":"h"}"#,
                Some("h"),
                Body::History {
                    channel: "c".into(),
                    since: None,
                    limit: Some(3),
                },
            ),
            (
                r#"{"type":"history","channel":"c","since":0,"epoch":2}"#,
                None,
                Body::History {
                    channel: "c".into(),
                    since: Some(Position { since: 0, epoch: 2 }),
                    limit: None,
                },
            ),
            (
                r#"{"type":"unsubscribe","channel":"c"}"#,
                None,
                Body::Unsubscribe {
                    channel: "c".into(),
                },
            ),
            (
                r#"{"type":"publish","channel":"c","event":"e","data":[1],"id":"p"}"#,
                Some("p"),
                Body::Publish {
                    channel: "c".into(),
                    event: "e".into(),
                    data: Payload::Json(json!([1])),
                },
            ),
            (
                r#"{"type":"event","event":"e","ack":9,"future_field":true}"#,
                None,
                Body::Event {
                    event: "e".into(),
                    data: Payload::Json(Value::Null),
                    ack: Some(9),
                },
            ),
            (
                r#"{"type":"ack","ack":4,"data":"ok"}"#,
                None,
                Body::Ack {
                    ack: 4,
                    data: Payload::Json(json!("ok")),
                },
            ),
            (r#"{"type":"ping","id":"x"}"#, Some("x"), Body::Ping),
        ];
        for (text, id, body) in cases {
            assert_eq!(
                decode_text(text),
                Ok(Request {
                    id: id.map(Into::into),
                    body
                }),
                "{text}"
            );
        }
    }

    #[test]
    fn bad_frames_get_codes_and_reasons() {
        let code = |t: &str| decode_text(t).map_err(|e| e.code).err();
        assert_eq!(code("not json"), Some(ErrorCode::Malformed));
        assert_eq!(code("[1,2]"), Some(ErrorCode::Malformed));
        assert_eq!(
            code(r#"{"type":"event","event":"e","ack":"x"}"#),
            Some(ErrorCode::Malformed)
        );
        assert_eq!(code(r#"{"channel":"c"}"#), Some(ErrorCode::MissingField));
        assert_eq!(
            code(r#"{"type":"subscribe"}"#),
            Some(ErrorCode::MissingField)
        );
        assert_eq!(code(r#"{"type":"ack"}"#), Some(ErrorCode::MissingField));
        // A position is both numbers, each a non-negative integer.
        let e = decode_text(r#"{"type":"subscribe","channel":"c","since":3}"#).expect_err("half");
        assert_eq!(e.code, ErrorCode::MissingField);
        assert!(e.message.contains("epoch"), "{}", e.message);
        assert_eq!(
            code(r#"{"type":"history","channel":"c","since":-1,"epoch":1}"#),
            Some(ErrorCode::Malformed)
        );
        assert_eq!(
            code(r#"{"type":"history","channel":"c","limit":"all"}"#),
            Some(ErrorCode::Malformed)
        );
        let e = decode_text(r#"{"type":"nope","id":"r7"}"#).expect_err("unknown");
        assert_eq!(e.code, ErrorCode::UnknownType);
        assert_eq!(e.id.as_deref(), Some("r7"));
        assert!(e.message.contains("nope"));
        assert_eq!(
            decode_binary(&Bytes::from_static(b"no header"))
                .map_err(|e| e.code)
                .err(),
            Some(ErrorCode::Malformed)
        );
        // Deep nesting hits serde_json's recursion limit instead of the stack.
        let deep = format!(
            r#"{{"type":"event","event":"e","data":{}{}}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert_eq!(code(&deep), Some(ErrorCode::Malformed));
    }

    #[test]
    fn unknown_type_reason_is_short() {
        let long = format!(r#"{{"type":"{}"}}"#, "x".repeat(100_000));
        let e = decode_text(&long).expect_err("unknown");
        assert!(e.message.len() < 100, "{}", e.message.len());
    }

    /// PROTOCOL.md's transcripts speak the codec: every JSON frame a client sends there is
    /// an object with a `type` (most decode; the refused ones are the spec's own error
    /// examples), and every one the server sends is of a server frame type. The adapters'
    /// conformance test replays them against a running server.
    #[test]
    fn protocol_md_transcripts_use_the_frame_types() {
        let doc = include_str!("../../PROTOCOL.md");
        let server_types = [
            "welcome",
            "subscribed",
            "unsubscribed",
            "event",
            "batch",
            "ack",
            "error",
            "pong",
            "history",
        ];
        let (mut decoded, mut refused, mut answers) = (0, 0, 0);
        let mut in_transcript = false;
        for line in doc.lines() {
            match line {
                "```transcript" => in_transcript = true,
                "```" => in_transcript = false,
                _ if in_transcript => {
                    let (head, frame) = line.split_once(' ').expect("`> frame` or `< frame`");
                    let Ok(v) = serde_json::from_str::<Value>(frame) else {
                        continue; // plain text, a binary frame or a text batch
                    };
                    if head.ends_with('>') {
                        assert!(v["type"].is_string(), "{line}");
                        match decode_text(frame) {
                            Ok(_) => decoded += 1,
                            Err(_) => refused += 1,
                        }
                    } else {
                        answers += 1;
                        let kind = v["type"].as_str().unwrap_or_default();
                        assert!(server_types.contains(&kind), "not a server frame: {line}");
                    }
                }
                _ => {}
            }
        }
        assert!(decoded >= 20 && answers >= 25, "transcripts were lost");
        assert_eq!(refused, 3, "the frames the spec shows failing to decode");
    }

    #[test]
    fn names_follow_the_rules() {
        assert_eq!(check_name("lobby", 8), Ok(()));
        assert_eq!(check_name("", 8), Err("empty"));
        assert_eq!(check_name("123456789", 8), Err("too long"));
        assert_eq!(check_name("12345678", 8), Ok(()), "exactly the limit fits");
        assert_eq!(check_name("a\nb", 8), Err("contains control characters"));
        assert_eq!(check_name("émoji✓", 16), Ok(()));
    }
}
