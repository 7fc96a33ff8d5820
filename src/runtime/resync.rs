//! What a user topic's lost events said, read again. When the bus may have lost events on a
//! user's topic (Redis was unreachable, or a publish was given up: `BusEvent::Resumed` on it),
//! the hub reads that user's rooms and live sessions from the store and applies the
//! difference: rooms joined or left and sessions joined or left while the link was down.
//! Users told together are read together, a few hundred per query.
//!
//! A read races the events that arrive while it runs: a user whose rooms or sessions changed
//! here after the read began is left as they are and read again, so a stale read never undoes
//! a newer event.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use actix::prelude::*;

use super::Hub;
use crate::domain::{RoomId, SessionId, UserId};
use crate::store::StoreResult;

/// Users read per round of queries.
const BATCH: usize = 500;
/// How long the hub gathers users owed a read before reading: a lost link tells every user
/// topic at once. Multiplied by ten for each failed attempt.
const GATHER: Duration = Duration::from_millis(50);
/// Reads of one user before giving up (the store failing, or the user's rooms changing under
/// every read).
const ATTEMPTS: u32 = 4;

/// The users owed a read, each with the attempts made so far; whether a read is running.
#[derive(Default)]
pub(super) struct Resyncs {
    waiting: HashMap<UserId, u32>,
    running: bool,
}

/// A user read: who, when their rooms or sessions last changed here as the read began
/// (`LocalUser::changed`), and the attempt.
type Reading = (UserId, u64, u32);

/// A batch's rooms, and live sessions (`true` for those hosted), by user.
type Found = (HashMap<UserId, Vec<RoomId>>, HashMap<UserId, Vec<(SessionId, bool)>>);

/// The store's answer for a batch of users read.
#[derive(Message)]
#[rtype(result = "()")]
struct Read {
    users: Vec<Reading>,
    found: StoreResult<Found>,
}

/// Every batch of a read has been answered.
#[derive(Message)]
#[rtype(result = "()")]
struct ReadDone;

impl Hub {
    /// `user`'s topic may have lost events: read their rooms and sessions again, with every
    /// other user owed a read meanwhile.
    pub(super) fn resync(&mut self, user: &UserId, ctx: &mut Context<Self>) {
        if self.users.contains_key(user) {
            self.resyncs.waiting.entry(user.clone()).or_insert(0);
            self.read_soon(ctx);
        }
    }

    fn read_soon(&mut self, ctx: &mut Context<Self>) {
        if self.resyncs.running || self.resyncs.waiting.is_empty() {
            return;
        }
        self.resyncs.running = true;
        let tries = self.resyncs.waiting.values().copied().min().unwrap_or(0);
        ctx.run_later(GATHER * 10u32.saturating_pow(tries), |hub, ctx| hub.read(ctx));
    }

    /// Reads every user owed a read, a batch at a time.
    fn read(&mut self, ctx: &mut Context<Self>) {
        let waiting = std::mem::take(&mut self.resyncs.waiting);
        let users: Vec<Reading> = waiting
            .into_iter()
            .filter_map(|(user, attempt)| {
                let changed = self.users.get(&user)?.changed;
                Some((user, changed, attempt))
            })
            .collect();
        let store = self.services().store.clone();
        let hub = ctx.address();
        actix::spawn(async move {
            for batch in users.chunks(BATCH) {
                let ids: Vec<UserId> = batch.iter().map(|(user, ..)| user.clone()).collect();
                let found = async { Ok((store.rooms_of_many(&ids).await?, store.live_sessions_of_many(&ids).await?)) };
                hub.do_send(Read { users: batch.to_vec(), found: found.await });
            }
            hub.do_send(ReadDone);
        });
    }

    /// Owes `user` another read, unless they have had their attempts.
    fn read_again(&mut self, user: UserId, attempt: u32) {
        if attempt + 1 < ATTEMPTS {
            self.resyncs.waiting.entry(user).or_insert(attempt + 1);
        } else {
            tracing::warn!(%user, "could not read a user's rooms again after lost bus events; they catch up on reconnect");
        }
    }

    /// Makes the user's rooms and live sessions here those the store lists.
    fn settle(&mut self, user: &UserId, rooms: HashSet<RoomId>, sessions: HashSet<SessionId>) {
        let Some(local) = self.users.get(user) else { return };
        let left: Vec<RoomId> = local.rooms.difference(&rooms).copied().collect();
        let joined: Vec<RoomId> = rooms.difference(&local.rooms).copied().collect();
        for room in left {
            self.detach_user(user, room);
        }
        for room in joined {
            self.attach_user(user, room);
        }
        let watching = self.live_sessions_here(user);
        for &session in watching.difference(&sessions) {
            self.detach_live(user, session);
        }
        for &session in sessions.difference(&watching) {
            self.attach_live(user, session);
        }
    }
}

impl Handler<Read> for Hub {
    type Result = ();

    fn handle(&mut self, msg: Read, _: &mut Self::Context) {
        let (mut rooms, mut live) = match msg.found {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, users = msg.users.len(), "could not read users' rooms after lost bus events");
                for (user, _, attempt) in msg.users {
                    self.read_again(user, attempt);
                }
                return;
            }
        };
        for (user, changed, attempt) in msg.users {
            match self.users.get(&user) {
                None => {}
                Some(local) if local.changed != changed => self.read_again(user, attempt),
                Some(_) => {
                    let rooms = rooms.remove(&user).unwrap_or_default().into_iter().collect();
                    let sessions = live.remove(&user).unwrap_or_default().into_iter().map(|(id, _)| id).collect();
                    self.settle(&user, rooms, sessions);
                }
            }
        }
    }
}

impl Handler<ReadDone> for Hub {
    type Result = ();

    fn handle(&mut self, _: ReadDone, ctx: &mut Self::Context) {
        self.resyncs.running = false;
        self.read_soon(ctx);
    }
}
