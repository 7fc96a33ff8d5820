//! One room actor per room with members connected to this node. It caches the member list
//! to check every command, runs the room's commands (`service::messages`) in mailbox order,
//! and fans the room topic out to the local members' outboxes in seq order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::{Outbound, Outbox};
use crate::bus::{BusEvent, Delivered};
use crate::domain::{ConnectionId, Error, RoomId, UserId};
use crate::service::{Caller, RoomWork, Services};
use crate::store::LoadedRoom;
use crate::wire::{Delivery, Push};

/// The hub subscribes and unsubscribes the room topic for this actor, so that a stopping
/// actor can never remove the subscription of its successor.
pub struct RoomActor {
    id: RoomId,
    services: Arc<Services>,
    members: Members,
    /// This node's connections of members, each with its user. Only members' connections are
    /// kept, so a leaver's connections stop receiving the room once this actor hears of it.
    local: HashMap<ConnectionId, (UserId, Outbox)>,
    order: MessageOrder,
}

/// How long a `message.new` that arrives ahead of a missing seq is held back before the
/// missing ones are read from the store. Messages of one room are committed on any node and
/// may cross Redis out of order; local members still receive them in seq order.
const GAP_WAIT: Duration = Duration::from_millis(250);

/// Puts `message.new` pushes back in seq order for this node's members.
#[derive(Default)]
struct MessageOrder {
    /// The seq the members expect next.
    next: i64,
    /// Pushes that arrived ahead of `next`, with the connection to skip.
    held: BTreeMap<i64, (Push, Option<ConnectionId>)>,
    /// Seqs delivered from the store while filling a gap, whose live copy may still come.
    filled: HashSet<i64>,
    gap_timer: Option<SpawnHandle>,
}

enum Members {
    Loading,
    /// `blocked`: a direct room whose two members have a block between them.
    Known {
        members: HashSet<UserId>,
        blocked: bool,
    },
    /// The room does not exist.
    Missing,
    /// The store failed; the next command retries.
    Failed,
}

impl RoomActor {
    pub fn new(id: RoomId, services: Arc<Services>) -> Self {
        Self { id, services, members: Members::Loading, local: HashMap::new(), order: MessageOrder::default() }
    }

    /// Loads the member list; nothing is handled until it is known.
    fn load(&mut self, ctx: &mut Context<Self>) {
        self.load_then(ctx, |_, _| {});
    }

    /// Loads the member list, then runs `then` (before any message is handled).
    fn load_then(&mut self, ctx: &mut Context<Self>, then: impl FnOnce(&mut Self, &mut Context<Self>) + 'static) {
        self.members = Members::Loading;
        // Batched with the other rooms starting now: a reconnect storm starts thousands.
        let lifecycle = self.services.lifecycle.clone();
        let id = self.id;
        let load = async move { lifecycle.load_room(id).await };
        ctx.wait(load.into_actor(self).map(|loaded, room, ctx| {
            room.members = match loaded {
                Ok(Some(LoadedRoom { room: loaded, blocked })) => {
                    if room.order.next == 0 {
                        room.order.next = loaded.last_seq + 1;
                    }
                    let members: HashSet<UserId> = loaded.members.into_iter().collect();
                    room.local.retain(|_, (user, _)| members.contains(user));
                    Members::Known { members, blocked }
                }
                Ok(None) => Members::Missing,
                Err(e) => {
                    tracing::error!(room = %room.id, error = %e, "loading room members failed");
                    Members::Failed
                }
            };
            then(room, ctx);
        }));
    }
}

impl Actor for RoomActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        self.load(ctx);
    }
}

/// A local connection of a member starts (or stops) receiving the room's events.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Attach {
    pub user: UserId,
    pub outbox: Outbox,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Detach {
    pub connection: ConnectionId,
}

/// The last local member left: stop listening.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close;

/// A member's command: runs once checked, in mailbox order; answers when it is done or why
/// it was refused.
#[derive(Message)]
#[rtype(result = "Result<(), Error>")]
pub struct Execute {
    pub caller: Caller,
    pub work: RoomWork,
}

impl Handler<Attach> for RoomActor {
    type Result = ();
    fn handle(&mut self, msg: Attach, _: &mut Self::Context) {
        // A connection that loaded its rooms just before its user left one is not served.
        if let Members::Known { members, .. } = &self.members
            && !members.contains(&msg.user)
        {
            return;
        }
        self.local.insert(msg.outbox.connection, (msg.user, msg.outbox));
    }
}

