//! Typed commands: what a request asks for once parsed (`request.rs` parses them). The
//! service layer runs them; the seed dialects build them too.

use serde_json::Value;

use crate::domain::{CallId, Location, Media, MessageKind, RequestKind, RoomCursor, RoomId, SessionId, UserId};

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
}

#[derive(Debug, Clone, PartialEq)]
pub enum RoomCommand {
    Send { kind: MessageKind, body: String, client_id: Option<String> },
    History { before_seq: Option<i64>, after_seq: Option<i64>, limit: i64 },
    MarkRead { seq: Option<i64> },
    Clear,
    Typing { typing: bool },
}
