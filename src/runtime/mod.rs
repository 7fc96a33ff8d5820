//! Actors: a connection actor per WebSocket, one hub per node (who is connected here), a
//! room actor per room with members connected here, and a live actor per live session with
//! someone in it connected here. Commands flow connection → service → room or live actor;
//! events flow bus → hub, room or live actor → connection outboxes.

mod call_sweeper;
pub mod connection;
pub mod hub;
mod live;
pub mod operator;
mod outbox;
pub mod registry;
mod resync;
pub mod revocations;
mod room;
pub mod webhooks;
mod writer;

use std::ops::Deref;
use std::sync::Arc;

use actix::Addr;

use crate::admission::Admission;
use crate::auth::Authenticator;
use crate::service::Services;

pub use call_sweeper::CallSweeper;
pub use hub::Hub;
pub use outbox::{Outbound, Outbox, RecoveryStart};

/// One node as its connections and routes see it: the use cases' services, plus what only
/// the runtime holds (the hub, the registry of connections, admission, token checks).
pub struct Node {
    pub services: Arc<Services>,
    pub hub: Addr<Hub>,
    pub auth: Authenticator,
    /// Connection caps and allowed origins.
    pub admission: Arc<Admission>,
    /// This node's connections by user, for revocations and kicks.
    pub connections: registry::ConnectionRegistry,
    /// The server API's questions to the other nodes waiting for answers.
    pub asks: operator::Asks,
    /// Cluster mode's Redis connection (for readiness); `None` on a single node.
    pub redis: Option<crate::redis_link::Commands>,
}

impl Deref for Node {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.services
    }
}
