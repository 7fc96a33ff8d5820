//! The node hub: which users are connected to this node, on which connections, and which
//! room actors serve them. It owns the user topics, starts and stops room actors as local
//! members come and go, and publishes presence. Live sessions are tracked the same way in its
//! `LiveRegistry` (see `live.rs`, which holds that part of the hub).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use actix::prelude::*;
use actix_ws::CloseCode;

use super::live::LiveRegistry;
use super::resync::Resyncs;
use super::room::{Attach, Close, Detach, Execute, RoomActor};
use super::{Outbound, Outbox, RecoveryStart};
use crate::auth::Identity;
use crate::bus::{BusEvent, Delivered, Topic};
use crate::service::webhooks::{self, Event};
use crate::service::{Actors, Caller, RoomWork, Services, limits};
use futures_util::future::BoxFuture;

use crate::domain::{ConnectionId, Error, RoomId, SessionId, Timestamp, UserId};
use crate::store::{Arrival, Peers, PresenceChange};
use crate::wire::{Delivery, LiveCommand, PresenceState, Push, Reply};

#[derive(Default)]
pub struct Hub {
    services: Option<Arc<Services>>,
    /// Its own address, for the actors it starts.
    pub(super) address: Option<Addr<Hub>>,
    pub(super) users: HashMap<UserId, LocalUser>,
    rooms: HashMap<RoomId, LocalRoom>,
    /// Live sessions that users connected here are in.
    pub(super) live: LiveRegistry,
    /// Set by `CloseAll`: every connection is being handed over to other nodes.
    draining: bool,
    /// Users whose topic may have lost events, to read again (`resync.rs`).
    pub(super) resyncs: Resyncs,
    /// Counts every change of a local user's rooms or live sessions (see `LocalUser::changed`).
    changes: u64,
}

#[derive(Default)]
pub(super) struct LocalUser {
    pub(super) connections: HashMap<ConnectionId, Outbox>,
    pub(super) rooms: HashSet<RoomId>,
    /// The hub's count of changes when this user's rooms or live sessions last changed here
    /// (or the entry was made): a resync's read that began before it is not applied. Never
    /// the same for two changes, even across the user leaving and coming back.
    pub(super) changed: u64,
}

struct LocalRoom {
    actor: Addr<RoomActor>,
    users: HashSet<UserId>,
}

impl Hub {
    /// Starts the hub; `build` makes the node's services from the hub's address.
    pub fn start_with(build: impl FnOnce(Addr<Hub>) -> Arc<Services>) -> Arc<Services> {
        let mut built = None;
        Hub::create(|ctx| {
            let services = build(ctx.address());
            built = Some(services.clone());
            Hub { services: Some(services), address: Some(ctx.address()), ..Default::default() }
        });
        built.expect("Hub::create runs its closure at once")
    }

    pub(super) fn services(&self) -> Arc<Services> {
        self.services.clone().expect("hub services are set at start")
    }

    /// Makes `user` (connected here) a listener of `room`, starting its actor if needed.
    pub(super) fn attach_user(&mut self, user: &UserId, room: RoomId) {
        let services = self.services();
        let Some(local) = self.users.get_mut(user) else {
            return;
        };
        if !local.rooms.insert(room) {
            return;
        }
        self.changes += 1;
        local.changed = self.changes;
        let entry = self.rooms.entry(room).or_insert_with(|| {
            let actor = RoomActor::new(room, services.clone()).start();
            services.bus.subscribe(Topic::Room(room), actor.clone().recipient());
            LocalRoom { actor, users: HashSet::new() }
        });
        entry.users.insert(user.clone());
        for outbox in local.connections.values() {
            entry.actor.do_send(Attach { user: user.clone(), outbox: outbox.clone() });
        }
    }

    /// `user` left `room`: stop listening to it for them, and stop its actor if no other
    /// local user needs it.
    pub(super) fn detach_user(&mut self, user: &UserId, room: RoomId) {
        let Some(local) = self.users.get_mut(user) else {
            return;
        };
        if !local.rooms.remove(&room) {
            return;
        }
        self.changes += 1;
        local.changed = self.changes;
        let connections: Vec<ConnectionId> = local.connections.keys().copied().collect();
        if let Some(entry) = self.rooms.get(&room) {
            for connection in connections {
                entry.actor.do_send(Detach { connection });
            }
        }
        self.release_room(user, room);
    }

