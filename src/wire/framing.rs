//! A connection's framing: native JSON frames or Socket.IO packets. Both decode into the same
//! typed commands and encode the same replies and pushes, so nothing past the edge knows
//! which one a client speaks.

use bytestring::ByteString;
use serde_json::{Number, Value, json};

use super::socketio::{self, EngineVersion, Packet};
use super::{Delivery, Reply, native};
use crate::domain::{ConnectionId, Error, NodeId, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Native,
    SocketIo(EngineVersion),
}

/// What a request is acked with.
#[derive(Debug, Clone, PartialEq)]
pub enum AckId {
    Native(Number),
    SocketIo(u64),
}

/// One decoded inbound frame.
#[derive(Debug)]
pub enum Inbound {
    /// An event, parsed no further than its name: `data` is an error when the frame itself
    /// was bad. The connection's API turns it into commands.
    Request {
        id: Option<AckId>,
        event: String,
        data: Result<Value, Error>,
    },
    /// Socket.IO namespace connect, with its auth payload.
    Connect {
        auth: Option<Value>,
    },
    /// A Socket.IO packet for a namespace this server does not serve: answer and go on.
    Answer(String),
    /// Engine.IO ping (EIO 3 clients ping the server).
    Ping,
    Pong,
    Disconnect,
    Ignore,
    /// A packet that breaks the protocol: close with 1002.
    Protocol(String),
    /// Binary packets are not served: close with 1003.
    Binary,
}

impl Framing {
    /// `native` or `socketio`, as the server API lists connections.
    pub fn name(self) -> &'static str {
        match self {
            Framing::Native => "native",
            Framing::SocketIo(_) => "socketio",
        }
    }

    /// Decodes a text frame. `acting` is `None` until a Socket.IO client has connected, when
    /// events are a protocol error.
    pub fn decode(self, text: &str, connected: bool) -> Inbound {
        match self {
            Framing::Native => {
                if !connected {
                    return Inbound::Protocol("not authenticated".into());
                }
                let inbound = native::decode(text);
                let data = inbound.data.and_then(well_formed);
                Inbound::Request { id: inbound.id.map(AckId::Native), event: inbound.event, data }
            }
            Framing::SocketIo(_) => match socketio::parse(text) {
                Packet::Ping => Inbound::Ping,
                Packet::Pong => Inbound::Pong,
                Packet::Close | Packet::Disconnect => Inbound::Disconnect,
                Packet::Noop | Packet::Ack => Inbound::Ignore,
                Packet::Connect { namespace, .. } if namespace != "/" => {
                    Inbound::Answer(socketio::invalid_namespace(&namespace))
                }
                Packet::Connect { auth, .. } => Inbound::Connect { auth },
                Packet::Event { namespace, ack, .. } if namespace != "/" => Inbound::Request {
                    id: ack.map(AckId::SocketIo),
                    event: "?".into(),
                    data: Err(Error::bad_request(format!("namespace {namespace} is not served"))),
                },
                Packet::Event { .. } if !connected => Inbound::Protocol("event before namespace connect".into()),
                Packet::Event { ack, event, data, .. } => {
                    Inbound::Request { id: ack.map(AckId::SocketIo), event, data: well_formed(data) }
                }
                Packet::Binary => Inbound::Binary,
                Packet::Invalid(reason) => Inbound::Protocol(reason),
            },
        }
    }

    pub fn ack(self, id: &AckId, result: &Result<Reply, Error>) -> String {
        match id {
            AckId::Native(id) => native::encode_ack(id, result),
            AckId::SocketIo(id) => socketio::ack(*id, &reply_value(result)),
        }
    }

    /// The ack of a dialect request: the listener's payload as the reply's data.
    pub fn ack_data(self, id: &AckId, data: &Value) -> String {
        match id {
            AckId::Native(id) => json!({"ack": id, "ok": true, "data": data}).to_string(),
            AckId::SocketIo(id) => socketio::ack(*id, data),
        }
    }

    /// An event the server sends of its own accord (a dialect's listener event).
    pub fn event(self, event: &str, data: &Value) -> String {
        match self {
            Framing::Native => json!({"event": event, "data": data}).to_string(),
            Framing::SocketIo(_) => socketio::event(event, data),
        }
    }

    /// The answer to a failed frame that asked for no ack.
    pub fn error(self, err: &Error) -> String {
        match self {
            Framing::Native => native::encode_error(err),
            Framing::SocketIo(_) => {
                socketio::event("error", &json!({"code": err.code().as_str(), "message": err.to_string()}))
            }
        }
    }

    pub fn push(self, delivery: &Delivery) -> ByteString {
        match self {
            Framing::Native => delivery.native_text(),
            Framing::SocketIo(_) => delivery.socketio_text(),
        }
    }

    /// The first frame after registration: `hello`, or the Socket.IO connect reply (with
    /// the session's `pid` when it may be recovered).
    pub fn hello(self, user: &UserId, node: &NodeId, connection: ConnectionId, pid: Option<&str>) -> String {
        match self {
            Framing::Native => native::encode_hello(user, node, connection),
            Framing::SocketIo(version) => socketio::connected(version, &connection.to_string(), pid),
        }
    }
}

