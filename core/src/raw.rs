//! The raw codec: what [`Protocol::Raw`](crate::Protocol::Raw) connections speak, for
//! clients written for libraries without an envelope (wsm, goWs, waffle).
//!
//! Inbound, every text or binary frame is one [`Event::Message`](crate::Event::Message)
//! named [`RAW_EVENT`](crate::RAW_EVENT), with the bytes and the frame type as they came
//! ([`Payload::Text`] or [`Payload::Binary`]). Outbound, a message is written as its payload
//! alone: text as text, binary as binary, JSON as its text. A JSON batch is a JSON array of
//! its items; a text batch is its lines joined by `\n`, without the header line.

use crate::batch::{Batch, Kind};
use crate::codec::Codec;
use crate::frame::{Frame, Text};
use crate::ids::AckId;
use crate::message::{Message, Payload, Target};
use crate::protocol::RAW_EVENT;
use crate::request::{Body, DecodeError, ErrorCode, Request};

pub(crate) struct Raw;

impl Codec for Raw {
    fn decode(&self, frame: &Frame) -> Result<Request, DecodeError> {
        let data = match frame {
            Frame::Text(text) => Payload::Text(text.as_str().to_owned()),
            Frame::Binary(bytes) => Payload::Binary(bytes.clone()),
            Frame::Ping(_) | Frame::Pong(_) => {
                return Err(DecodeError {
                    code: ErrorCode::Malformed,
                    message: "a control frame is not a message".into(),
                    id: None,
                    ack: None,
                })
            }
        };
        Ok(Request {
            id: None,
            body: Body::Event {
                event: RAW_EVENT.to_owned(),
                data,
                ack: None,
            },
        })
    }

    fn publication(
        &self,
        _target: &Target,
        message: &Message,
        _position: Option<(u64, u64)>,
        _ack: Option<AckId>,
    ) -> Option<Frame> {
        Some(match &message.payload {
            Payload::Text(text) => Frame::text(text.as_str()),
            Payload::Binary(bytes) => Frame::Binary(bytes.clone()),
            Payload::Json(value) => Frame::text(value.to_string()),
        })
    }

    fn batch(&self, batch: &Batch) -> Frame {
        let items = String::from_utf8_lossy(batch.items());
        match batch.kind() {
            Kind::Json => Frame::text(format!("[{items}]")),
            Kind::Text => Frame::Text(Text::from(items.into_owned())),
        }
    }

    fn envelopes(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use serde_json::json;

    use super::*;

    #[test]
    fn frames_in_are_messages_as_they_came() {
        let text = Raw.decode(&Frame::text("héllo")).expect("text");
        let Body::Event { event, data, ack } = text.body else {
            panic!("not an event: {text:?}");
        };
        assert_eq!((event.as_str(), ack, text.id), (RAW_EVENT, None, None));
        assert_eq!(data, Payload::Text("héllo".into()));
        let bytes = Bytes::from_static(&[0, 255, 10]);
        let binary = Raw.decode(&Frame::Binary(bytes.clone())).expect("binary");
        assert!(matches!(binary.body, Body::Event { data: Payload::Binary(b), .. } if b == bytes));
        assert!(Raw.decode(&Frame::Ping(Bytes::new())).is_err());
    }

    #[test]
    fn messages_out_are_their_payload_alone() {
        let target = Target::room("/", "lobby");
        let out = |m: Message| Raw.publication(&target, &m, Some((3, 1)), Some(AckId(2)));
        assert_eq!(
            out(Message::text("chat", "hi").id("x")),
            Some(Frame::text("hi"))
        );
        assert_eq!(
            out(Message::binary("chat", vec![1, 2])),
            Some(Frame::Binary(Bytes::from_static(&[1, 2])))
        );
        assert_eq!(
            out(Message::json("chat", json!({"a": 1}))),
            Some(Frame::text(r#"{"a":1}"#))
        );
        assert!(!Raw.envelopes());
    }
}