    /// `user` no longer listens to `room` here; the room's actor stops with its last user.
    fn release_room(&mut self, user: &UserId, room: RoomId) {
        let services = self.services();
        let Some(entry) = self.rooms.get_mut(&room) else {
            return;
        };
        entry.users.remove(user);
        if entry.users.is_empty() {
            services.bus.unsubscribe(&Topic::Room(room));
            entry.actor.do_send(Close);
            self.rooms.remove(&room);
        }
    }

    /// Listens for `user` on the bus, once, with a local entry. Called on every connect and
    /// again on arrival: another connection's disconnect, or a failed arrival, may have
    /// forgotten the user while this connect's rooms were loading.
    fn listen_for(&mut self, user: &UserId, ctx: &mut Context<Self>) {
        if !self.users.contains_key(user) {
            self.services().bus.subscribe(Topic::User(user.clone()), ctx.address().recipient());
            self.changes += 1;
            self.users.insert(user.clone(), LocalUser { changed: self.changes, ..LocalUser::default() });
        }
    }

    /// Marks `user`'s rooms or live sessions here as changed now.
    pub(super) fn note_change(&mut self, user: &UserId) {
        self.changes += 1;
        if let Some(local) = self.users.get_mut(user) {
            local.changed = self.changes;
        }
    }

    /// Stops listening for a user with no connection here (and for their rooms that no
    /// other local user needs). True if the user was forgotten.
    fn forget_if_idle(&mut self, user: &UserId) -> bool {
        if self.users.get(user).is_none_or(|u| !u.connections.is_empty()) {
            return false;
        }
        let local = self.users.remove(user).unwrap_or_default();
        self.forget_live_user(user);
        self.services().bus.unsubscribe(&Topic::User(user.clone()));
        for room in local.rooms {
            self.release_room(user, room);
        }
        true
    }

    /// The user's first connection here opened (`online`) or their last one closed: if
    /// that changed their state cluster-wide, tell their peers.
    fn publish_presence(&self, user: &UserId, online: bool, seen: Timestamp, ctx: &mut Context<Self>) {
        let services = self.services();
        let change = if online {
            services.presence.connected(user.clone())
        } else {
            services.presence.disconnected(user.clone())
        };
        let (hub, user) = (ctx.address(), user.clone());
        // A task of its own, not a future held in the hub's context (see `ToRoom`).
        actix::spawn(async move {
            if change.await {
                webhooks::emit(&services, presence_event(&user, online, seen));
                announce(&services, hub, PresenceChange { user, online, seen }).await;
            }
        });
    }
}

/// The webhook event of a user's state changing cluster-wide.
fn presence_event(user: &UserId, online: bool, at: Timestamp) -> Event {
    let user = user.clone();
    if online { Event::UserOnline { user, at } } else { Event::UserOffline { user, at } }
}

/// Stores a presence change (`last_seen`, call presence) through the lifecycle batcher and
/// hands the user's peers to the hub, which tells them unless the change is out of date by
/// then.
async fn announce(services: &Services, hub: Addr<Hub>, change: PresenceChange) {
    match services.lifecycle.presence_changed(change.clone()).await {
        Ok(peers) => {
            let _ = hub.send(Announce { change, peers }).await;
        }
        Err(e) => tracing::warn!(user = %change.user, error = %e, "presence not published"),
    }
}

impl Actor for Hub {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        self.start_live_sweeper(ctx);
        // The per-user limiters keep a state per user; sweeping bounds them to recent users.
        ctx.run_interval(limits::SWEEP_EVERY, |hub, _| hub.services().limits.sweep());
    }
}

/// Registers a new connection; resolves once it receives pushes (after its `hello`).
#[derive(Message)]
#[rtype(result = "Result<(), Error>")]
pub struct Connect {
    pub identity: Identity,
    pub outbox: Outbox,
    /// The connection's first frame (`hello`, or Socket.IO's connect reply), queued by the
    /// hub so that no push can precede it.
    pub hello: String,
    /// A Socket.IO session's start, queued right after `hello` and before any push.
    pub recovery: Option<Box<RecoveryStart>>,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect {
    pub user: UserId,
    pub connection: ConnectionId,
}

/// Room and live commands go to their actors through the hub, which starts them as needed.
/// The message is sent before the future is returned, so one connection's commands reach
/// their actor in the order they were sent.
impl Actors for Addr<Hub> {
    fn room(&self, caller: Caller, room: RoomId, work: RoomWork) -> BoxFuture<'static, Result<(), Error>> {
        let sent = self.send(ToRoom { caller, room, work });
        Box::pin(async move { sent.await.map_err(|_| shutting_down())? })
    }

