//! Typed commands: every inbound event is parsed here, once, into one of these.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::domain::{
    CallId, Error, Location, Media, MessageKind, RequestKind, RoomCursor, RoomId, SessionId, Timestamp, UserId,
};

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
    /// Leave a group room for good.
    LeaveRoom {
        room: RoomId,
    },
    QueryPresence {
        users: Vec<UserId>,
    },
    /// Commands that act inside one room are routed to that room's actor.
    Room {
        room: RoomId,
        command: RoomCommand,
    },
    Social(SocialCommand),
    Call(CallCommand),
    /// Live sessions: everything but `live.create` is routed to the session's actor.
    Live(LiveCommand),
}

/// Call signaling.
#[derive(Debug, Clone, PartialEq)]
pub enum CallCommand {
    Start {
        room: RoomId,
        media: Media,
    },
    Accept {
        call: CallId,
    },
    Decline {
        call: CallId,
    },
    End {
        call: CallId,
    },
    /// Relays opaque SDP/ICE JSON; `to` picks the party in a group call.
    Signal {
        call: CallId,
        signal: Value,
        to: Option<UserId>,
    },
    History {
        room: RoomId,
        limit: i64,
    },
}

/// Follows, friends, dating, safety and location.
#[derive(Debug, Clone, PartialEq)]
pub enum SocialCommand {
    Request { kind: RequestKind, to: UserId },
    Respond { kind: RequestKind, from: UserId, accept: bool },
    ListNotifications { limit: i64, before: Option<String>, unread_only: bool },
    ReadNotifications { ids: Option<Vec<String>> },
    Like { user: UserId, like: bool },
    Block { user: UserId, blocked: bool },
    ListBlocks,
    Report { user: UserId, reason: String, message_id: Option<String>, room: Option<RoomId> },
    UpdateLocation { at: Location },
    Nearby { radius_km: f64, limit: i64 },
}

/// Largest radius a nearby query may ask for, in kilometres.
pub const MAX_NEARBY_KM: f64 = 500.0;

/// Live session commands. Host rights (ending, hands, invites) are checked where they run.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveCommand {
    Create {
        title: String,
    },
    Join {
        session: SessionId,
    },
    Leave {
        session: SessionId,
    },
    Comment {
        session: SessionId,
        text: String,
    },
    Comments {
        session: SessionId,
        before: Option<String>,
        limit: i64,
    },
    RaiseHand {
        session: SessionId,
    },
    /// `user` is whose hand: the caller's own when `None`.
    LowerHand {
        session: SessionId,
        user: Option<UserId>,
    },
    AcceptHand {
        session: SessionId,
        user: UserId,
    },
    Hands {
        session: SessionId,
    },
    Invite {
        session: SessionId,
        user: UserId,
    },
    End {
        session: SessionId,
    },
}

impl LiveCommand {
    /// The session this command acts on (`None` for `live.create`).
    pub fn session(&self) -> Option<SessionId> {
        match self {
            Self::Create { .. } => None,
            Self::Join { session }
            | Self::Leave { session }
            | Self::Comment { session, .. }
            | Self::Comments { session, .. }
            | Self::RaiseHand { session }
            | Self::LowerHand { session, .. }
            | Self::AcceptHand { session, .. }
            | Self::Hands { session }
            | Self::Invite { session, .. }
            | Self::End { session } => Some(*session),
        }
    }

