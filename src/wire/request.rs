//! Native requests: an event name and its data, parsed once at the edge into a typed
//! [`Command`]. [`Event`] is the one table of event names.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::payloads::*;
use super::{CallCommand, Command, LiveCommand, RoomCommand, SocialCommand};
use crate::domain::{Error, Location, MAX_CLIENT_ID_BYTES, RequestKind, text};

/// Largest page a client may ask for.
pub const MAX_PAGE: i64 = 100;
/// Page size when a client names none.
pub const DEFAULT_PAGE: i64 = 50;
/// Largest radius a nearby query may ask for, in kilometres.
pub const MAX_NEARBY_KM: f64 = 500.0;
/// Longest report reason, in characters.
const MAX_REPORT_REASON: usize = 1000;
/// Largest `call.signal` payload, as JSON: an SDP offer with many codecs is a few KiB.
pub const MAX_SIGNAL_BYTES: usize = 16 * 1024;

/// Every native event, by the name clients send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::IntoStaticStr)]
pub enum Event {
    #[strum(serialize = "room.direct")]
    RoomDirect,
    #[strum(serialize = "room.group.create")]
    GroupCreate,
    #[strum(serialize = "room.list")]
    RoomList,
    #[strum(serialize = "room.leave")]
    RoomLeave,
    #[strum(serialize = "presence.query")]
    PresenceQuery,
    #[strum(serialize = "message.send")]
    MessageSend,
    #[strum(serialize = "message.history")]
    MessageHistory,
    #[strum(serialize = "room.read")]
    RoomRead,
    #[strum(serialize = "room.clear")]
    RoomClear,
    #[strum(serialize = "typing")]
    Typing,
    #[strum(serialize = "call.start")]
    CallStart,
    #[strum(serialize = "call.accept")]
    CallAccept,
    #[strum(serialize = "call.decline")]
    CallDecline,
    #[strum(serialize = "call.end")]
    CallEnd,
    #[strum(serialize = "call.signal")]
    CallSignal,
    #[strum(serialize = "call.history")]
    CallHistory,
    #[strum(serialize = "follow.request")]
    FollowRequest,
    #[strum(serialize = "friend.request")]
    FriendRequest,
    #[strum(serialize = "follow.respond")]
    FollowRespond,
    #[strum(serialize = "friend.respond")]
    FriendRespond,
    #[strum(serialize = "notification.list")]
    NotificationList,
    #[strum(serialize = "notification.read")]
    NotificationRead,
    #[strum(serialize = "like")]
    Like,
    #[strum(serialize = "block")]
    Block,
    #[strum(serialize = "block.list")]
    BlockList,
    #[strum(serialize = "report")]
    Report,
    #[strum(serialize = "location.update")]
    LocationUpdate,
    #[strum(serialize = "location.nearby")]
    LocationNearby,
    #[strum(serialize = "live.create")]
    LiveCreate,
    #[strum(serialize = "live.join")]
    LiveJoin,
    #[strum(serialize = "live.leave")]
    LiveLeave,
    #[strum(serialize = "live.comment")]
    LiveComment,
    #[strum(serialize = "live.comments")]
    LiveComments,
    #[strum(serialize = "live.raise_hand")]
    LiveRaiseHand,
    #[strum(serialize = "live.lower_hand")]
    LiveLowerHand,
    #[strum(serialize = "live.accept_hand")]
    LiveAcceptHand,
    #[strum(serialize = "live.hands")]
    LiveHands,
    #[strum(serialize = "live.invite")]
    LiveInvite,
    #[strum(serialize = "live.end")]
    LiveEnd,
}

impl Event {
    pub fn parse(name: &str) -> Result<Self, Error> {
        name.parse().map_err(|_| Error::UnknownEvent(name.to_owned()))
    }

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A parsed native request: which event it was, and what it asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub event: Event,
    pub command: Command,
}

impl Request {
    /// Parses an event and its data. An unknown event is `unknown_event`; a missing or
    /// mistyped field, or a value out of range, is `bad_request` saying which.
    pub fn parse(name: &str, data: Value) -> Result<Self, Error> {
        let event = Event::parse(name)?;
        use Event::*;
        let command = match event {
            RoomDirect | GroupCreate | RoomList | RoomLeave | PresenceQuery => rooms(event, data)?,
            MessageSend | MessageHistory | RoomRead | RoomClear | Typing => in_room(event, data)?,
            CallStart | CallAccept | CallDecline | CallEnd | CallSignal | CallHistory => {
                Command::Call(calls(event, data)?)
            }
            FollowRequest | FriendRequest | FollowRespond | FriendRespond | NotificationList | NotificationRead
            | Like | Block | BlockList | Report | LocationUpdate | LocationNearby => {
                Command::Social(social(event, data)?)
            }
            LiveCreate | LiveJoin | LiveLeave | LiveComment | LiveComments | LiveRaiseHand | LiveLowerHand
            | LiveAcceptHand | LiveHands | LiveInvite | LiveEnd => Command::Live(live(event, data)?),
        };
        Ok(Self { event, command })
    }
}

