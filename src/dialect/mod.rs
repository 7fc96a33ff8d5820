//! Seed dialects: the three legacy Socket.IO APIs, translated at the edge into native commands and their replies and pushes back into the seeds' listener events.
//!
//! Each dialect is a table: an inbound event parses into native commands run as the
//! caller, and a native push maps to the listener event its app waits for. Nothing past
//! this module knows dialects exist; see docs/dialects.md for every choice made where a
//! seed is silent.

mod messenger;
mod rooms;
mod social;
mod values;

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::Value;

use crate::domain::{Call, CallId, CallState, Error, Media, Message, MessageKind, RequestKind, Room, RoomId, UserId};
use crate::service::{self, Caller, Services};
use crate::store::{HistoryQuery, Profile, RoomMembers};
pub use crate::wire::{Api, Dialect, Emit};
use crate::wire::{Command, PresenceState, Push, Reply};

/// Translates one inbound dialect event: the events to send back, the first being the
/// reply (what an ack carries).
pub async fn handle(dialect: Dialect, edge: &Edge, event: &str, data: Value) -> Result<Vec<Emit>, Error> {
    match dialect {
        Dialect::Social => social::handle(edge, event, data).await,
        Dialect::Messenger => messenger::handle(edge, event, data).await,
        Dialect::Rooms => rooms::handle(edge, event, data).await,
    }
}

/// The events a native push becomes in `dialect` (none when the seed has no such event). The
/// result does not depend on who receives it, so a delivery translates once per node.
pub async fn push(dialect: Dialect, lookup: &Lookup, push: &Push) -> Result<Vec<Emit>, Error> {
    if let Push::App { event, data } = push {
        // The app's own events reach its clients as sent, whatever API they speak.
        return Ok(vec![Emit::app(event.clone(), data.clone())]);
    }
    match dialect {
        Dialect::Social => social::push(lookup, push).await,
        Dialect::Messenger => messenger::push(lookup, push).await,
        Dialect::Rooms => rooms::push(lookup, push).await,
    }
}

/// What a translation can do: run native commands as the caller, and look up what the
/// seeds show beside them.
pub struct Edge {
    pub caller: Caller,
    pub lookup: Lookup,
}

impl Edge {
    pub fn new(services: Arc<Services>, caller: Caller) -> Self {
        Self { caller, lookup: Lookup { services } }
    }

    pub fn me(&self) -> &UserId {
        &self.caller.user
    }

    /// Identity comes from the token: a seed field naming the acting user must agree.
    pub fn must_be_me(&self, field: &str, claimed: &values::Loose) -> Result<(), Error> {
        if claimed.as_str() == self.me().as_str() {
            Ok(())
        } else {
            Err(Error::forbidden(format!("`{field}` must be the authenticated user")))
        }
    }

    /// Runs a native command as the caller, for its effect or through a room's or live
    /// session's actor (which answer the native reply).
    pub async fn run(&self, command: Command) -> Result<Reply, Error> {
        service::execute(self.lookup.services.clone(), self.caller.clone(), command).await
    }

    /// Runs one of `service`'s typed use cases; a panic inside it fails it alone, as in
    /// [`service::execute`].
    async fn ask<T>(&self, run: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
        service::contained(self.me().clone(), run).await
    }

    fn services(&self) -> &Services {
        &self.lookup.services
    }

    pub async fn direct_room(&self, peer: UserId) -> Result<Room, Error> {
        self.ask(service::rooms::open_direct(self.services(), &self.caller, peer)).await
    }

    pub async fn create_group(&self, name: String, members: Vec<UserId>) -> Result<Room, Error> {
        self.ask(service::rooms::create_group(self.services(), &self.caller, name, members)).await
    }

    pub async fn start_call(&self, room: RoomId, media: Media) -> Result<Call, Error> {
        self.ask(service::calls::start(self.services(), &self.caller, room, media)).await
    }

    pub async fn accept_call(&self, call: CallId) -> Result<Call, Error> {
        self.ask(service::calls::accept(self.services(), &self.caller, call)).await
    }

    pub async fn decline_call(&self, call: CallId) -> Result<Call, Error> {
        self.ask(service::calls::decline(self.services(), &self.caller, call)).await
    }

    pub async fn end_call(&self, call: CallId) -> Result<Call, Error> {
        self.ask(service::calls::end(self.services(), &self.caller, call)).await
    }

    /// Likes or unlikes `user`; the match's room when the like is mutual.
    pub async fn like(&self, user: UserId, like: bool) -> Result<Option<Room>, Error> {
        self.ask(service::social::set_like(self.services(), &self.caller, user, like)).await
    }

    /// Answers `from`'s pending request; the direct room an acceptance opened.
    pub async fn respond(&self, kind: RequestKind, from: UserId, accept: bool) -> Result<Option<Room>, Error> {
        self.ask(service::social::respond(self.services(), &self.caller, kind, from, accept)).await
    }

