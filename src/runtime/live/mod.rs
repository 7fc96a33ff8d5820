//! Live sessions. One `LiveActor` per session that has someone in it (its host or a viewer)
//! connected to this node: it holds those users' local connections, fans the session topic
//! out to them (comments, accepted hands, the end), runs the session's commands, rate-limits
//! comments, and on the host's nodes pushes the viewer count to the host at most once per
//! `VIEWERS_PUSH_INTERVAL`.
//!
//! The store is the truth about who is in a session (`live_viewers` holds one row per user,
//! so counts are exact across nodes and devices). The hub keeps this node's view of it in a
//! `LiveRegistry`: which sessions each local user is in. It starts a session's actor and
//! subscribes its topic for the first local user in it, and stops both after the last, like
//! rooms. `JoinedLive` and `LeftLive` on a user's topic keep every node holding that user
//! current. Every session event is published once, on the session topic (or, when only the
//! host or one user is addressed, on that user's topic).
//!
//! `live.join`s wait in the session's actor and go to the store in batches (one transaction,
//! blocks read in it, for all that arrived while the previous batch ran): a crowd joining at
//! once is not serialized on the session row's lock.
//!
//! A user whose last connection anywhere has been closed for `SWITCHBOARD_LIVE_HOST_GRACE_SECS`
//! leaves: a viewer stops being counted, a host's sessions end with `host_left`.

mod actor;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use actix::prelude::*;

use self::actor::{Attach, Close, Detach, Execute, LiveActor, ViewersChanged};
use super::{Hub, Outbox};
use crate::bus::Topic;
use crate::domain::{ConnectionId, Error, SessionId, UserId};
use crate::service::Caller;
use crate::service::live::{depart, sweep_departed_hosts};
use crate::service::live_session::Membership;
use crate::wire::{LiveCommand, Reply};

/// The host hears of viewer count changes at most this often (per node holding the host).
pub const VIEWERS_PUSH_INTERVAL: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------
// The hub's registry of live sessions on this node.

/// Which live sessions this node's users are in, and their actors.
#[derive(Default)]
pub struct LiveRegistry {
    sessions: HashMap<SessionId, LocalLive>,
    by_user: HashMap<UserId, HashSet<SessionId>>,
}

struct LocalLive {
    actor: Addr<LiveActor>,
    users: HashSet<UserId>,
    /// Commands sent to the actor and not answered yet: an idle actor is not stopped under them.
    in_flight: usize,
}

/// A command for one live session, from a connection of this node.
#[derive(Message)]
#[rtype(result = "Result<Reply, Error>")]
pub struct ToLive {
    pub caller: Caller,
    pub session: SessionId,
    pub command: LiveCommand,
}

/// From a session's actor: the session ended; stop listening to it here.
#[derive(Message)]
#[rtype(result = "()")]
struct LiveClosed {
    session: SessionId,
    actor: Addr<LiveActor>,
}

impl Hub {
    /// The session's actor on this node, started (and its topic subscribed) if needed.
    fn live_actor(&mut self, session: SessionId) -> Addr<LiveActor> {
        let services = self.services();
        let hub = self.address.clone();
        let entry = self.live.sessions.entry(session).or_insert_with(|| {
            let actor = LiveActor::new(session, services.clone(), hub).start();
            services.bus.subscribe(Topic::Live(session), actor.clone().recipient());
            LocalLive { actor, users: HashSet::new(), in_flight: 0 }
        });
        entry.actor.clone()
    }

    /// `user` (connected here) is in `session`: their connections here receive its events.
    pub(super) fn attach_live(&mut self, user: &UserId, session: SessionId) {
        let Some(outboxes) = self.users.get(user).map(|u| u.connections.values().cloned().collect::<Vec<_>>()) else {
            return;
        };
        if !self.live.by_user.entry(user.clone()).or_default().insert(session) {
            return;
        }
        self.note_change(user);
        let actor = self.live_actor(session);
        if let Some(entry) = self.live.sessions.get_mut(&session) {
            entry.users.insert(user.clone());
        }
        for outbox in outboxes {
            actor.do_send(Attach { user: user.clone(), outbox });
        }
    }

    pub(super) fn detach_live(&mut self, user: &UserId, session: SessionId) {
        let Some(sessions) = self.live.by_user.get_mut(user) else { return };
        if !sessions.remove(&session) {
            return;
        }
        if sessions.is_empty() {
            self.live.by_user.remove(user);
        }
        self.note_change(user);
        if let Some(entry) = self.live.sessions.get_mut(&session) {
            entry.users.remove(user);
            for connection in self.users.get(user).into_iter().flat_map(|u| u.connections.keys()) {
                entry.actor.do_send(Detach { connection: *connection });
            }
        }
        self.drop_live_if_idle(session);
    }

    /// Stops a session's actor and unsubscribes its topic once nobody here is in it.
    fn drop_live_if_idle(&mut self, session: SessionId) {
        if self.live.sessions.get(&session).is_some_and(|e| e.users.is_empty() && e.in_flight == 0) {
            self.close_live(session);
        }
    }

    fn close_live(&mut self, session: SessionId) {
        let Some(entry) = self.live.sessions.remove(&session) else { return };
        self.services().bus.unsubscribe(&Topic::Live(session));
        entry.actor.do_send(Close);
        for user in entry.users {
            if let Some(sessions) = self.live.by_user.get_mut(&user) {
                sessions.remove(&session);
                if sessions.is_empty() {
                    self.live.by_user.remove(&user);
                }
            }
        }
    }