impl Handler<Detach> for RoomActor {
    type Result = ();
    fn handle(&mut self, msg: Detach, _: &mut Self::Context) {
        self.local.remove(&msg.connection);
    }
}

impl Handler<Close> for RoomActor {
    type Result = ();
    fn handle(&mut self, _: Close, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl RoomActor {
    /// `user` left: their connections here stop receiving the room and their commands are
    /// refused from now on; the members who remain are told.
    fn member_left(&mut self, room_id: RoomId, user: &UserId) {
        if let Members::Known { members, .. } = &mut self.members {
            members.remove(user);
        }
        self.local.retain(|_, (member, _)| member != user);
        self.fan_out(Push::RoomMemberLeft { room_id, user_id: user.clone() }, None);
    }

    /// Queues the push for every local member's connection but `skip`, which is told of a
    /// `message.new` as seen (its Socket.IO session counts it delivered).
    fn fan_out(&self, push: Push, skip: Option<ConnectionId>) {
        let seen = matches!(push, Push::MessageNew { .. });
        let delivery = Arc::new(Delivery::new(push));
        for (connection, (_, outbox)) in &self.local {
            if Some(*connection) != skip {
                outbox.push(Outbound::Push(delivery.clone()));
            } else if seen {
                outbox.push(Outbound::Seen(delivery.clone()));
            }
        }
    }

    /// `fan_out` to `user`'s connections only.
    fn fan_out_to(&self, user: &UserId, push: Push, skip: Option<ConnectionId>) {
        let delivery = Arc::new(Delivery::new(push));
        for (connection, (member, outbox)) in &self.local {
            if member == user && Some(*connection) != skip {
                outbox.push(Outbound::Push(delivery.clone()));
            }
        }
    }

    /// A direct room whose two members have a block between them (as last loaded).
    fn blocked(&self) -> bool {
        matches!(self.members, Members::Known { blocked: true, .. })
    }

    /// Delivers a new message in seq order: in sequence at once, ahead of a gap held back
    /// (and the gap filled from the store after `GAP_WAIT`), late but unseen still delivered.
    fn deliver_message(&mut self, seq: i64, push: Push, skip: Option<ConnectionId>, ctx: &mut Context<Self>) {
        let order = &mut self.order;
        if order.next == 0 {
            // The member list never loaded: start from the first message seen.
            order.next = seq;
        }
        if seq < order.next {
            if !order.filled.remove(&seq) {
                self.fan_out(push, skip);
            }
            return;
        }
        if seq > order.next {
            order.held.insert(seq, (push, skip));
            if order.gap_timer.is_none() {
                order.gap_timer = Some(ctx.run_later(GAP_WAIT, |room, ctx| room.fill_gap(ctx)));
            }
            return;
        }
        order.next += 1;
        self.fan_out(push, skip);
        self.release_held(ctx);
    }

    /// Most messages the room delivers from the store at once (catching up, filling a gap):
    /// a quarter of a connection's outbox, so a member of a few busy rooms is not closed as a
    /// slow reader for what the node owed it. Members read a longer gap from history by `seq`.
    fn store_window(&self) -> i64 {
        (self.services.settings.outbound_queue / 4).max(1) as i64
    }

    /// Moves the next expected seq up to `seq`, first delivering in order what was held below
    /// it; the messages skipped are left to the members to read from history.
    fn skip_to(&mut self, seq: i64) {
        if seq <= self.order.next {
            return;
        }
        let newer = self.order.held.split_off(&seq);
        for (_, (push, skip)) in std::mem::replace(&mut self.order.held, newer) {
            self.fan_out(push, skip);
        }
        self.order.next = seq;
    }

    /// Delivers the held pushes that now follow on without a gap.
    fn release_held(&mut self, ctx: &mut Context<Self>) {
        while let Some((push, skip)) = self.order.held.remove(&self.order.next) {
            self.order.next += 1;
            self.fan_out(push, skip);
        }
        if self.order.held.is_empty()
            && let Some(timer) = self.order.gap_timer.take()
        {
            ctx.cancel_future(timer);
        }
    }

    /// After the bus lost its link to the other nodes (the member list being read again
    /// first): reads the newest messages committed since the last one delivered here (at
    /// most [`Self::store_window`]) and delivers them in order, so members get what they
    /// missed without asking. Their live copies, should they still come, are not delivered
    /// twice.
    fn catch_up(&mut self, ctx: &mut Context<Self>) {
        if self.order.next == 0 {
            return;
        }
        let (store, room, after, most) =
            (self.services.store.clone(), self.id, self.order.next - 1, self.store_window());
        let read = async move { store.newest_after(room, after, most).await };
        ctx.wait(read.into_actor(self).map(|loaded, room, ctx| {
            let missed = match loaded {
                Ok(missed) => missed,
                Err(e) => return tracing::warn!(room = %room.id, error = %e, "could not catch up after a bus outage"),
            };
            if let Some(oldest) = missed.first() {
                room.skip_to(oldest.seq);
            }
            for message in missed {
                let seq = message.seq;
                if seq >= room.order.next && !room.order.held.contains_key(&seq) {
                    room.order.filled.insert(seq);
                    room.order.held.insert(seq, (Push::MessageNew { message }, None));
                }
            }
            room.release_held(ctx);
        }));
    }

    /// Reads the messages missing before the held ones from the store (the newest
    /// [`Self::store_window`] of them) and delivers all of them in order.
    fn fill_gap(&mut self, ctx: &mut Context<Self>) {
        self.order.gap_timer = None;
        let Some(&last) = self.order.held.keys().next_back() else { return };
        self.skip_to(last - self.store_window() + 1);
        let (store, room, after) = (self.services.store.clone(), self.id, self.order.next - 1);
        ctx.wait(async move { store.messages_between(room, after, last).await }.into_actor(self).map(
            move |loaded, room, _| {
                let stored = match loaded {
                    Ok(stored) => stored,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not fill a message gap; delivering what arrived");
                        Vec::new()
                    }
                };
                let mut held = std::mem::take(&mut room.order.held);
                for message in stored {
                    let seq = message.seq;
                    match held.remove(&seq) {
                        Some((push, skip)) => room.fan_out(push, skip),
                        None => {
                            room.order.filled.insert(seq);
                            room.fan_out(Push::MessageNew { message }, None);
                        }
                    }
                }
                for (_, (push, skip)) in held {
                    room.fan_out(push, skip);
                }
                room.order.next = last + 1;
                let floor = room.order.next - 1024;
                room.order.filled.retain(|&seq| seq > floor);
            },
        ));
    }
}

impl Handler<Delivered> for RoomActor {
    type Result = ();
    fn handle(&mut self, msg: Delivered, ctx: &mut Self::Context) {
        let (push, skip) = match &msg.envelope.event {
            BusEvent::Push { push, skip } => (push, skip),
            BusEvent::RoomChanged { .. } => return self.load(ctx),
            // Whatever else was lost with the link (a member leaving, a block) is in the store
            // too: the member list is read again before the messages.
            BusEvent::Resumed => return self.load_then(ctx, Self::catch_up),
            BusEvent::MemberLeft { user_id, room_id } => return self.member_left(*room_id, user_id),
            BusEvent::JoinedRoom { .. } | BusEvent::LeftRoom { .. } | BusEvent::ToConnection { .. } => return,
            BusEvent::JoinedLive { .. } | BusEvent::LeftLive { .. } | BusEvent::LiveViewersChanged { .. } => return,
            BusEvent::Ask { .. } | BusEvent::Answer { .. } => return,
        };
        match push {
            Push::MessageNew { message } => self.deliver_message(message.seq, push.clone(), *skip, ctx),
            // Across a block, a member's read marks (which tell when they are active) reach
            // only their own connections.
            Push::RoomRead { user_id, .. } if self.blocked() => self.fan_out_to(user_id, push.clone(), *skip),
            _ => self.fan_out(push.clone(), *skip),
        }
    }
}

impl Handler<Execute> for RoomActor {
    type Result = ResponseFuture<Result<(), Error>>;

    fn handle(&mut self, msg: Execute, ctx: &mut Self::Context) -> Self::Result {
        let RoomWork { job, blocked_refuses } = msg.work;
        let checked = match &self.members {
            Members::Known { members, .. } if !members.contains(&msg.caller.user) => {
                Err(Error::forbidden("you are not a member of this room"))
            }
            Members::Known { blocked: true, .. } if blocked_refuses => Err(Error::blocked()),
            Members::Known { .. } => Ok(()),
            Members::Missing => Err(Error::not_found("no such room")),
            Members::Loading | Members::Failed => {
                self.load(ctx);
                Err(Error::Unavailable("room is loading; retry".into()))
            }
        };
        match checked {
            // The job starts its synchronous part now, in mailbox order.
            Ok(()) => {
                let running = job(self.services.clone(), self.id, msg.caller);
                Box::pin(async move {
                    running.await;
                    Ok(())
                })
            }
            Err(err) => Box::pin(async move { Err(err) }),
        }
    }
}
