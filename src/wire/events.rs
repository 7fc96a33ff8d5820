//! What the server says: replies to commands and pushed events. Both are typed here and
//! encoded per connection by its framing.

use std::sync::OnceLock;

use bytestring::ByteString;
use serde::{Deserialize, Serialize};

use super::{Dialect, Emit};
use crate::domain::{
    Call, CallId, EndReason, Error, LiveComment, LiveEndReason, LiveSession, Message, NearbyUser, Notification,
    RaisedHand, Room, RoomId, SessionId, Timestamp, UserId,
};

/// The `data` of a successful reply.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Reply {
    Room {
        room: Room,
    },
    /// auth.refresh: the connection's new expiry.
    Refreshed {
        expires_at: Timestamp,
    },
    Rooms {
        rooms: Vec<Room>,
    },
    Message {
        message: Message,
    },
    History {
        messages: Vec<Message>,
        has_more: bool,
    },
    Read {
        room_id: RoomId,
        seq: i64,
    },
    Cleared {
        room_id: RoomId,
        cleared_seq: i64,
    },
    /// room.leave: the group left.
    Left {
        room_id: RoomId,
    },
    Presence {
        users: Vec<PresenceState>,
    },
    Call {
        call: Call,
    },
    Calls {
        calls: Vec<Call>,
    },
    /// follow.respond / friend.respond: the direct room an acceptance opened.
    Responded {
        room: Option<Room>,
    },
    Like {
        matched: bool,
        room: Option<Room>,
    },
    Notifications {
        notifications: Vec<Notification>,
    },
    NotificationsRead {
        read: usize,
    },
    Block {
        user_id: UserId,
        blocked: bool,
    },
    Blocks {
        users: Vec<BlockedUser>,
    },
    Report {
        report_id: String,
    },
    Location {
        lat: f64,
        lng: f64,
    },
    Nearby {
        users: Vec<NearbyUser>,
    },
    // --- live sessions ---
    LiveSession {
        session: LiveSession,
    },
    LiveHands {
        session_id: SessionId,
        hands: Vec<RaisedHand>,
    },
    LiveComments {
        comments: Vec<LiveComment>,
        has_more: bool,
    },
    /// The event has no reply of its own: the ack is `{"ack":id,"ok":true}`.
    Done,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlockedUser {
    pub user_id: UserId,
    pub blocked_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PresenceState {
    pub user_id: UserId,
    pub online: bool,
    pub last_seen: Option<Timestamp>,
}

/// An event pushed to users' connections. Each variant's serde and strum names are the same
/// (a unit test holds them together); strum gives the name without encoding the push.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, strum::IntoStaticStr, strum::VariantNames)]
#[serde(tag = "event", content = "data")]
pub enum Push {
    #[serde(rename = "message.new")]
    #[strum(serialize = "message.new")]
    MessageNew { message: Message },
    #[serde(rename = "room.created")]
    #[strum(serialize = "room.created")]
    RoomCreated { room: Room },
    #[serde(rename = "room.read")]
    #[strum(serialize = "room.read")]
    RoomRead { room_id: RoomId, user_id: UserId, seq: i64 },
    #[serde(rename = "typing")]
    #[strum(serialize = "typing")]
    Typing { room_id: RoomId, user_id: UserId, typing: bool },
    /// A member left a group: to the members who remain, and to the leaver's other
    /// connections.
    #[serde(rename = "room.member_left")]
    #[strum(serialize = "room.member_left")]
    RoomMemberLeft { room_id: RoomId, user_id: UserId },
    /// The app's back end added a member to a group: to its members.
    #[serde(rename = "room.member_joined")]
    #[strum(serialize = "room.member_joined")]
    RoomMemberJoined { room_id: RoomId, user_id: UserId },
    #[serde(rename = "presence")]
    #[strum(serialize = "presence")]
    Presence(PresenceState),
    #[serde(rename = "notification")]
    #[strum(serialize = "notification")]
    Notification(Notification),
    #[serde(rename = "match")]
    #[strum(serialize = "match")]
    Match { user_id: UserId, room_id: RoomId },
    #[serde(rename = "call.incoming")]
    #[strum(serialize = "call.incoming")]
    CallIncoming { call: Call },
    #[serde(rename = "call.accepted")]
    #[strum(serialize = "call.accepted")]
    CallAccepted { call: Call },
    #[serde(rename = "call.ended")]
    #[strum(serialize = "call.ended")]
    CallEnded { call: Call, reason: EndReason },
    /// A party left a group call that goes on.
    #[serde(rename = "call.left")]
    #[strum(serialize = "call.left")]
    CallLeft { call: Call, user_id: UserId },
    #[serde(rename = "call.signal")]
    #[strum(serialize = "call.signal")]
    CallSignal { call_id: CallId, from: UserId, signal: serde_json::Value },
    // --- live sessions ---
    /// To the host: the session's viewer count changed (throttled).
    #[serde(rename = "live.viewers")]
    #[strum(serialize = "live.viewers")]
    LiveViewers { session_id: SessionId, viewers: i64 },
    #[serde(rename = "live.comment")]
    #[strum(serialize = "live.comment")]
    LiveComment(LiveComment),
    #[serde(rename = "live.hand_raised")]
    #[strum(serialize = "live.hand_raised")]
    LiveHandRaised { session_id: SessionId, user_id: UserId },
    #[serde(rename = "live.hand_lowered")]
    #[strum(serialize = "live.hand_lowered")]
    LiveHandLowered { session_id: SessionId, user_id: UserId },
    #[serde(rename = "live.hand_accepted")]
    #[strum(serialize = "live.hand_accepted")]
    LiveHandAccepted { session_id: SessionId, user_id: UserId },
    #[serde(rename = "live.invited")]
    #[strum(serialize = "live.invited")]
    LiveInvited { session: LiveSession },
    #[serde(rename = "live.ended")]
    #[strum(serialize = "live.ended")]
    LiveEnded { session: LiveSession, reason: LiveEndReason },
    /// An event the app's back end sent a user through the server API: the client receives it
    /// under its own name (`event`, never a native one) with `data` as given.
    #[serde(rename = "app")]
    #[strum(serialize = "app")]
    App { event: String, data: serde_json::Value },
}

impl Push {
    pub fn event(&self) -> &'static str {
        self.into()
    }
}

