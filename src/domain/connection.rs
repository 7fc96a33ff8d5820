//! A live connection as the server API lists it.

use serde::{Deserialize, Serialize};

use super::{ConnectionId, NodeId, Timestamp, UserId};

/// One of a user's connections, on whichever node holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConnectionInfo {
    pub connection_id: ConnectionId,
    pub user_id: UserId,
    pub node: NodeId,
    /// `native`, `social`, `messenger` or `rooms`.
    pub api: String,
    /// `native` (JSON frames) or `socketio`.
    pub framing: String,
    pub connected_at: Timestamp,
    /// When the connection's token expires (moved by `auth.refresh`).
    pub token_expires_at: Timestamp,
}
