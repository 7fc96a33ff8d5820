//! A live session's commands, started by the session's actor on the caller's node
//! (`runtime::live`): joining (a batch of callers at a time) and leaving, comments, raised
//! hands, invites, the end.

use std::collections::HashSet;
use std::sync::Arc;

use governor::DefaultKeyedRateLimiter;

use super::live::end_session;
use super::{Caller, Services, blocks};
use crate::bus::{BusEvent, Topic};
use crate::domain::{CommentText, Error, LiveEndReason, LiveSession, SessionId, UserId};
use crate::wire::{LiveCommand, Push, Reply};

/// What a command changed about the caller's place in the session, for the hub.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Membership {
    Joined,
    Left,
}

pub(crate) struct Outcome {
    pub(crate) reply: Reply,
    pub(crate) membership: Option<Membership>,
    /// Published by the caller's node once the reply is on its way to the caller: the ack of a
    /// stored comment must not queue behind its fan-out to a crowd on the same node.
    pub(crate) then_publish: Option<(Topic, BusEvent)>,
}

impl From<Reply> for Outcome {
    fn from(reply: Reply) -> Self {
        Self { reply, membership: None, then_publish: None }
    }
}

/// One command's view of its session.
pub(crate) struct SessionCx {
    pub(crate) services: Arc<Services>,
    pub(crate) session: SessionId,
    pub(crate) host: UserId,
    /// As last known on this node; the store has the final word where it matters.
    pub(crate) live: bool,
    pub(crate) caller: Caller,
}

impl SessionCx {
    fn is_host(&self) -> bool {
        self.caller.user == self.host
    }

    fn host_only(&self, what: &str) -> Result<(), Error> {
        if self.is_host() { Ok(()) } else { Err(Error::forbidden(format!("only the host may {what}"))) }
    }

    fn still_live(&self) -> Result<(), Error> {
        if self.live { Ok(()) } else { Err(ended()) }
    }

    /// The host or a viewer who joined.
    async fn in_session(&self) -> Result<(), Error> {
        if self.is_host() || self.services.store.is_live_viewer(self.session, &self.caller.user).await? {
            Ok(())
        } else {
            Err(Error::forbidden("join the live session first"))
        }
    }

    /// Pushes to everyone in the session (on every node), except the calling connection.
    fn to_session(&self, push: Push) {
        let (topic, event) = self.session_push(push);
        self.services.bus.publish(topic, event);
    }

    /// What `to_session` publishes.
    fn session_push(&self, push: Push) -> (Topic, BusEvent) {
        (Topic::Live(self.session), BusEvent::Push { push, skip: Some(self.caller.connection) })
    }

    /// Pushes to every connection of `user`, except the calling connection.
    fn to_user(&self, user: &UserId, push: Push) {
        let event = BusEvent::Push { push, skip: Some(self.caller.connection) };
        self.services.bus.publish(Topic::User(user.clone()), event);
    }

    /// `limiter` is given when the rate is still to be checked (after the membership check).
    pub(crate) async fn comment(
        self,
        text: CommentText,
        limiter: Option<Arc<DefaultKeyedRateLimiter<UserId>>>,
        limited: bool,
    ) -> Result<Outcome, Error> {
        self.still_live()?;
        if let Some(limiter) = limiter {
            self.in_session().await?;
            if limiter.check_key(&self.caller.user).is_err() {
                return Err(Error::RateLimited);
            }
        } else if limited {
            return Err(Error::RateLimited);
        }
        let Some(comment) = self.services.store.add_live_comment(self.session, &self.caller.user, &text).await? else {
            return Err(Error::forbidden("join the live session first"));
        };
        let then_publish = Some(self.session_push(Push::LiveComment(comment)));
        Ok(Outcome { reply: Reply::Done, membership: None, then_publish })
    }

    pub(crate) async fn run(self, command: LiveCommand) -> Result<Outcome, Error> {
        let store = &self.services.store;
        match command {
            LiveCommand::Leave { .. } => self.leave().await,
            LiveCommand::Comments { before, limit, .. } => {
                self.in_session().await?;
                let (comments, has_more) = store.live_comments(self.session, before.as_deref(), limit).await?;
                Ok(Reply::LiveComments { comments, has_more }.into())
            }
            LiveCommand::RaiseHand { .. } => self.raise_hand().await,
            LiveCommand::LowerHand { user, .. } => self.lower_hand(user).await,
            LiveCommand::AcceptHand { user, .. } => {
                self.host_only("accept a hand")?;
                self.still_live()?;
                if !store.take_hand(self.session, &user).await? {
                    return Err(Error::not_found(format!("{user} has no raised hand")));
                }
                self.to_session(Push::LiveHandAccepted { session_id: self.session, user_id: user });
                Ok(Reply::Done.into())
            }
            LiveCommand::Hands { .. } => {
                self.host_only("list raised hands")?;
                let hands = store.raised_hands(self.session).await?;
                Ok(Reply::LiveHands { session_id: self.session, hands }.into())
            }
            LiveCommand::Invite { user, .. } => self.invite(user).await,
            LiveCommand::End { .. } => {
                self.host_only("end the session")?;
                let ended =
                    end_session(&self.services, self.session, LiveEndReason::HostEnded, Some(self.caller.connection))
                        .await?
                        .ok_or_else(not_found)?;
                Ok(Reply::LiveSession { session: ended }.into())
            }
            // Started elsewhere: creating needs no session, comments and joins are run by the actor.
            LiveCommand::Create { .. } | LiveCommand::Comment { .. } | LiveCommand::Join { .. } => Err(Error::Internal),
        }
    }