/// A push on its way to many connections: encoded to native JSON at most once, however
/// many connections it reaches.
#[derive(Debug)]
pub struct Delivery {
    pub push: Push,
    native: OnceLock<ByteString>,
    socketio: OnceLock<ByteString>,
    /// The push as each seed dialect shows it (listener events), translated at most once.
    dialects: [tokio::sync::OnceCell<Vec<Emit>>; 3],
}

impl Delivery {
    pub fn new(push: Push) -> Self {
        Self { push, native: OnceLock::new(), socketio: OnceLock::new(), dialects: Default::default() }
    }

    /// The push in a seed dialect's listener events: `translation` runs for the first
    /// connection of that dialect that needs it, and is dropped unrun after that. `None` for
    /// the native API, which needs none.
    pub async fn translated(
        &self,
        dialect: Dialect,
        translation: impl std::future::Future<Output = Result<Vec<Emit>, Error>>,
    ) -> Result<&[Emit], Error> {
        let slot = match dialect {
            Dialect::Social => &self.dialects[0],
            Dialect::Messenger => &self.dialects[1],
            Dialect::Rooms => &self.dialects[2],
        };
        slot.get_or_try_init(|| translation).await.map(Vec::as_slice)
    }

    /// `42["event",data]`, encoded at most once.
    pub fn socketio_text(&self) -> ByteString {
        self.socketio
            .get_or_init(|| {
                if let Push::App { event, data } = &self.push {
                    return super::socketio::event(event, data).into();
                }
                let mut value = serde_json::to_value(&self.push).expect("pushes serialize to JSON");
                let data = value.get_mut("data").map(serde_json::Value::take).unwrap_or_default();
                super::socketio::event(self.push.event(), &data).into()
            })
            .clone()
    }

    pub fn native_text(&self) -> ByteString {
        self.native
            .get_or_init(|| match &self.push {
                Push::App { event, data } => serde_json::json!({"event": event, "data": data}).to_string().into(),
                push => serde_json::to_string(push).expect("pushes serialize to JSON").into(),
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use strum::VariantNames;

    use super::*;

    #[test]
    fn every_push_is_named_alike_by_serde_and_strum() {
        let mut names = std::collections::HashSet::new();
        for name in Push::VARIANTS {
            assert!(names.insert(name), "{name} names two pushes");
            let wire = serde_json::json!({"event": name, "data": null});
            let err = serde_json::from_value::<Push>(wire).expect_err("null is no push's data").to_string();
            assert!(!err.contains("unknown variant"), "serde does not know {name}: {err}");
        }
    }
}
