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
//! `live.join`s wait in the session's actor and go to the store in batches (one block query
//! and one transaction for all that arrived while the previous batch ran): a crowd joining at
//! once is not serialized on the session row's lock.
//!
//! A user whose last connection anywhere has been closed for `SWITCHBOARD_LIVE_HOST_GRACE_SECS`
//! leaves: a viewer stops being counted, a host's sessions end with `host_left`.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::FutureExt;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::oneshot;

use super::{Hub, Outbound, Outbox};
use crate::bus::{BusEvent, Delivered, Topic};
use crate::domain::{CommentText, ConnectionId, Error, SessionId, UserId};
use crate::service::live::{depart, sweep_departed_hosts};
use crate::service::live_session::{JOIN_BATCH_MAX, Membership, Outcome, SessionCx, join_all};
use crate::service::{Caller, Services};
use crate::wire::{Delivery, LiveCommand, Push, Reply};

/// The host hears of viewer count changes at most this often (per node holding the host).
pub const VIEWERS_PUSH_INTERVAL: Duration = Duration::from_secs(1);
/// How often the comment rate limiter forgets users who stopped commenting.
const LIMITER_SWEEP: Duration = Duration::from_secs(60);

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
    type Result = ResponseActFuture<Self, Result<Reply, Error>>;

    fn handle(&mut self, msg: ToLive, _: &mut Self::Context) -> Self::Result {
        let session = msg.session;
        let actor = self.live_actor(session);
        if let Some(entry) = self.live.sessions.get_mut(&session) {
            entry.in_flight += 1;
        }
        let user = msg.caller.user.clone();
        let sent = actor.send(Execute { caller: msg.caller, command: msg.command });
        Box::pin(sent.into_actor(self).map(move |result, hub, _| {
            if let Some(entry) = hub.live.sessions.get_mut(&session).filter(|e| e.actor == actor) {
                entry.in_flight = entry.in_flight.saturating_sub(1);
            }
            let outcome = match result {
                Ok(outcome) => outcome,
                Err(_) => Err(Error::Unavailable("live session is restarting; retry".into())),
            };
            let reply = outcome.map(|outcome| {
                if let Some((topic, event)) = outcome.then_publish {
                    // After this handler has answered: the caller's ack is woken first.
                    let bus = hub.services().bus.clone();
                    actix::spawn(async move { bus.publish(topic, event) });
                }
                // The user's nodes also hear of it on their topic; attaching here at once means
                // the reply is never followed by a missed event.
                match outcome.membership {
                    Some(Membership::Joined) => hub.attach_live(&user, session),
                    Some(Membership::Left) => hub.detach_live(&user, session),
                    None => {}
                }
                outcome.reply
            });
            hub.drop_live_if_idle(session);
            reply
        }))
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

// ---------------------------------------------------------------------------------------
// The session actor.

pub struct LiveActor {
    id: SessionId,
    services: Arc<Services>,
    /// The hub that started it, told when it closes.
    hub: Option<Addr<Hub>>,
    session: Known,
    local: HashMap<ConnectionId, (UserId, Outbox)>,
    /// How many of `local` each user has: who is in the session, as this node knows it.
    local_users: HashMap<UserId, usize>,
    /// Comments per user per second in this session, on this node.
    comments: Arc<DefaultKeyedRateLimiter<UserId>>,
    viewers: ViewerPushes,
    /// Joins waiting for the next batch, in arrival order.
    pending_joins: Vec<PendingJoin>,
    /// A batch of joins is running.
    joining: bool,
}

enum Known {
    Loading,
    Session {
        host: UserId,
        live: bool,
    },
    /// The session does not exist.
    Missing,
    /// The store failed; the next command retries.
    Failed,
}

/// The throttle of `live.viewers` pushes to the host's connections on this node.
#[derive(Default)]
struct ViewerPushes {
    /// The count last pushed, and when.
    last: Option<(i64, Instant)>,
    /// A read of the count is scheduled or running.
    busy: bool,
    /// The count changed again while a read was running: read once more after it.
    again: bool,
}

impl LiveActor {
    fn new(id: SessionId, services: Arc<Services>, hub: Option<Addr<Hub>>) -> Self {
        let rate = nonzero(services.settings.live_comment_rate);
        let burst = nonzero(services.settings.live_comment_rate.saturating_mul(2));
        let comments = Arc::new(RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)));
        Self {
            id,
            services,
            hub,
            session: Known::Loading,
            local: HashMap::new(),
            local_users: HashMap::new(),
            comments,
            viewers: ViewerPushes::default(),
            pending_joins: Vec::new(),
            joining: false,
        }
    }

    /// Loads the host and state; nothing is handled until they are known.
    fn load(&mut self, ctx: &mut Context<Self>) {
        self.session = Known::Loading;
        let (store, id) = (self.services.store.clone(), self.id);
        ctx.wait(async move { store.live_session(id).await }.into_actor(self).map(|loaded, actor, ctx| {
            actor.session = match loaded {
                Ok(Some(session)) => {
                    if !session.is_live() {
                        // Nothing will happen in it any more: no need to listen (a late
                        // "joined" may have started this actor).
                        if let Some(hub) = &actor.hub {
                            hub.do_send(LiveClosed { session: actor.id, actor: ctx.address() });
                        }
                    }
                    Known::Session { live: session.is_live(), host: session.host_id }
                }
                Ok(None) => Known::Missing,
                Err(e) => {
                    tracing::error!(session = %actor.id, error = %e, "loading a live session failed");
                    Known::Failed
                }
            }
        }));
    }

    fn fan_out(&self, push: Push, skip: Option<ConnectionId>) {
        let delivery = Arc::new(Delivery::new(push));
        for (connection, (_, outbox)) in &self.local {
            if Some(*connection) != skip {
                outbox.push(Outbound::Push(delivery.clone()));
            }
        }
    }

    fn has_local(&self, user: &UserId) -> bool {
        self.local_users.contains_key(user)
    }

    /// Reads the viewer count and pushes it to the host's connections here if it changed.
    fn push_viewers(&mut self, ctx: &mut Context<Self>) {
        self.viewers.again = false;
        let (store, id) = (self.services.store.clone(), self.id);
        ctx.spawn(async move { store.live_viewer_count(id).await }.into_actor(self).map(|count, actor, ctx| {
            match count {
                Ok(count) if actor.viewers.last.is_none_or(|(last, _)| last != count) => {
                    actor.viewers.last = Some((count, Instant::now()));
                    if let Known::Session { host, .. } = &actor.session {
                        let delivery =
                            Arc::new(Delivery::new(Push::LiveViewers { session_id: actor.id, viewers: count }));
                        for (user, outbox) in actor.local.values() {
                            if user == host {
                                outbox.push(Outbound::Push(delivery.clone()));
                            }
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(session = %actor.id, error = %e, "could not read the viewer count"),
            }
            actor.viewers.busy = false;
            if actor.viewers.again {
                actor.schedule_viewers(ctx);
            }
        }));
    }

    /// Leading edge at once, then at most one read per interval; changes meanwhile coalesce.
    fn schedule_viewers(&mut self, ctx: &mut Context<Self>) {
        if self.viewers.busy {
            self.viewers.again = true;
            return;
        }
        self.viewers.busy = true;
        let wait =
            self.viewers.last.map_or(Duration::ZERO, |(_, at)| VIEWERS_PUSH_INTERVAL.saturating_sub(at.elapsed()));
        ctx.run_later(wait, |actor, ctx| actor.push_viewers(ctx));
    }
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

impl Actor for LiveActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        self.load(ctx);
        ctx.run_interval(LIMITER_SWEEP, |actor, _| {
            actor.comments.retain_recent();
            actor.comments.shrink_to_fit();
        });
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Attach {
    user: UserId,
    outbox: Outbox,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Detach {
    connection: ConnectionId,
}

/// Nobody here is in the session any more, or it ended: stop.
#[derive(Message)]
#[rtype(result = "()")]
struct Close;

#[derive(Message)]
#[rtype(result = "()")]
struct ViewersChanged;

#[derive(Message)]
#[rtype(result = "Result<Outcome, Error>")]
struct Execute {
    caller: Caller,
    command: LiveCommand,
}

impl Handler<Attach> for LiveActor {
    type Result = ();
    fn handle(&mut self, msg: Attach, _: &mut Self::Context) {
        let connection = msg.outbox.connection;
        if !self.local.contains_key(&connection) {
            *self.local_users.entry(msg.user.clone()).or_default() += 1;
        }
        self.local.insert(connection, (msg.user, msg.outbox));
    }
}

impl Handler<Detach> for LiveActor {
    type Result = ();
    fn handle(&mut self, msg: Detach, _: &mut Self::Context) {
        let Some((user, _)) = self.local.remove(&msg.connection) else { return };
        if let Some(count) = self.local_users.get_mut(&user) {
            *count -= 1;
            if *count == 0 {
                self.local_users.remove(&user);
            }
        }
    }
}

impl Handler<Close> for LiveActor {
    type Result = ();
    fn handle(&mut self, _: Close, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<ViewersChanged> for LiveActor {
    type Result = ();
    fn handle(&mut self, _: ViewersChanged, ctx: &mut Self::Context) {
        self.schedule_viewers(ctx);
    }
}

impl Handler<Delivered> for LiveActor {
    type Result = ();
    fn handle(&mut self, msg: Delivered, ctx: &mut Self::Context) {
        let BusEvent::Push { push, skip } = &msg.envelope.event else { return };
        self.fan_out(push.clone(), *skip);
        if let Push::LiveEnded { .. } = push {
            if let Known::Session { live, .. } = &mut self.session {
                *live = false;
            }
            if let Some(hub) = &self.hub {
                hub.do_send(LiveClosed { session: self.id, actor: ctx.address() });
            }
        }
    }
}

impl Handler<Execute> for LiveActor {
    type Result = ResponseFuture<Result<Outcome, Error>>;

    fn handle(&mut self, msg: Execute, ctx: &mut Self::Context) -> Self::Result {
        let (host, live) = match &self.session {
            Known::Session { host, live } => (host.clone(), *live),
            Known::Missing => return Box::pin(async { Err(Error::not_found("no such live session")) }),
            Known::Loading | Known::Failed => {
                self.load(ctx);
                return Box::pin(async { Err(Error::Unavailable("live session is loading; retry".into())) });
            }
        };
        if let LiveCommand::Join { .. } = msg.command {
            return self.queue_join(msg.caller, ctx);
        }
        let cx = SessionCx { services: self.services.clone(), session: self.id, host, live, caller: msg.caller };
        match msg.command {
            LiveCommand::Comment { text, .. } => {
                // Checked here, in arrival order, so that the rate limit counts what was sent.
                let text = match CommentText::parse(text, self.services.settings.live_comment_max_chars) {
                    Ok(text) => text,
                    Err(err) => return Box::pin(async move { Err(err) }),
                };
                let limiter = self.comments.clone();
                if self.has_local(&cx.caller.user) {
                    let limited = limiter.check_key(&cx.caller.user).is_err();
                    Box::pin(async move { cx.comment(text, None, limited).await })
                } else {
                    Box::pin(async move { cx.comment(text, Some(limiter), false).await })
                }
            }
            command => Box::pin(async move { cx.run(command).await }),
        }
    }
}

/// A join waiting for its batch, and where its answer goes.
type PendingJoin = (Caller, oneshot::Sender<Result<Outcome, Error>>);

impl LiveActor {
    /// Queues a join; its answer once its batch has run.
    fn queue_join(&mut self, caller: Caller, ctx: &mut Context<Self>) -> ResponseFuture<Result<Outcome, Error>> {
        let (answer, answered) = oneshot::channel();
        self.pending_joins.push((caller, answer));
        if !self.joining {
            self.start_joins(ctx);
        }
        Box::pin(async move {
            answered.await.unwrap_or_else(|_| Err(Error::Unavailable("live session is restarting; retry".into())))
        })
    }

    /// Group commit of joins: one batch runs at a time. A join arriving while none runs starts
    /// one at once, alone; those arriving while a batch runs wait, and go together (up to
    /// `JOIN_BATCH_MAX`, the rest in the batches after) in the next, started as soon as the
    /// running one ends. A batch costs one block query and one transaction under the session
    /// row's lock, however many it joins.
    fn start_joins(&mut self, ctx: &mut Context<Self>) {
        let Known::Session { host, .. } = &self.session else {
            // Joins are queued only once the session is known; answered "retry" if ever not.
            self.pending_joins.clear();
            return;
        };
        if self.pending_joins.is_empty() {
            return;
        }
        let take = self.pending_joins.len().min(JOIN_BATCH_MAX);
        let batch: Vec<_> = self.pending_joins.drain(..take).collect();
        // A task of its own that answers the callers itself, so that stopping the actor (the
        // session ended) never cancels a transaction half way nor loses a committed answer.
        let running = actix::spawn(run_joins(self.services.clone(), self.id, host.clone(), batch));
        self.joining = true;
        ctx.spawn(running.into_actor(self).map(|_, actor, ctx| {
            actor.joining = false;
            actor.start_joins(ctx);
        }));
    }
}

/// Runs one batch of joins and answers each caller (who may have gone). A panic fails the
/// batch alone (`internal`, logged).
async fn run_joins(services: Arc<Services>, session: SessionId, host: UserId, batch: Vec<PendingJoin>) {
    let (callers, answers): (Vec<Caller>, Vec<_>) = batch.into_iter().unzip();
    let outcomes = AssertUnwindSafe(join_all(&services, session, &host, callers)).catch_unwind().await;
    let outcomes = outcomes.unwrap_or_else(|_| {
        tracing::error!(%session, joins = answers.len(), "a batch of live joins panicked; answered as internal errors");
        answers.iter().map(|_| Err(Error::Internal)).collect()
    });
    for (answer, outcome) in answers.into_iter().zip(outcomes) {
        let _ = answer.send(outcome);
    }
}
