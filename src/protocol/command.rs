//! Typed commands: every inbound event is parsed here, once, into one of these.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::domain::{Error, MessageKind, RoomCursor, RoomId, Timestamp, UserId};

/// Largest page a client may ask for.
pub const MAX_PAGE: i64 = 100;
/// Page size when a client names none.
pub const DEFAULT_PAGE: i64 = 50;

/// A request a client can make.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    OpenDirectRoom {
        peer: UserId,
    },
    CreateGroup {
        name: String,
        members: Vec<UserId>,
    },
    ListRooms {
        limit: i64,
        before: Option<RoomCursor>,
    },
    QueryPresence {
        users: Vec<UserId>,
    },
    /// Commands that act inside one room are routed to that room's actor.
    Room {
        room: RoomId,
        command: RoomCommand,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum RoomCommand {
    Send { kind: MessageKind, body: String, client_id: Option<String> },
    History { before_seq: Option<i64>, after_seq: Option<i64>, limit: i64 },
    MarkRead { seq: Option<i64> },
    Clear,
    Typing { typing: bool },
}

impl Command {
    /// The event name this command came from (for metrics and logs).
    pub fn event(&self) -> &'static str {
        match self {
            Self::OpenDirectRoom { .. } => "room.direct",
            Self::CreateGroup { .. } => "room.group.create",
            Self::ListRooms { .. } => "room.list",
            Self::QueryPresence { .. } => "presence.query",
            Self::Room { command, .. } => match command {
                RoomCommand::Send { .. } => "message.send",
                RoomCommand::History { .. } => "message.history",
                RoomCommand::MarkRead { .. } => "room.read",
                RoomCommand::Clear => "room.clear",
                RoomCommand::Typing { .. } => "typing",
            },
        }
    }

    /// Parses a native event and its data. Unknown events are `unknown_event`; missing or
    /// mistyped fields are `bad_request` with serde's description.
    pub fn parse(event: &str, data: Value) -> Result<Self, Error> {
        Ok(match event {
            "room.direct" => {
                let d: UserRef = fields(data)?;
                Self::OpenDirectRoom { peer: d.user_id }
            }
            "room.group.create" => {
                let d: GroupCreate = fields(data)?;
                Self::CreateGroup { name: d.name, members: d.members }
            }
            "room.list" => {
                let d: ListRooms = fields(data)?;
                Self::ListRooms { limit: page_size(d.limit)?, before: d.before.map(|b| b.0) }
            }
            "presence.query" => {
                let d: PresenceQuery = fields(data)?;
                if d.user_ids.len() > MAX_PAGE as usize {
                    return Err(Error::bad_request(format!("at most {MAX_PAGE} user_ids")));
                }
                Self::QueryPresence { users: d.user_ids }
            }
            "message.send" => {
                let d: Send = fields(data)?;
                if d.client_id.as_ref().is_some_and(|c| c.is_empty() || c.len() > 128) {
                    return Err(Error::bad_request("client_id must be 1 to 128 bytes"));
                }
                room(d.room_id, RoomCommand::Send { kind: d.kind, body: d.body, client_id: d.client_id })
            }
            "message.history" => {
                let d: History = fields(data)?;
                if d.before_seq.is_some() && d.after_seq.is_some() {
                    return Err(Error::bad_request("give before_seq or after_seq, not both"));
                }
                room(
                    d.room_id,
                    RoomCommand::History {
                        before_seq: d.before_seq,
                        after_seq: d.after_seq,
                        limit: page_size(d.limit)?,
                    },
                )
            }
            "room.read" => {
                let d: Read = fields(data)?;
                if d.seq.is_some_and(|s| s < 0) {
                    return Err(Error::bad_request("seq must not be negative"));
                }
                room(d.room_id, RoomCommand::MarkRead { seq: d.seq })
            }
            "room.clear" => {
                let d: RoomRef = fields(data)?;
                room(d.room_id, RoomCommand::Clear)
            }
            "typing" => {
                let d: Typing = fields(data)?;
                room(d.room_id, RoomCommand::Typing { typing: d.typing })
            }
            other => return Err(Error::UnknownEvent(other.to_owned())),
        })
    }
}

