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
    /// Decodes a text frame. `acting` is `None` until a Socket.IO client has connected, when
    /// events are a protocol error.
    pub fn decode(self, text: &str, connected: bool) -> Inbound {
        match self {
            Framing::Native => {
                if !connected {
                    return Inbound::Protocol("not authenticated".into());
                }
                let inbound = native::decode(text);
                Inbound::Request { id: inbound.id.map(AckId::Native), event: inbound.event, data: inbound.data }
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
                    Inbound::Request { id: ack.map(AckId::SocketIo), event, data: Ok(data) }
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

    /// The first frame after registration: `hello`, or the Socket.IO connect reply.
    pub fn hello(self, user: &UserId, node: &NodeId, connection: ConnectionId) -> String {
        match self {
            Framing::Native => native::encode_hello(user, node, connection),
            Framing::SocketIo(version) => socketio::connected(version, &connection.to_string()),
        }
    }
}

/// An ack's single argument: `{"ok":true,"data":…}` or `{"ok":false,"error":…}`.
fn reply_value(result: &Result<Reply, Error>) -> Value {
    match result {
        Ok(Reply::Done) => json!({"ok": true}),
        Ok(reply) => json!({"ok": true, "data": reply}),
        Err(err) => json!({"ok": false, "error": {"code": err.code().as_str(), "message": err.to_string()}}),
    }
}
