//! Domain types: ids and values parsed once at the edge, the objects clients see, and the
//! one error type every layer speaks.

pub mod call;
mod chat;
mod connection;
mod error;
mod ids;
mod live;
mod social;
pub mod text;
mod time;
mod webhook;

pub use call::{Call, CallId, CallParticipant, CallState, EndReason, Media, PartyRole, PartyStatus, PartyStep};
pub use chat::{
    MAX_CLIENT_ID_BYTES, Message, MessageBody, MessageKind, Room, RoomCursor, RoomKind, check_client_id, direct_peer,
};
pub use connection::ConnectionInfo;
pub use error::{Error, ErrorCode};
pub use ids::{ConnectionId, NodeId, RoomId, SYSTEM_SENDER, SessionId, UserId};
pub use live::{CommentText, LiveComment, LiveEndReason, LiveSession, LiveState, LiveTitle, RaisedHand};
pub use social::{EARTH_RADIUS_KM, Location, LocationGrid, NearbyUser, Notification, RequestKind};
pub use time::Timestamp;
pub use webhook::{EventType, OutboxState};
