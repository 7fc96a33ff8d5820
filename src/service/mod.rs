//! The use cases: what each command does, as functions over the node's [`Services`]. The
//! runtime's connections and the seed dialects both run commands through [`execute`]; what
//! must happen in one order per room or live session runs in that room's or session's actor,
//! which the runtime provides behind [`Actors`].

pub mod calls;
pub mod limits;
pub mod live;
pub mod live_session;
pub mod messages;
pub mod rooms;
pub mod social;

use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use crate::bus::Bus;
use crate::config::Settings;
use crate::domain::{ConnectionId, Error, NodeId, RoomId, SessionId, UserId};
use crate::metrics::Metrics;
use crate::presence::PresenceDirectory;
use crate::store::{Lifecycle, MessageWriter, Store};
use crate::wire::{Command, LiveCommand, Reply, RoomCommand};

pub use calls::CallDevices;
pub use limits::UserLimits;

/// What the use cases need from the runtime: the actors that run each room's and each live
/// session's commands one at a time.
pub trait Actors: Send + Sync + 'static {
    /// Hands a command to the room's actor; its reply.
    fn room(&self, caller: Caller, room: RoomId, command: RoomCommand) -> BoxFuture<'static, Result<Reply, Error>>;
    /// Hands a command to the live session's actor; its reply.
    fn live(
        &self,
        caller: Caller,
        session: SessionId,
        command: LiveCommand,
    ) -> BoxFuture<'static, Result<Reply, Error>>;
}

/// Everything the use cases share on one node; built once at start-up.
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
    pub metrics: Arc<Metrics>,
    /// Per-user rate limits of this node; the hub sweeps them.
    pub limits: UserLimits,
    pub actors: Arc<dyn Actors>,
}

/// Who is acting: the verified user and the connection the command came in on.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: UserId,
    pub connection: ConnectionId,
}

/// Starts `command` and returns its reply. Room and live commands are handed to their actor
/// before this returns, so commands from one connection keep their order. A panic while it runs fails
/// this command alone (`internal`, logged), never the connection or the node.
pub fn execute(services: Arc<Services>, caller: Caller, command: Command) -> BoxFuture<'static, Result<Reply, Error>> {
    let user = caller.user.clone();
    let run = dispatch(services, caller, command);
    Box::pin(contained(user, run))
}

/// Runs one use case for `user`; a panic inside it fails it alone (`internal`, logged).
pub async fn contained<T>(user: UserId, run: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
    std::panic::AssertUnwindSafe(run).catch_unwind().await.unwrap_or_else(|_| {
        tracing::error!(%user, "a command panicked; answered as an internal error");
        Err(Error::Internal)
    })
}

fn dispatch(services: Arc<Services>, caller: Caller, command: Command) -> BoxFuture<'static, Result<Reply, Error>> {
    match command {
        Command::Room { room, command } => services.actors.room(caller, room, command),
        Command::Live(command) => live::execute(services, caller, command),
        Command::Social(command) => Box::pin(async move { social::execute(&services, &caller, command).await }),
        Command::Call(command) => Box::pin(async move { calls::execute(&services, &caller, command).await }),
        other => Box::pin(async move { rooms::execute(&services, &caller, other).await }),
    }
}
