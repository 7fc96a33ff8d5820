//! The data of each native request as the wire carries it, before it becomes a command.

use serde::Deserialize;
use serde_json::Value;

use super::{DEFAULT_PAGE, MAX_PAGE};
use crate::domain::{CallId, Error, Media, MessageKind, RoomCursor, RoomId, SessionId, Timestamp, UserId};

pub(super) fn page_size(limit: Option<i64>) -> Result<i64, Error> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(Error::bad_request(format!("limit must be 1 to {MAX_PAGE}"))),
    }
}

#[derive(Deserialize)]
pub(super) struct UserRef {
    pub(super) user_id: UserId,
}

#[derive(Deserialize)]
pub(super) struct RoomRef {
    pub(super) room_id: RoomId,
}

#[derive(Deserialize)]
pub(super) struct GroupCreate {
    pub(super) name: String,
    pub(super) members: Vec<UserId>,
}

#[derive(Deserialize)]
pub(super) struct ListRooms {
    pub(super) limit: Option<i64>,
    pub(super) before: Option<Cursor>,
}

/// A `room.list` cursor: the id of the last room the client has (exact), or a
/// `last_activity_at` as RFC 3339 or epoch milliseconds.
pub(super) struct Cursor(pub(super) RoomCursor);

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
pub(super) struct CallStart {
    pub(super) room_id: RoomId,
    #[serde(default = "video")]
    pub(super) media: Media,
}

fn video() -> Media {
    Media::Video
}

#[derive(Deserialize)]
pub(super) struct CallRef {
    pub(super) call_id: CallId,
}

#[derive(Deserialize)]
pub(super) struct CallSignal {
    pub(super) call_id: CallId,
    #[serde(default)]
    pub(super) signal: Value,
    pub(super) to: Option<UserId>,
}

#[derive(Deserialize)]
pub(super) struct CallHistory {
    pub(super) room_id: RoomId,
    pub(super) limit: Option<i64>,
}

#[derive(Deserialize)]
pub(super) struct Respond {
    pub(super) user_id: UserId,
    pub(super) accept: Flag,
}

#[derive(Deserialize)]
pub(super) struct ListNotifications {
    pub(super) limit: Option<i64>,
    pub(super) before: Option<String>,
    pub(super) unread_only: Option<bool>,
}

#[derive(Deserialize)]
pub(super) struct ReadNotifications {
    pub(super) ids: Option<Vec<String>>,
}

#[derive(Deserialize)]
pub(super) struct Like {
    pub(super) user_id: UserId,
    pub(super) like: Flag,
}

#[derive(Deserialize)]
pub(super) struct Block {
    pub(super) user_id: UserId,
    pub(super) blocked: Option<Flag>,
}

#[derive(Deserialize)]
pub(super) struct Report {
    pub(super) user_id: UserId,
    pub(super) reason: String,
    pub(super) message_id: Option<String>,
    pub(super) room_id: Option<RoomId>,
}

#[derive(Deserialize)]
pub(super) struct LatLng {
    pub(super) lat: f64,
    pub(super) lng: f64,
}

#[derive(Deserialize)]
pub(super) struct Nearby {
    pub(super) radius_km: f64,
    pub(super) limit: Option<i64>,
}

/// A yes/no field: `true`/`false`, or `1`/`0` as older apps send it.
pub(super) struct Flag(pub(super) bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        match Value::deserialize(d)? {
            Value::Bool(b) => Ok(Flag(b)),
            Value::Number(n) if n.as_i64() == Some(1) => Ok(Flag(true)),
            Value::Number(n) if n.as_i64() == Some(0) => Ok(Flag(false)),
            _ => Err(D::Error::custom("expected true/false (or 1/0)")),
        }
    }
}

#[derive(Deserialize)]
pub(super) struct PresenceQuery {
    pub(super) user_ids: Vec<UserId>,
}

#[derive(Deserialize)]
pub(super) struct Send {
    pub(super) room_id: RoomId,
    #[serde(default = "text_kind")]
    pub(super) kind: MessageKind,
    pub(super) body: String,
    pub(super) client_id: Option<String>,
}

fn text_kind() -> MessageKind {
    MessageKind::Text
}

#[derive(Deserialize)]
pub(super) struct History {
    pub(super) room_id: RoomId,
    pub(super) before_seq: Option<i64>,
    pub(super) after_seq: Option<i64>,
    pub(super) limit: Option<i64>,
}

#[derive(Deserialize)]
pub(super) struct Read {
    pub(super) room_id: RoomId,
    pub(super) seq: Option<i64>,
}

#[derive(Deserialize)]
pub(super) struct Typing {
    pub(super) room_id: RoomId,
    pub(super) typing: bool,
}

// --- live session payloads ---

#[derive(Deserialize)]
pub(super) struct LiveCreate {
    pub(super) title: String,
}

#[derive(Deserialize)]
pub(super) struct SessionRef {
    pub(super) session_id: SessionId,
}

#[derive(Deserialize)]
pub(super) struct LiveCommentData {
    pub(super) session_id: SessionId,
    pub(super) text: String,
}

#[derive(Deserialize)]
pub(super) struct LiveComments {
    pub(super) session_id: SessionId,
    pub(super) before: Option<String>,
    pub(super) limit: Option<i64>,
}

#[derive(Deserialize)]
pub(super) struct SessionUser {
    pub(super) session_id: SessionId,
    pub(super) user_id: UserId,
}

#[derive(Deserialize)]
pub(super) struct SessionUserMaybe {
    pub(super) session_id: SessionId,
    pub(super) user_id: Option<UserId>,
}