    pub fn event(&self) -> &'static str {
        match self {
            Self::Create { .. } => "live.create",
            Self::Join { .. } => "live.join",
            Self::Leave { .. } => "live.leave",
            Self::Comment { .. } => "live.comment",
            Self::Comments { .. } => "live.comments",
            Self::RaiseHand { .. } => "live.raise_hand",
            Self::LowerHand { .. } => "live.lower_hand",
            Self::AcceptHand { .. } => "live.accept_hand",
            Self::Hands { .. } => "live.hands",
            Self::Invite { .. } => "live.invite",
            Self::End { .. } => "live.end",
        }
    }

    fn parse(event: &str, data: Value) -> Result<Self, Error> {
        Ok(match event {
            "live.create" => {
                let d: LiveCreate = fields(data)?;
                Self::Create { title: d.title }
            }
            "live.join" | "live.leave" | "live.raise_hand" | "live.hands" | "live.end" => {
                let session = fields::<SessionRef>(data)?.session_id;
                match event {
                    "live.join" => Self::Join { session },
                    "live.leave" => Self::Leave { session },
                    "live.raise_hand" => Self::RaiseHand { session },
                    "live.hands" => Self::Hands { session },
                    _ => Self::End { session },
                }
            }
            "live.comment" => {
                let d: LiveCommentData = fields(data)?;
                Self::Comment { session: d.session_id, text: d.text }
            }
            "live.comments" => {
                let d: LiveComments = fields(data)?;
                Self::Comments { session: d.session_id, before: d.before, limit: page_size(d.limit)? }
            }
            "live.lower_hand" => {
                let d: SessionUserMaybe = fields(data)?;
                Self::LowerHand { session: d.session_id, user: d.user_id }
            }
            "live.accept_hand" | "live.invite" => {
                let d: SessionUser = fields(data)?;
                if event == "live.invite" {
                    Self::Invite { session: d.session_id, user: d.user_id }
                } else {
                    Self::AcceptHand { session: d.session_id, user: d.user_id }
                }
            }
            other => return Err(Error::UnknownEvent(other.to_owned())),
        })
    }
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
            Self::LeaveRoom { .. } => "room.leave",
            Self::QueryPresence { .. } => "presence.query",
            Self::Call(command) => match command {
                CallCommand::Start { .. } => "call.start",
                CallCommand::Accept { .. } => "call.accept",
                CallCommand::Decline { .. } => "call.decline",
                CallCommand::End { .. } => "call.end",
                CallCommand::Signal { .. } => "call.signal",
                CallCommand::History { .. } => "call.history",
            },
            Self::Social(command) => match command {
                SocialCommand::Request { kind: RequestKind::Follow, .. } => "follow.request",
                SocialCommand::Request { kind: RequestKind::Friend, .. } => "friend.request",
                SocialCommand::Respond { kind: RequestKind::Follow, .. } => "follow.respond",
                SocialCommand::Respond { kind: RequestKind::Friend, .. } => "friend.respond",
                SocialCommand::ListNotifications { .. } => "notification.list",
                SocialCommand::ReadNotifications { .. } => "notification.read",
                SocialCommand::Like { .. } => "like",
                SocialCommand::Block { .. } => "block",
                SocialCommand::ListBlocks => "block.list",
                SocialCommand::Report { .. } => "report",
                SocialCommand::UpdateLocation { .. } => "location.update",
                SocialCommand::Nearby { .. } => "location.nearby",
            },
            Self::Live(command) => command.event(),
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
            "room.leave" => {
                let d: RoomRef = fields(data)?;
                Self::LeaveRoom { room: d.room_id }
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
            "call.start" => {
                let d: CallStart = fields(data)?;
                Self::Call(CallCommand::Start { room: d.room_id, media: d.media })
            }
            "call.accept" | "call.decline" | "call.end" => {
                let d: CallRef = fields(data)?;
                Self::Call(match event {
                    "call.accept" => CallCommand::Accept { call: d.call_id },
                    "call.decline" => CallCommand::Decline { call: d.call_id },
                    _ => CallCommand::End { call: d.call_id },
                })
            }
            "call.signal" => {
                let d: CallSignal = fields(data)?;
                if d.signal.is_null() {
                    return Err(Error::bad_request("signal is required"));
                }
                Self::Call(CallCommand::Signal { call: d.call_id, signal: d.signal, to: d.to })
            }
            "call.history" => {
                let d: CallHistory = fields(data)?;
                Self::Call(CallCommand::History { room: d.room_id, limit: page_size(d.limit)? })
            }
            "follow.request" | "friend.request" => {
                let d: UserRef = fields(data)?;
                let kind = if event == "follow.request" { RequestKind::Follow } else { RequestKind::Friend };
                Self::Social(SocialCommand::Request { kind, to: d.user_id })
            }
            "follow.respond" | "friend.respond" => {
                let d: Respond = fields(data)?;
                let kind = if event == "follow.respond" { RequestKind::Follow } else { RequestKind::Friend };
                Self::Social(SocialCommand::Respond { kind, from: d.user_id, accept: d.accept.0 })
            }
            "notification.list" => {
                let d: ListNotifications = fields(data)?;
                Self::Social(SocialCommand::ListNotifications {
                    limit: page_size(d.limit)?,
                    before: d.before,
                    unread_only: d.unread_only.unwrap_or(false),
                })
            }
            "notification.read" => {
                let d: ReadNotifications = fields(data)?;
                Self::Social(SocialCommand::ReadNotifications { ids: d.ids })
            }
            "like" => {
                let d: Like = fields(data)?;
                Self::Social(SocialCommand::Like { user: d.user_id, like: d.like.0 })
            }
            "block" => {
                let d: Block = fields(data)?;
                Self::Social(SocialCommand::Block { user: d.user_id, blocked: d.blocked.is_none_or(|b| b.0) })
            }
            "block.list" => Self::Social(SocialCommand::ListBlocks),
            "report" => {
                let d: Report = fields(data)?;
                let reason = d.reason.trim().to_owned();
                if reason.is_empty() || reason.chars().count() > 1000 {
                    return Err(Error::bad_request("reason must be 1 to 1000 characters"));
                }
                Self::Social(SocialCommand::Report {
                    user: d.user_id,
                    reason,
                    message_id: d.message_id,
                    room: d.room_id,
                })
            }
            "location.update" => {
                let d: LatLng = fields(data)?;
                Self::Social(SocialCommand::UpdateLocation { at: Location::parse(d.lat, d.lng)? })
            }
            "location.nearby" => {
                let d: Nearby = fields(data)?;
                if !d.radius_km.is_finite() || d.radius_km <= 0.0 || d.radius_km > MAX_NEARBY_KM {
                    return Err(Error::bad_request(format!("radius_km must be above 0 and at most {MAX_NEARBY_KM}")));
                }
                Self::Social(SocialCommand::Nearby { radius_km: d.radius_km, limit: page_size(d.limit)? })
            }
            live if live.starts_with("live.") => Self::Live(LiveCommand::parse(live, data)?),
            other => return Err(Error::UnknownEvent(other.to_owned())),
        })
    }
}