/// Deepest a request's payload nests (objects and arrays): far past any chat payload or WebRTC
/// signal, and well short of where an opaque value relayed to other nodes inside an envelope,
/// a few levels deeper, would pass serde_json's limit there.
pub const MAX_PAYLOAD_DEPTH: usize = 32;

/// A request's payload may hold any text but NUL (U+0000), in its values and its keys:
/// PostgreSQL cannot store it and no chat text needs it; and it nests at most
/// [`MAX_PAYLOAD_DEPTH`] levels. The whole request is refused at the edge, before any command
/// runs, so it reaches no batch, no other node and no other user.
pub fn well_formed(data: Value) -> Result<Value, Error> {
    let mut pending = vec![(&data, 0)];
    while let Some((value, depth)) = pending.pop() {
        if depth > MAX_PAYLOAD_DEPTH {
            return Err(Error::bad_request(format!("a payload nests at most {MAX_PAYLOAD_DEPTH} levels")));
        }
        let nul = match value {
            Value::String(text) => text.contains('\0'),
            Value::Array(items) => {
                pending.extend(items.iter().map(|item| (item, depth + 1)));
                false
            }
            Value::Object(fields) => {
                pending.extend(fields.values().map(|field| (field, depth + 1)));
                fields.keys().any(|key| key.contains('\0'))
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => false,
        };
        if nul {
            return Err(Error::bad_request("text must not contain the NUL character (U+0000)"));
        }
    }
    Ok(data)
}

/// An ack's single argument: `{"ok":true,"data":…}` or `{"ok":false,"error":…}`.
fn reply_value(result: &Result<Reply, Error>) -> Value {
    match result {
        Ok(Reply::Done) => json!({"ok": true}),
        Ok(reply) => json!({"ok": true, "data": reply}),
        Err(err) => json!({"ok": false, "error": {"code": err.code().as_str(), "message": err.to_string()}}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(framing: Framing, text: &str) -> bool {
        match framing.decode(text, true) {
            Inbound::Request { data: Err(err), .. } => err.code() == crate::domain::ErrorCode::BadRequest,
            _ => false,
        }
    }

    #[test]
    fn refuses_nul_anywhere_and_deep_nesting() {
        let native = Framing::Native;
        let socketio = Framing::SocketIo(EngineVersion::V4);
        assert!(refused(native, r#"{"event":"message.send","id":1,"data":{"body":"a\u0000b"}}"#));
        assert!(refused(native, r#"{"event":"x","data":{"deep":[{"k":["\u0000"]}]}}"#));
        assert!(refused(native, r#"{"event":"x","data":{"ke\u0000y":1}}"#));
        assert!(refused(socketio, r#"42["live.comment",{"text":"\u0000"}]"#));
        // Nesting past the bound: an opaque signal as deep as the edge's parser allows.
        let deep = |levels: usize| {
            format!(r#"{{"event":"call.signal","data":{{"signal":{}1{}}}}}"#, "[".repeat(levels), "]".repeat(levels))
        };
        assert!(refused(native, &deep(MAX_PAYLOAD_DEPTH)));
        assert!(!refused(native, &deep(MAX_PAYLOAD_DEPTH - 1)));
        // Other unusual text passes the edge untouched.
        let fine = r#"{"event":"x","data":{"body":"\u0001 \u200b \ud83d\ude00 \u202e"}}"#;
        assert!(matches!(native.decode(fine, true), Inbound::Request { data: Ok(_), .. }));
    }
}