    fn live(
        &self,
        caller: Caller,
        session: SessionId,
        command: LiveCommand,
    ) -> BoxFuture<'static, Result<Reply, Error>> {
        let sent = self.send(super::live::ToLive { caller, session, command });
        Box::pin(async move { sent.await.map_err(|_| shutting_down())? })
    }
}

fn shutting_down() -> Error {
    Error::Unavailable("node is shutting down".into())
}

/// A command for one room, from a connection of this node; answers once the room's actor ran
/// it (its result travels in the work) or why it was refused.
#[derive(Message)]
#[rtype(result = "Result<(), Error>")]
pub struct ToRoom {
    pub caller: Caller,
    pub room: RoomId,
    pub work: RoomWork,
}

/// A user of this node is back online: the other nodes had taken this node for dead.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CameBack {
    pub user: UserId,
}

/// A user went offline everywhere because the node holding them died.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WentOffline {
    pub user: UserId,
}

/// Graceful shutdown: close every connection with 1012; answers how many were open.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CloseAll;

impl Handler<Connect> for Hub {
    // A plain future, not a `ResponseActFuture` held in the hub's context while the store
    // answers: in a reconnect storm thousands of connects wait at once (see `ToRoom`).
    type Result = ResponseFuture<Result<(), Error>>;

    fn handle(&mut self, msg: Connect, ctx: &mut Self::Context) -> Self::Result {
        let services = self.services();
        let user = msg.identity.user.clone();
        // Listen for the user at once, so that rooms they join while their rooms load are
        // not missed.
        self.listen_for(&user, ctx);
        let arrival = services.lifecycle.connect(user.clone(), msg.identity.profile);
        let hub = ctx.address();
        Box::pin(async move {
            let arrival = arrival.await;
            hub.send(Arrived { user, outbox: msg.outbox, hello: msg.hello, recovery: msg.recovery, arrival })
                .await
                .map_err(|_| Error::Unavailable("node is shutting down".into()))?
        })
    }
}

/// A connection's rooms and live sessions are loaded (or failed to): register it.
#[derive(Message)]
#[rtype(result = "Result<(), Error>")]
struct Arrived {
    user: UserId,
    outbox: Outbox,
    hello: String,
    recovery: Option<Box<RecoveryStart>>,
    arrival: Result<Arrival, Error>,
}

impl Handler<Arrived> for Hub {
    type Result = Result<(), Error>;

    fn handle(&mut self, msg: Arrived, ctx: &mut Self::Context) -> Self::Result {
        let user = msg.user;
        let arrival = match msg.arrival {
            Ok(arrival) => arrival,
            Err(err) => {
                self.forget_if_idle(&user);
                return Err(err);
            }
        };
        let outbox = msg.outbox;
        // hello goes first: nothing can be queued before it, and pushes follow it.
        outbox.push(Outbound::text(msg.hello, "hello"));
        if let Some(recovery) = msg.recovery {
            outbox.push(Outbound::Recovery(recovery));
        }
        self.listen_for(&user, ctx);
        let local = self.users.get_mut(&user).expect("listened for just now");
        let first = local.connections.is_empty();
        local.connections.insert(outbox.connection, outbox.clone());
        for room in &local.rooms {
            if let Some(entry) = self.rooms.get(room) {
                entry.actor.do_send(Attach { user: user.clone(), outbox: outbox.clone() });
            }
        }
        for room in arrival.rooms {
            self.attach_user(&user, room);
        }
        self.live_connection_opened(&user, &outbox);
        for (session, _) in arrival.live {
            self.attach_live(&user, session);
        }
        if first {
            self.publish_presence(&user, true, Timestamp::now(), ctx);
        }
        Ok(())
    }
}

/// A presence change is stored and its peers known: tell them, if still current.
#[derive(Message)]
#[rtype(result = "()")]
struct Announce {
    change: PresenceChange,
    peers: Peers,
}