impl Command {
    /// The command of a native request (see [`Request::parse`]).
    pub fn parse(name: &str, data: Value) -> Result<Self, Error> {
        Request::parse(name, data).map(|request| request.command)
    }
}

/// Parses an event's data (absent means `{}`); a missing or mistyped field is `bad_request`.
pub(crate) fn fields<T: DeserializeOwned>(data: Value) -> Result<T, Error> {
    let data = if data.is_null() { Value::Object(Default::default()) } else { data };
    serde_json::from_value(data).map_err(|e| Error::bad_request(format!("invalid data: {e}")))
}

/// An event of another family: only reached if the families above disagree with their callers.
fn misrouted(event: Event) -> Error {
    Error::UnknownEvent(event.as_str().to_owned())
}

fn rooms(event: Event, data: Value) -> Result<Command, Error> {
    Ok(match event {
        Event::RoomDirect => Command::OpenDirectRoom { peer: fields::<UserRef>(data)?.user_id },
        Event::GroupCreate => {
            let d: GroupCreate = fields(data)?;
            Command::CreateGroup { name: d.name, members: d.members }
        }
        Event::RoomList => {
            let d: ListRooms = fields(data)?;
            Command::ListRooms { limit: page_size(d.limit)?, before: d.before.map(|b| b.0) }
        }
        Event::RoomLeave => Command::LeaveRoom { room: fields::<RoomRef>(data)?.room_id },
        Event::PresenceQuery => {
            let d: PresenceQuery = fields(data)?;
            if d.user_ids.len() > MAX_PAGE as usize {
                return Err(Error::bad_request(format!("at most {MAX_PAGE} user_ids")));
            }
            Command::QueryPresence { users: d.user_ids }
        }
        other => return Err(misrouted(other)),
    })
}

fn in_room(event: Event, data: Value) -> Result<Command, Error> {
    let (room, command) = match event {
        Event::MessageSend => {
            let d: Send = fields(data)?;
            crate::domain::check_client_id(d.client_id.as_deref())?;
            (d.room_id, RoomCommand::Send { kind: d.kind, body: d.body, client_id: d.client_id })
        }
        Event::MessageHistory => {
            let d: History = fields(data)?;
            if d.before_seq.is_some() && d.after_seq.is_some() {
                return Err(Error::bad_request("give before_seq or after_seq, not both"));
            }
            let limit = page_size(d.limit)?;
            (d.room_id, RoomCommand::History { before_seq: d.before_seq, after_seq: d.after_seq, limit })
        }
        Event::RoomRead => {
            let d: Read = fields(data)?;
            if d.seq.is_some_and(|s| s < 0) {
                return Err(Error::bad_request("seq must not be negative"));
            }
            (d.room_id, RoomCommand::MarkRead { seq: d.seq })
        }
        Event::RoomClear => (fields::<RoomRef>(data)?.room_id, RoomCommand::Clear),
        Event::Typing => {
            let d: Typing = fields(data)?;
            (d.room_id, RoomCommand::Typing { typing: d.typing })
        }
        other => return Err(misrouted(other)),
    };
    Ok(Command::Room { room, command })
}

fn calls(event: Event, data: Value) -> Result<CallCommand, Error> {
    Ok(match event {
        Event::CallStart => {
            let d: CallStart = fields(data)?;
            CallCommand::Start { room: d.room_id, media: d.media }
        }
        Event::CallAccept => CallCommand::Accept { call: fields::<CallRef>(data)?.call_id },
        Event::CallDecline => CallCommand::Decline { call: fields::<CallRef>(data)?.call_id },
        Event::CallEnd => CallCommand::End { call: fields::<CallRef>(data)?.call_id },
        Event::CallSignal => {
            let d: CallSignal = fields(data)?;
            if d.signal.is_null() {
                return Err(Error::bad_request("signal is required"));
            }
            if serde_json::to_vec(&d.signal).map_or(usize::MAX, |json| json.len()) > MAX_SIGNAL_BYTES {
                return Err(Error::TooLarge(format!("a signal is at most {MAX_SIGNAL_BYTES} bytes of JSON")));
            }
            CallCommand::Signal { call: d.call_id, signal: d.signal, to: d.to }
        }
        Event::CallHistory => {
            let d: CallHistory = fields(data)?;
            CallCommand::History { room: d.room_id, limit: page_size(d.limit)? }
        }
        other => return Err(misrouted(other)),
    })
}

