//! The bus: every delivery between actors goes through it, so that nodes bridged by Redis
//! behave as one. A node subscribes only to the topics of the users, rooms and live sessions
//! it holds; each topic has one local sink (the hub for users, the room's actor for rooms, the
//! session's actor for live sessions), so a connection receives each event once.

mod local;
mod redis;

use std::sync::Arc;

use actix::{Message, Recipient};
use serde::{Deserialize, Serialize};

use crate::domain::{ConnectionId, ConnectionInfo, NodeId, RoomId, SessionId, Timestamp, UserId};
use crate::wire::Push;

pub use local::LocalBus;
pub use redis::RedisBus;

/// Version of the node-to-node envelope; bumped on any incompatible change.
pub const ENVELOPE_VERSION: u16 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    User(UserId),
    Room(RoomId),
    /// A live session: its comments, accepted hands and end, for everyone in it.
    Live(SessionId),
    /// One node: the server API's questions to it and the answers to its own questions.
    Node(NodeId),
}

impl Topic {
    /// Whether what its lost events said can be read again from the store (`Resumed`): a
    /// room's messages and members, a user's rooms and live sessions. Live sessions' comments
    /// and node questions are moments, not state.
    pub fn recovers_from_store(&self) -> bool {
        matches!(self, Topic::Room(_) | Topic::User(_))
    }
}

/// What the server API asks every node about one user's connections there.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Question {
    /// List them.
    Connections { user_id: UserId },
    /// Close them: with 4000 (reconnect) or 4003 (do not reconnect with this token).
    Close { user_id: UserId, reconnect: bool },
    /// Refuse the user's tokens issued before `before` and close the connections holding one.
    Revoke { user_id: UserId, before: Timestamp },
    /// Push an app event to them.
    Deliver { user_id: UserId, event: String, data: serde_json::Value },
}

impl Question {
    /// The user it is about.
    pub fn user(&self) -> &UserId {
        match self {
            Self::Connections { user_id }
            | Self::Close { user_id, .. }
            | Self::Revoke { user_id, .. }
            | Self::Deliver { user_id, .. } => user_id,
        }
    }
}

/// One node's answer to a [`Question`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Answer {
    Connections {
        connections: Vec<ConnectionInfo>,
    },
    /// How many connections the question reached.
    Reached {
        count: usize,
    },
}

/// What travels between nodes, typed and versioned, with the node it came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u16,
    pub origin: NodeId,
    pub event: BusEvent,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // travels inside an Arc; boxing would only add a hop
pub enum BusEvent {
    /// Push to the topic's connections, except `skip` (the connection that caused it,
    /// which has its ack instead).
    Push { push: Push, skip: Option<ConnectionId> },
    /// On a user topic: push to that one connection of the user only (a call's device).
    ToConnection { push: Push, connection: ConnectionId },
    /// On a user topic: the user is now a member of `room_id`; their nodes start
    /// listening to it.
    JoinedRoom { room_id: RoomId },
    /// On a room topic: the room's members or blocks changed; its actors reload them.
    RoomChanged { room_id: RoomId },
    /// On a room topic: `user_id` left the group. Its actors stop serving the user's
    /// connections at once, then push `room.member_left` to the members who remain.
    MemberLeft { room_id: RoomId, user_id: UserId },
    /// On a user topic: the user left `room_id`; their nodes stop listening to it for them.
    LeftRoom { room_id: RoomId },
    // --- live sessions ---
    /// On a user topic: the user joined (or hosts) `session_id`; their nodes attach their
    /// connections to it.
    JoinedLive { session_id: SessionId },
    /// On a user topic: the user left `session_id`; their nodes detach their connections.
    LeftLive { session_id: SessionId },
    /// On the host's user topic: the viewer count may have changed; the host's nodes read it
    /// and push `live.viewers` (throttled).
    LiveViewersChanged { session_id: SessionId },
    /// On a node topic: the server API on `reply_to` asks; the node answers on `reply_to`'s topic.
    Ask { id: uuid::Uuid, reply_to: NodeId, question: Question },
    /// On a node topic: a node's answer to this node's question `id`.
    Answer { id: uuid::Uuid, answer: Answer },
    /// On a room or user topic, events may have been missed: room actors read what their
    /// members missed from the store, and the hub reads the user's rooms and live sessions
    /// again. From this node's own bus when its link to the other nodes is back after a loss;
    /// from another node when Redis takes its publishes again after it failed to publish (or
    /// its full queue dropped) one of the topic's events.
    Resumed,
}

/// An envelope arriving at a topic's local sink.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Delivered {
    pub topic: Topic,
    pub envelope: Arc<Envelope>,
}

pub trait Bus: Send + Sync + 'static {
    /// Sends `event` to every node holding `topic`, this one included. Never blocks; live
    /// delivery is best effort (clients recover gaps from the store by `seq`).
    fn publish(&self, topic: Topic, event: BusEvent);
    /// Starts delivering `topic` to `sink` on this node (replacing any earlier sink).
    fn subscribe(&self, topic: Topic, sink: Recipient<Delivered>);
    fn unsubscribe(&self, topic: &Topic);
}