impl Handler<Announce> for Hub {
    type Result = ();

    /// A change that is already out of date here when its peers are known (a quick
    /// reconnect) is not published, so peers never end on a stale state.
    fn handle(&mut self, msg: Announce, _: &mut Self::Context) {
        let PresenceChange { user, online, seen } = msg.change;
        if self.users.get(&user).is_some_and(|u| !u.connections.is_empty()) != online {
            return;
        }
        let bus = self.services().bus.clone();
        let state = PresenceState { user_id: user, online, last_seen: Some(seen) };
        for (_, peer) in msg.peers {
            bus.publish(Topic::User(peer), BusEvent::Push { push: Push::Presence(state.clone()), skip: None });
        }
    }
}

impl Handler<Disconnect> for Hub {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, ctx: &mut Self::Context) {
        let Some(local) = self.users.get_mut(&msg.user) else {
            return;
        };
        if local.connections.remove(&msg.connection).is_none() {
            return;
        }
        for room in &local.rooms {
            if let Some(entry) = self.rooms.get(room) {
                entry.actor.do_send(Detach { connection: msg.connection });
            }
        }
        // A cluster node draining hands its users over: they reconnect to other nodes within
        // moments. Their offline work (several queries each, for thousands of users at once)
        // is left to the presence reaper, which runs once this node's heartbeat is gone and
        // announces only the users who did not come back anywhere.
        let handed_over = self.draining && self.services().settings.redis_target().is_some();
        // Only a connection that took a call device has one to release (most never do).
        let held_device = self.services().call_devices.release(msg.connection);
        if held_device && !handed_over {
            // A call on this connection falls back to the party's other connections.
            let store = self.services().store.clone();
            let (user, connection) = (msg.user.clone(), msg.connection);
            actix::spawn(async move {
                if let Err(e) = store.release_device(&user, connection).await {
                    tracing::warn!(error = %e, "could not release a call device");
                }
            });
        }
        self.live_connection_closed(&msg.user, msg.connection);
        let in_live = self.in_live(&msg.user);
        if self.forget_if_idle(&msg.user) && !handed_over {
            self.publish_presence(&msg.user, false, Timestamp::now(), ctx);
            if in_live {
                self.schedule_live_departure(msg.user.clone(), ctx);
            }
        }
    }
}

impl Handler<ToRoom> for Hub {
    // A plain future, run as a task of its own. Not a `ResponseActFuture`: the hub's context
    // polls every future it holds each time it wakes, and a room command is held until its
    // commit, so at a few thousand messages a second the hub spent its time re-polling the
    // requests in flight (quadratic; `oneshot::State::load` topped the profile).
    type Result = ResponseFuture<Result<(), Error>>;

    fn handle(&mut self, msg: ToRoom, ctx: &mut Self::Context) -> Self::Result {
        let listening = self.rooms.get(&msg.room).filter(|entry| entry.users.contains(&msg.caller.user));
        if let Some(entry) = listening {
            // Queued on the room actor now, so a connection's commands keep their order.
            let sent = entry.actor.send(Execute { caller: msg.caller, work: msg.work });
            return Box::pin(
                async move { sent.await.map_err(|_| Error::Unavailable("room is restarting; retry".into()))? },
            );
        }
        // Not a room this user listens to here: either not theirs, unknown, or joined a
        // moment ago on another path. The store decides.
        let store = self.services().store.clone();
        let hub = ctx.address();
        Box::pin(async move {
            let room = match store.room_members(msg.room).await {
                Err(e) => return Err(Error::from(e)),
                Ok(None) => return Err(Error::not_found("no such room")),
                Ok(Some(room)) => room,
            };
            if !room.members.contains(&msg.caller.user) {
                return Err(Error::forbidden("you are not a member of this room"));
            }
            let actor = hub
                .send(AttachRoom { user: msg.caller.user.clone(), room: msg.room })
                .await
                .map_err(|_| Error::Unavailable("node is shutting down".into()))?;
            match actor {
                Some(actor) => actor
                    .send(Execute { caller: msg.caller, work: msg.work })
                    .await
                    .map_err(|_| Error::Unavailable("room is restarting; retry".into()))?,
                None => Err(Error::Unavailable("you are disconnecting".into())),
            }
        })
    }
}

