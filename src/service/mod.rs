//! The use cases: what each command does, as functions over the node's [`Services`]. The
//! runtime's connections and the seed dialects both run commands through [`execute`]; what
//! must happen in one order per room or live session runs in that room's or session's actor,
//! which the runtime provides behind [`Actors`].

pub mod backend;
pub mod blocks;
pub mod calls;
pub mod limits;
pub mod live;
pub mod live_session;
pub mod messages;
pub mod recovery;
pub mod rooms;
pub mod social;
pub mod webhooks;

use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use crate::bus::Bus;
use crate::config::Settings;
use crate::domain::{ConnectionId, Error, NodeId, RoomId, SessionId, UserId};
use crate::metrics::Metrics;
use crate::presence::PresenceDirectory;
use crate::store::{Lifecycle, MessageWriter, Store};
use crate::wire::{Command, LiveCommand, Reply};

pub use calls::CallDevices;
pub use limits::UserLimits;
pub use webhooks::Webhooks;

/// What the use cases need from the runtime: the actors that run each room's and each live
/// session's commands one at a time.
pub trait Actors: Send + Sync + 'static {
    /// Hands `work` to the room's actor before this returns; resolves once the actor ran it
    /// (its result travels in the job itself), or with the reason it was refused.
    fn room(&self, caller: Caller, room: RoomId, work: RoomWork) -> BoxFuture<'static, Result<(), Error>>;
    /// Hands a command to the live session's actor; its reply.
    fn live(
        &self,
        caller: Caller,
        session: SessionId,
        command: LiveCommand,
    ) -> BoxFuture<'static, Result<Reply, Error>>;
}

/// A room command's work: run by the room's actor, in its mailbox order, once the caller is
/// known to be a member. The job starts the command's synchronous part when called and
/// returns the rest to await; it carries its own result back (see [`in_room`]).
pub type RoomJob = Box<dyn FnOnce(Arc<Services>, RoomId, Caller) -> BoxFuture<'static, ()> + Send>;

/// A [`RoomJob`] and whether a block between the two members of a direct room refuses it.
pub struct RoomWork {
    pub job: RoomJob,
    pub blocked_refuses: bool,
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
    /// Events for the app's back end (inert when webhooks are off).
    pub webhooks: Webhooks,
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

/// Runs `run` as `caller` in `room`'s actor, after the actor checked membership (and, when
/// `blocked_refuses`, that no block stands between a direct room's members); its typed result.
/// Handed to the actor before this returns, so commands from one connection keep their order.
pub fn in_room<T: Send + 'static>(
    services: &Services,
    caller: Caller,
    room: RoomId,
    blocked_refuses: bool,
    run: impl FnOnce(Arc<Services>, RoomId, Caller) -> BoxFuture<'static, Result<T, Error>> + Send + 'static,
) -> BoxFuture<'static, Result<T, Error>> {
    let (answer, answered) = tokio::sync::oneshot::channel();
    let job: RoomJob = Box::new(move |services, room, caller| {
        let running = run(services, room, caller);
        Box::pin(async move {
            // The caller may have gone; the command still ran to its end.
            let _ = answer.send(running.await);
        })
    });
    let handed = services.actors.room(caller, room, RoomWork { job, blocked_refuses });
    Box::pin(async move {
        handed.await?;
        answered.await.unwrap_or_else(|_| Err(Error::Unavailable("node is shutting down".into())))
    })
}

fn dispatch(services: Arc<Services>, caller: Caller, command: Command) -> BoxFuture<'static, Result<Reply, Error>> {
    match command {
        Command::Room { room, command } => {
            let blocked_refuses = messages::refused_when_blocked(&command);
            in_room(&services, caller, room, blocked_refuses, move |services, room, caller| {
                messages::start(services, room, caller, command)
            })
        }
        Command::Live(command) => live::execute(services, caller, command),
        Command::Social(command) => Box::pin(async move { social::execute(&services, &caller, command).await }),
        Command::Call(command) => Box::pin(async move { calls::execute(&services, &caller, command).await }),
        other => Box::pin(async move { rooms::execute(&services, &caller, other).await }),
    }
}