fn room(room: RoomId, command: RoomCommand) -> Command {
    Command::Room { room, command }
}

fn fields<T: DeserializeOwned>(data: Value) -> Result<T, Error> {
    let data = if data.is_null() { Value::Object(Default::default()) } else { data };
    serde_json::from_value(data).map_err(|e| Error::bad_request(format!("invalid data: {e}")))
}

fn page_size(limit: Option<i64>) -> Result<i64, Error> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(Error::bad_request(format!("limit must be 1 to {MAX_PAGE}"))),
    }
}

#[derive(Deserialize)]
struct UserRef {
    user_id: UserId,
}

#[derive(Deserialize)]
struct RoomRef {
    room_id: RoomId,
}

#[derive(Deserialize)]
struct GroupCreate {
    name: String,
    members: Vec<UserId>,
}

#[derive(Deserialize)]
struct ListRooms {
    limit: Option<i64>,
    before: Option<Cursor>,
}

/// A `room.list` cursor: the id of the last room the client has (exact), or a
/// `last_activity_at` as RFC 3339 or epoch milliseconds.
struct Cursor(RoomCursor);

impl<'de> Deserialize<'de> for Cursor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let invalid = || D::Error::custom("before must be a room id, an RFC 3339 time or epoch milliseconds");
        match Value::deserialize(d)? {
            Value::Number(n) => {
                n.as_i64().map(|ms| Cursor(RoomCursor::ActiveBefore(Timestamp::from_millis(ms)))).ok_or_else(invalid)
            }
            Value::String(s) => {
                if let Ok(room) = RoomId::parse(&s) {
                    return Ok(Cursor(RoomCursor::AfterRoom(room)));
                }
                chrono::DateTime::parse_from_rfc3339(&s)
                    .map(|t| Cursor(RoomCursor::ActiveBefore(Timestamp::from_millis(t.timestamp_millis()))))
                    .map_err(|_| invalid())
            }
            _ => Err(invalid()),
        }
    }
}

#[derive(Deserialize)]
struct PresenceQuery {
    user_ids: Vec<UserId>,
}

#[derive(Deserialize)]
struct Send {
    room_id: RoomId,
    #[serde(default = "text_kind")]
    kind: MessageKind,
    body: String,
    client_id: Option<String>,
}

fn text_kind() -> MessageKind {
    MessageKind::Text
}

#[derive(Deserialize)]
struct History {
    room_id: RoomId,
    before_seq: Option<i64>,
    after_seq: Option<i64>,
    limit: Option<i64>,
}

#[derive(Deserialize)]
struct Read {
    room_id: RoomId,
    seq: Option<i64>,
}

#[derive(Deserialize)]
struct Typing {
    room_id: RoomId,
    typing: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_a_send() {
        let room = RoomId::new();
        let cmd = Command::parse("message.send", json!({"room_id": room.to_string(), "body": "hi"})).unwrap();
        assert_eq!(
            cmd,
            Command::Room {
                room,
                command: RoomCommand::Send { kind: MessageKind::Text, body: "hi".into(), client_id: None }
            }
        );
    }

    #[test]
    fn unknown_and_malformed_events_are_typed_errors() {
        assert_eq!(Command::parse("nope", json!({})).unwrap_err().code(), crate::domain::ErrorCode::UnknownEvent);
        assert_eq!(
            Command::parse("message.send", json!({"room_id": 5})).unwrap_err().code(),
            crate::domain::ErrorCode::BadRequest
        );
        assert_eq!(
            Command::parse("message.history", json!({"room_id": RoomId::new().to_string(), "limit": 1000}))
                .unwrap_err()
                .code(),
            crate::domain::ErrorCode::BadRequest
        );
    }
}