/// A member connected here turned out (from the store) to be in a room not yet attached:
/// attach it; answers the room's actor.
#[derive(Message)]
#[rtype(result = "Option<Addr<RoomActor>>")]
struct AttachRoom {
    user: UserId,
    room: RoomId,
}

impl Handler<AttachRoom> for Hub {
    type Result = Option<Addr<RoomActor>>;

    fn handle(&mut self, msg: AttachRoom, _: &mut Self::Context) -> Self::Result {
        self.attach_user(&msg.user, msg.room);
        self.rooms.get(&msg.room).map(|entry| entry.actor.clone())
    }
}

impl Handler<WentOffline> for Hub {
    type Result = ();

    fn handle(&mut self, msg: WentOffline, ctx: &mut Self::Context) {
        if !self.users.contains_key(&msg.user) {
            self.schedule_live_departure(msg.user.clone(), ctx);
            let (services, hub) = (self.services(), ctx.address());
            let change = PresenceChange { user: msg.user, online: false, seen: Timestamp::now() };
            webhooks::emit(&services, presence_event(&change.user, false, change.seen));
            actix::spawn(async move { announce(&services, hub, change).await });
        }
    }
}

impl Handler<CameBack> for Hub {
    type Result = ();

    fn handle(&mut self, msg: CameBack, ctx: &mut Self::Context) {
        if self.users.get(&msg.user).is_some_and(|u| !u.connections.is_empty()) {
            let (services, hub) = (self.services(), ctx.address());
            let change = PresenceChange { user: msg.user, online: true, seen: Timestamp::now() };
            webhooks::emit(&services, presence_event(&change.user, true, change.seen));
            actix::spawn(async move { announce(&services, hub, change).await });
        }
    }
}

impl Handler<Delivered> for Hub {
    type Result = ();

    fn handle(&mut self, msg: Delivered, ctx: &mut Self::Context) {
        let Topic::User(user) = &msg.topic else {
            return;
        };
        match &msg.envelope.event {
            BusEvent::Push { push, skip } => {
                if let Push::RoomCreated { room } = push {
                    self.attach_user(user, room.id);
                }
                let Some(local) = self.users.get(user) else {
                    return;
                };
                let delivery = Arc::new(Delivery::new(push.clone()));
                for (connection, outbox) in &local.connections {
                    if Some(*connection) != *skip {
                        outbox.push(Outbound::Push(delivery.clone()));
                    }
                }
            }
            BusEvent::ToConnection { push, connection } => {
                let outbox = self.users.get(user).and_then(|local| local.connections.get(connection));
                if let Some(outbox) = outbox {
                    outbox.push(Outbound::Push(Arc::new(Delivery::new(push.clone()))));
                }
            }
            BusEvent::JoinedRoom { room_id } => self.attach_user(user, *room_id),
            BusEvent::LeftRoom { room_id } => self.detach_user(user, *room_id),
            BusEvent::Resumed => self.resync(user, ctx),
            BusEvent::RoomChanged { .. }
            | BusEvent::MemberLeft { .. }
            | BusEvent::Ask { .. }
            | BusEvent::Answer { .. } => {}
            // --- live sessions ---
            BusEvent::JoinedLive { session_id } => self.attach_live(user, *session_id),
            BusEvent::LeftLive { session_id } => self.detach_live(user, *session_id),
            BusEvent::LiveViewersChanged { session_id } => self.live_viewers_changed(*session_id),
        }
    }
}

/// Pushes `push` to every connection of `user` on this node; how many it reached.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct ToUser {
    pub user: UserId,
    pub push: Push,
}

impl Handler<ToUser> for Hub {
    type Result = usize;

    fn handle(&mut self, msg: ToUser, _: &mut Self::Context) -> usize {
        let Some(local) = self.users.get(&msg.user) else { return 0 };
        let delivery = Arc::new(Delivery::new(msg.push));
        local.connections.values().filter(|outbox| outbox.push(Outbound::Push(delivery.clone()))).count()
    }
}

impl Handler<CloseAll> for Hub {
    type Result = usize;

    fn handle(&mut self, _: CloseAll, _: &mut Self::Context) -> usize {
        self.draining = true;
        let mut count = 0;
        for outbox in self.users.values().flat_map(|u| u.connections.values()) {
            outbox.close(CloseCode::Restart, "server restarting: reconnect");
            count += 1;
        }
        count
    }
}