    async fn leave(self) -> Result<Outcome, Error> {
        let (store, me) = (&self.services.store, &self.caller.user);
        if self.is_host() {
            return Err(Error::bad_request("the host ends the session with live.end"));
        }
        let (session, left) = store.leave_live(self.session, me).await?.ok_or_else(not_found)?;
        if left {
            self.services.bus.publish(Topic::User(me.clone()), BusEvent::LeftLive { session_id: self.session });
            viewers_changed(&self.services, self.session, &self.host);
        }
        Ok(Outcome { reply: Reply::LiveSession { session }, membership: Some(Membership::Left), then_publish: None })
    }

    async fn raise_hand(self) -> Result<Outcome, Error> {
        let (store, me) = (&self.services.store, &self.caller.user);
        if self.is_host() {
            return Err(Error::bad_request("the host does not raise a hand"));
        }
        self.still_live()?;
        self.in_session().await?;
        if store.raise_hand(self.session, me).await? {
            let push = Push::LiveHandRaised { session_id: self.session, user_id: me.clone() };
            self.to_user(&self.host, push);
        }
        Ok(Reply::Done.into())
    }

    async fn lower_hand(self, user: Option<UserId>) -> Result<Outcome, Error> {
        let (store, me) = (&self.services.store, &self.caller.user);
        let whose = user.unwrap_or_else(|| me.clone());
        if whose != *me {
            self.host_only("lower another user's hand")?;
        }
        if store.take_hand(self.session, &whose).await? {
            let push = Push::LiveHandLowered { session_id: self.session, user_id: whose.clone() };
            self.to_user(&self.host, push.clone());
            if whose != self.host {
                self.to_user(&whose, push);
            }
        }
        Ok(Reply::Done.into())
    }

    async fn invite(self, user: UserId) -> Result<Outcome, Error> {
        let store = &self.services.store;
        self.host_only("invite")?;
        if user == self.host {
            return Err(Error::bad_request("that is you"));
        }
        blocks::not_blocked(&self.services, &self.host, &user).await?;
        let session = store.live_session(self.session).await?.ok_or_else(not_found)?;
        if !session.is_live() {
            return Err(ended());
        }
        let event = BusEvent::Push { push: Push::LiveInvited { session }, skip: None };
        self.services.bus.publish(Topic::User(user), event);
        Ok(Reply::Done.into())
    }
}

/// The most callers `join_all` takes at once: a batch holds the session row's lock while it
/// writes, and its block check binds each user twice (SQLite allows 32,766 binds a statement).
pub(crate) const JOIN_BATCH_MAX: usize = 500;

/// Joins a batch of callers (at most `JOIN_BATCH_MAX`) to the session; their answers, in
/// their order. One transaction counts them (`Store::join_live_many`), refusing a caller
/// blocked by the host, or who blocked the host, as `blocks::not_blocked` refuses. The host
/// joining their own session is answered and not counted. A store failure fails every caller
/// of the batch.
pub(crate) async fn join_all(
    services: &Arc<Services>,
    session: SessionId,
    host: &UserId,
    callers: Vec<Caller>,
) -> Vec<Result<Outcome, Error>> {
    let users: Vec<UserId> = callers.iter().map(|caller| caller.user.clone()).collect();
    let (session, blocked) = match count_viewers(services, session, host, &users).await {
        Ok(counted) => counted,
        Err(err) => return callers.iter().map(|_| Err(err.clone())).collect(),
    };
    callers
        .iter()
        .map(|caller| {
            if blocked.contains(&caller.user) {
                return Err(Error::blocked());
            }
            let session = session.clone();
            Ok(Outcome {
                reply: Reply::LiveSession { session },
                membership: Some(Membership::Joined),
                then_publish: None,
            })
        })
        .collect()
}

/// Counts `users` as viewers in one transaction; each newly counted user's nodes start
/// listening, and the host's nodes hear once that the count changed. The session as it then
/// is, and the users refused for a block.
async fn count_viewers(
    services: &Services,
    session: SessionId,
    host: &UserId,
    users: &[UserId],
) -> Result<(LiveSession, HashSet<UserId>), Error> {
    let joins = services.store.join_live_many(session, users).await?.ok_or_else(not_found)?;
    if !joins.session.is_live() {
        return Err(ended());
    }
    for user in &joins.joined {
        services.bus.publish(Topic::User(user.clone()), BusEvent::JoinedLive { session_id: session });
    }
    if !joins.joined.is_empty() {
        viewers_changed(services, session, host);
    }
    Ok((joins.session, joins.blocked))
}

/// Tells the host's nodes that the viewer count may have changed.
fn viewers_changed(services: &Services, session: SessionId, host: &UserId) {
    services.bus.publish(Topic::User(host.clone()), BusEvent::LiveViewersChanged { session_id: session });
}

fn not_found() -> Error {
    Error::not_found("no such live session")
}

fn ended() -> Error {
    Error::Conflict("the live session has ended".into())
}
