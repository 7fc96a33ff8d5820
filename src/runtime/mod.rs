//! Actors: a connection actor per WebSocket, one hub per node (who is connected here), a
//! room actor per room with members connected here, and a live actor per live session with
//! someone in it connected here. Commands flow connection → hub → room;
//! events flow bus → hub or room → connection outboxes.

mod calls;
pub(crate) mod commands;
pub mod connection;
pub mod hub;
mod limits;
mod live;
mod outbox;
pub mod registry;
pub mod revocations;
mod room;
mod social;

use std::sync::Arc;

use actix::Addr;

use crate::admission::Admission;
use crate::auth::Authenticator;
use crate::bus::Bus;
use crate::config::Settings;
use crate::domain::{ConnectionId, NodeId, UserId};
use crate::metrics::Metrics;
use crate::presence::PresenceDirectory;
use crate::store::{Lifecycle, MessageWriter, Store};

pub use calls::{CallDevices, CallSweeper};
pub use hub::Hub;
pub use limits::UserLimits;
pub use outbox::{Outbound, Outbox};

/// Everything a node's actors share; built once at start-up.
pub struct Services {
    pub settings: Settings,
    pub node: NodeId,
    pub store: Store,
    pub writer: MessageWriter,
    /// Batches the store work of connects and presence changes.
    pub lifecycle: Lifecycle,
    /// This node's connections that took a call device.
    pub call_devices: CallDevices,
    pub bus: Arc<dyn Bus>,
    pub presence: Arc<dyn PresenceDirectory>,
    /// Cluster mode's Redis connection (for readiness); `None` on a single node.
    pub redis: Option<redis::aio::ConnectionManager>,
    pub hub: Addr<Hub>,
    pub metrics: Arc<Metrics>,
    pub auth: Authenticator,
    /// Connection caps and allowed origins.
    pub admission: Arc<Admission>,
    /// This node's connections by user, for revocations and kicks.
    pub connections: registry::ConnectionRegistry,
    /// Per-user rate limits of this node; the hub sweeps them.
    pub limits: UserLimits,
}

/// Who is acting: the verified user and the connection the command came in on.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: UserId,
    pub connection: ConnectionId,
}