fn room(room: RoomId, command: RoomCommand) -> Command {
    Command::Room { room, command }
}

/// Parses an event's data (absent means `{}`); a missing or mistyped field is `bad_request`.
pub(crate) fn fields<T: DeserializeOwned>(data: Value) -> Result<T, Error> {
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
struct CallStart {
    room_id: RoomId,
    #[serde(default = "video")]
    media: Media,
}

fn video() -> Media {
    Media::Video
}

#[derive(Deserialize)]
struct CallRef {
    call_id: CallId,
}

#[derive(Deserialize)]
struct CallSignal {
    call_id: CallId,
    #[serde(default)]
    signal: Value,
    to: Option<UserId>,
}

#[derive(Deserialize)]
struct CallHistory {
    room_id: RoomId,
    limit: Option<i64>,
}

#[derive(Deserialize)]
struct Respond {
    user_id: UserId,
    accept: Flag,
}

#[derive(Deserialize)]
struct ListNotifications {
    limit: Option<i64>,
    before: Option<String>,
    unread_only: Option<bool>,
}

#[derive(Deserialize)]
struct ReadNotifications {
    ids: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Like {
    user_id: UserId,
    like: Flag,
}

#[derive(Deserialize)]
struct Block {
    user_id: UserId,
    blocked: Option<Flag>,
}

#[derive(Deserialize)]
struct Report {
    user_id: UserId,
    reason: String,
    message_id: Option<String>,
    room_id: Option<RoomId>,
}

#[derive(Deserialize)]
struct LatLng {
    lat: f64,
    lng: f64,
}

#[derive(Deserialize)]
struct Nearby {
    radius_km: f64,
    limit: Option<i64>,
}

/// A yes/no field: `true`/`false`, or `1`/`0` as older apps send it.
struct Flag(bool);

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

// --- live session payloads ---

#[derive(Deserialize)]
struct LiveCreate {
    title: String,
}

#[derive(Deserialize)]
struct SessionRef {
    session_id: SessionId,
}

#[derive(Deserialize)]
struct LiveCommentData {
    session_id: SessionId,
    text: String,
}

#[derive(Deserialize)]
struct LiveComments {
    session_id: SessionId,
    before: Option<String>,
    limit: Option<i64>,
}

#[derive(Deserialize)]
struct SessionUser {
    session_id: SessionId,
    user_id: UserId,
}

#[derive(Deserialize)]
struct SessionUserMaybe {
    session_id: SessionId,
    user_id: Option<UserId>,
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
    fn parses_a_leave() {
        let room = RoomId::new();
        let cmd = Command::parse("room.leave", json!({"room_id": room.to_string()})).unwrap();
        assert_eq!(cmd, Command::LeaveRoom { room });
        assert_eq!(cmd.event(), "room.leave");
        let bad = Command::parse("room.leave", json!({})).unwrap_err();
        assert_eq!(bad.code(), crate::domain::ErrorCode::BadRequest);
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

    #[test]
    fn parses_live_events() {
        let session = SessionId::new();
        let id = session.to_string();
        assert_eq!(
            Command::parse("live.comment", json!({"session_id": id, "text": "hi"})).unwrap(),
            Command::Live(LiveCommand::Comment { session, text: "hi".into() })
        );
        assert_eq!(
            Command::parse("live.lower_hand", json!({"session_id": id})).unwrap(),
            Command::Live(LiveCommand::LowerHand { session, user: None })
        );
        assert_eq!(
            Command::parse("live.comments", json!({"session_id": id})).unwrap(),
            Command::Live(LiveCommand::Comments { session, before: None, limit: DEFAULT_PAGE })
        );
        assert_eq!(Command::parse("live.end", json!({"session_id": id})).unwrap().event(), "live.end");
        let bad = Command::parse("live.join", json!({"session_id": "nope"})).unwrap_err();
        assert_eq!(bad.code(), crate::domain::ErrorCode::BadRequest);
        assert_eq!(Command::parse("live.nope", json!({})).unwrap_err().code(), crate::domain::ErrorCode::UnknownEvent);
    }
}