fn social(event: Event, data: Value) -> Result<SocialCommand, Error> {
    let kind = |follow| if follow { RequestKind::Follow } else { RequestKind::Friend };
    Ok(match event {
        Event::FollowRequest | Event::FriendRequest => {
            SocialCommand::Request { kind: kind(event == Event::FollowRequest), to: fields::<UserRef>(data)?.user_id }
        }
        Event::FollowRespond | Event::FriendRespond => {
            let d: Respond = fields(data)?;
            SocialCommand::Respond { kind: kind(event == Event::FollowRespond), from: d.user_id, accept: d.accept.0 }
        }
        Event::NotificationList => {
            let d: ListNotifications = fields(data)?;
            let unread_only = d.unread_only.unwrap_or(false);
            SocialCommand::ListNotifications { limit: page_size(d.limit)?, before: d.before, unread_only }
        }
        Event::NotificationRead => SocialCommand::ReadNotifications { ids: fields::<ReadNotifications>(data)?.ids },
        Event::Like => {
            let d: Like = fields(data)?;
            SocialCommand::Like { user: d.user_id, like: d.like.0 }
        }
        Event::Block => {
            let d: Block = fields(data)?;
            SocialCommand::Block { user: d.user_id, blocked: d.blocked.is_none_or(|b| b.0) }
        }
        Event::BlockList => SocialCommand::ListBlocks,
        Event::Report => report(fields(data)?)?,
        Event::LocationUpdate => {
            let d: LatLng = fields(data)?;
            SocialCommand::UpdateLocation { at: Location::parse(d.lat, d.lng)? }
        }
        Event::LocationNearby => {
            let d: Nearby = fields(data)?;
            if !d.radius_km.is_finite() || d.radius_km <= 0.0 || d.radius_km > MAX_NEARBY_KM {
                return Err(Error::bad_request(format!("radius_km must be above 0 and at most {MAX_NEARBY_KM}")));
            }
            SocialCommand::Nearby { radius_km: d.radius_km, limit: page_size(d.limit)? }
        }
        other => return Err(misrouted(other)),
    })
}

fn report(d: Report) -> Result<SocialCommand, Error> {
    let reason = d.reason.trim().to_owned();
    if reason.is_empty() || reason.chars().count() > MAX_REPORT_REASON {
        return Err(Error::bad_request(format!("reason must be 1 to {MAX_REPORT_REASON} characters")));
    }
    text::lines_only(&reason, "reason")?;
    // Stored and sent to the app's back end as given: bounded like a client_id.
    if let Some(id) = &d.message_id
        && (id.is_empty() || id.len() > MAX_CLIENT_ID_BYTES || id.chars().any(char::is_control))
    {
        return Err(Error::bad_request(format!(
            "message_id must be 1 to {MAX_CLIENT_ID_BYTES} bytes, no control characters"
        )));
    }
    Ok(SocialCommand::Report { user: d.user_id, reason, message_id: d.message_id, room: d.room_id })
}

fn live(event: Event, data: Value) -> Result<LiveCommand, Error> {
    let session = |data: Value| fields::<SessionRef>(data).map(|d| d.session_id);
    Ok(match event {
        Event::LiveCreate => LiveCommand::Create { title: fields::<LiveCreate>(data)?.title },
        Event::LiveJoin => LiveCommand::Join { session: session(data)? },
        Event::LiveLeave => LiveCommand::Leave { session: session(data)? },
        Event::LiveRaiseHand => LiveCommand::RaiseHand { session: session(data)? },
        Event::LiveHands => LiveCommand::Hands { session: session(data)? },
        Event::LiveEnd => LiveCommand::End { session: session(data)? },
        Event::LiveComment => {
            let d: LiveCommentData = fields(data)?;
            LiveCommand::Comment { session: d.session_id, text: d.text }
        }
        Event::LiveComments => {
            let d: LiveComments = fields(data)?;
            LiveCommand::Comments { session: d.session_id, before: d.before, limit: page_size(d.limit)? }
        }
        Event::LiveLowerHand => {
            let d: SessionUserMaybe = fields(data)?;
            LiveCommand::LowerHand { session: d.session_id, user: d.user_id }
        }
        Event::LiveAcceptHand => {
            let d: SessionUser = fields(data)?;
            LiveCommand::AcceptHand { session: d.session_id, user: d.user_id }
        }
        Event::LiveInvite => {
            let d: SessionUser = fields(data)?;
            LiveCommand::Invite { session: d.session_id, user: d.user_id }
        }
        other => return Err(misrouted(other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{MessageKind, RoomId, SessionId};
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
        let request = Request::parse("room.leave", json!({"room_id": room.to_string()})).unwrap();
        assert_eq!(request.command, Command::LeaveRoom { room });
        assert_eq!(request.event.as_str(), "room.leave");
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
        assert_eq!(Request::parse("live.end", json!({"session_id": id})).unwrap().event.as_str(), "live.end");
        let bad = Command::parse("live.join", json!({"session_id": "nope"})).unwrap_err();
        assert_eq!(bad.code(), crate::domain::ErrorCode::BadRequest);
        assert_eq!(Command::parse("live.nope", json!({})).unwrap_err().code(), crate::domain::ErrorCode::UnknownEvent);
    }
}