    /// Runs one of `service::messages`' typed room commands through the room's actor (which
    /// checks membership and, when `blocked_refuses`, blocks first); its result.
    /// `blocked_refuses` follows `messages::refused_when_blocked`: send and typing only.
    async fn in_room<T: Send + 'static>(
        &self,
        room: RoomId,
        blocked_refuses: bool,
        run: impl FnOnce(Arc<Services>, RoomId, Caller) -> BoxFuture<'static, Result<T, Error>> + Send + 'static,
    ) -> Result<T, Error> {
        self.ask(service::in_room(self.services(), self.caller.clone(), room, blocked_refuses, run)).await
    }

    pub async fn send(&self, room: RoomId, kind: MessageKind, body: String) -> Result<Message, Error> {
        self.in_room(room, true, move |services, room, caller| {
            service::messages::send(services, room, caller, kind, body, None)
        })
        .await
    }

    /// The newest page of the room's history, oldest first.
    pub async fn history(&self, room: RoomId) -> Result<Vec<Message>, Error> {
        let page = self
            .in_room(room, false, |services, room, caller| {
                service::messages::history(services, room, caller, HistoryQuery::Newest, crate::wire::MAX_PAGE)
            })
            .await?;
        Ok(page.messages)
    }

    /// Marks the room read up to its latest message; the mark now in force.
    pub async fn mark_read(&self, room: RoomId) -> Result<i64, Error> {
        self.in_room(room, false, |services, room, caller| service::messages::mark_read(services, room, caller, None))
            .await
    }

    /// The ringing or active call in `room`, if any (members only, as `call.history`).
    pub async fn current_call(&self, room: RoomId) -> Result<Option<Call>, Error> {
        let calls = self.ask(service::calls::history(self.services(), &self.caller, room, 5)).await?;
        Ok(calls.into_iter().find(|call| call.state != CallState::Ended))
    }

    /// The presence of `users` as the caller may see it (a block either way hides it).
    pub async fn presence(&self, users: Vec<UserId>) -> Result<HashMap<UserId, PresenceState>, Error> {
        let states = self.ask(service::rooms::presence_seen_by(self.services(), &self.caller, users)).await?;
        Ok(states.into_iter().map(|state| (state.user_id.clone(), state)).collect())
    }

    pub async fn rooms(&self) -> Result<Vec<Room>, Error> {
        self.ask(service::rooms::list(self.services(), &self.caller, crate::wire::MAX_PAGE, None)).await
    }
}

/// Read-only facts the seeds show beside the native objects: names and avatars, numeric
/// room ids, direct peers, presence.
pub struct Lookup {
    services: Arc<Services>,
}

impl Lookup {
    pub fn new(services: Arc<Services>) -> Self {
        Self { services }
    }

    pub async fn profiles(&self, users: &[&UserId]) -> Result<HashMap<UserId, Profile>, Error> {
        let users: Vec<UserId> = users.iter().map(|u| (*u).clone()).collect();
        Ok(self.services.store.profiles(&users).await?)
    }

    pub async fn room(&self, room: RoomId) -> Result<RoomMembers, Error> {
        self.services.store.room_members(room).await?.ok_or_else(|| Error::not_found("no such room"))
    }

    /// Whether there is a block between `a` and `b`, either way.
    pub async fn blocked_between(&self, a: &UserId, b: &UserId) -> Result<bool, Error> {
        Ok(self.services.store.blocked_between(a, b).await?)
    }

    /// The direct room of a pair, if they have one (never creates it).
    pub async fn direct_room(&self, a: &UserId, b: &UserId) -> Result<Option<RoomId>, Error> {
        Ok(self.services.store.find_direct_room(a, b).await?)
    }

    pub async fn live_session(
        &self,
        session: crate::domain::SessionId,
    ) -> Result<Option<crate::domain::LiveSession>, Error> {
        Ok(self.services.store.live_session(session).await?)
    }

    /// A live session `host` hosts, if any (the newest found).
    pub async fn hosted_live_session(&self, host: &UserId) -> Result<Option<crate::domain::LiveSession>, Error> {
        let hosted = self.services.store.live_sessions_of(host).await?;
        match hosted.into_iter().filter(|(_, hosting)| *hosting).map(|(id, _)| id).max() {
            Some(id) => Ok(self.services.store.live_session(id).await?),
            None => Ok(None),
        }
    }

    pub async fn read_marks(&self, room: RoomId) -> Result<HashMap<UserId, i64>, Error> {
        Ok(self.services.store.read_marks(room).await?)
    }
}

/// The other member of a direct room (`None` for groups).
pub fn peer_of(room: &RoomMembers, user: &UserId) -> Option<UserId> {
    crate::domain::direct_peer(room.kind, &room.members, user).cloned()
}
