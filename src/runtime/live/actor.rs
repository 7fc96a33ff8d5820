//! A live session's actor on this node: its local connections and their fan-out, its
//! commands (joins in batches, comments rate-limited in arrival order), and the viewer count
//! pushed to the host's connections here.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::FutureExt;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::oneshot;

use super::{LiveClosed, VIEWERS_PUSH_INTERVAL};
use crate::bus::{BusEvent, Delivered};
use crate::domain::{CommentText, ConnectionId, Error, SessionId, UserId};
use crate::runtime::{Hub, Outbound, Outbox};
use crate::service::live_session::{JOIN_BATCH_MAX, Outcome, SessionCx, join_all};
use crate::service::{Caller, Services};
use crate::wire::{Delivery, LiveCommand, Push};

/// How often the comment rate limiter forgets users who stopped commenting.
const LIMITER_SWEEP: Duration = Duration::from_secs(60);

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
    pub(super) fn new(id: SessionId, services: Arc<Services>, hub: Option<Addr<Hub>>) -> Self {
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
pub(super) struct Attach {
    pub(super) user: UserId,
    pub(super) outbox: Outbox,
}

#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Detach {
    pub(super) connection: ConnectionId,
}

/// Nobody here is in the session any more, or it ended: stop.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Close;

#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct ViewersChanged;

#[derive(Message)]
#[rtype(result = "Result<Outcome, Error>")]
pub(super) struct Execute {
    pub(super) caller: Caller,
    pub(super) command: LiveCommand,
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
    /// running one ends. A batch costs one transaction under the session row's lock (blocks
    /// read in it), however many it joins.
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