    /// A new connection of `user`: it joins the sessions the user is in here.
    pub(super) fn live_connection_opened(&mut self, user: &UserId, outbox: &Outbox) {
        for session in self.live.by_user.get(user).into_iter().flatten() {
            if let Some(entry) = self.live.sessions.get(session) {
                entry.actor.do_send(Attach { user: user.clone(), outbox: outbox.clone() });
            }
        }
    }

    pub(super) fn live_connection_closed(&mut self, user: &UserId, connection: ConnectionId) {
        for session in self.live.by_user.get(user).into_iter().flatten() {
            if let Some(entry) = self.live.sessions.get(session) {
                entry.actor.do_send(Detach { connection });
            }
        }
    }

    /// The sessions this node listens to for `user`.
    pub(super) fn live_sessions_here(&self, user: &UserId) -> HashSet<SessionId> {
        self.live.by_user.get(user).cloned().unwrap_or_default()
    }

    /// True if `user` is in a live session this node listens to for them.
    pub(super) fn in_live(&self, user: &UserId) -> bool {
        self.live.by_user.contains_key(user)
    }

    /// `user` has no connection left here: forget their sessions.
    pub(super) fn forget_live_user(&mut self, user: &UserId) {
        let Some(sessions) = self.live.by_user.remove(user) else { return };
        for session in sessions {
            if let Some(entry) = self.live.sessions.get_mut(&session) {
                entry.users.remove(user);
            }
            self.drop_live_if_idle(session);
        }
    }

    /// `user` went offline here (or with a dead node): after the grace period, if they are
    /// still offline everywhere, they leave their live sessions (see `depart`).
    pub(super) fn schedule_live_departure(&mut self, user: UserId, ctx: &mut Context<Self>) {
        let grace = self.services().settings.live_host_grace();
        ctx.run_later(grace, move |hub, _| {
            if hub.users.contains_key(&user) {
                return; // back on this node
            }
            let services = hub.services();
            actix::spawn(async move {
                if let Err(e) = depart(&services, &user).await {
                    tracing::warn!(%user, error = %e, "could not settle the live sessions of a departed user");
                }
            });
        });
    }

    /// Runs `sweep_departed_hosts` every grace period (at least every 5 s) for the life of
    /// the node.
    pub(super) fn start_live_sweeper(&mut self, ctx: &mut Context<Self>) {
        let every = self.services().settings.live_host_grace().max(Duration::from_secs(5));
        ctx.run_interval(every, |hub, _| {
            let services = hub.services();
            actix::spawn(async move {
                if let Err(e) = sweep_departed_hosts(&services).await {
                    tracing::warn!(error = %e, "live session sweep failed");
                }
            });
        });
    }

    /// The host's topic said the viewer count may have changed: this node's actor checks.
    pub(super) fn live_viewers_changed(&mut self, session: SessionId) {
        if let Some(entry) = self.live.sessions.get(&session) {
            entry.actor.do_send(ViewersChanged);
        }
    }
}

impl Handler<ToLive> for Hub {
    // A plain future, as `ToRoom`'s: a context polls every future it holds each time it
    // wakes, and a join waits in its session's batch, so thousands of joins held here cost
    // the hub time quadratic in them.
    type Result = ResponseFuture<Result<Reply, Error>>;

    fn handle(&mut self, msg: ToLive, ctx: &mut Self::Context) -> Self::Result {
        let session = msg.session;
        let actor = self.live_actor(session);
        if let Some(entry) = self.live.sessions.get_mut(&session) {
            entry.in_flight += 1;
        }
        let user = msg.caller.user.clone();
        let sent = actor.send(Execute { caller: msg.caller, command: msg.command });
        let (hub, bus) = (ctx.address(), self.services().bus.clone());
        Box::pin(async move {
            let outcome = match sent.await {
                Ok(outcome) => outcome,
                Err(_) => Err(Error::Unavailable("live session is restarting; retry".into())),
            };
            let membership = outcome.as_ref().ok().and_then(|outcome| outcome.membership);
            // The user's nodes also hear of it on their topic; attaching here before the
            // caller hears back means the reply is never followed by a missed event.
            let _ = hub.send(LiveAnswered { session, actor, user, membership }).await;
            let outcome = outcome?;
            if let Some((topic, event)) = outcome.then_publish {
                // After the reply: the caller's ack is woken first.
                actix::spawn(async move { bus.publish(topic, event) });
            }
            Ok(outcome.reply)
        })
    }
}

/// A live command was answered: one command fewer in flight on the session's actor, and the
/// caller attached to or detached from the session as the command changed it.
#[derive(Message)]
#[rtype(result = "()")]
struct LiveAnswered {
    session: SessionId,
    actor: Addr<LiveActor>,
    user: UserId,
    membership: Option<Membership>,
}

impl Handler<LiveAnswered> for Hub {
    type Result = ();

    fn handle(&mut self, msg: LiveAnswered, _: &mut Self::Context) {
        if let Some(entry) = self.live.sessions.get_mut(&msg.session).filter(|e| e.actor == msg.actor) {
            entry.in_flight = entry.in_flight.saturating_sub(1);
        }
        match msg.membership {
            Some(Membership::Joined) => self.attach_live(&msg.user, msg.session),
            Some(Membership::Left) => self.detach_live(&msg.user, msg.session),
            None => {}
        }
        self.drop_live_if_idle(msg.session);
    }
}

impl Handler<LiveClosed> for Hub {
    type Result = ();

    fn handle(&mut self, msg: LiveClosed, _: &mut Self::Context) {
        if self.live.sessions.get(&msg.session).is_some_and(|e| e.actor == msg.actor) {
            self.close_live(msg.session);
        }
    }
}
