//! This node's connections by user, for what reaches one user's connections from outside
//! their rooms: revocations, kicks and the server API's listing. A connection is listed from
//! its registration to its end; routing pushes stays the hub's.

use std::collections::HashMap;
use std::sync::Mutex;

use actix::prelude::*;
use actix_ws::CloseCode;

use crate::domain::{ConnectionId, ConnectionInfo, Timestamp, UserId};

/// Asks a connection to close.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Kick {
    pub code: CloseCode,
    pub reason: &'static str,
    /// Only a connection whose token was issued before this (or carries no `iat`); `None`
    /// closes it whatever its token.
    pub issued_before: Option<Timestamp>,
}

struct Entry {
    actor: Recipient<Kick>,
    info: ConnectionInfo,
    issued_at: Option<Timestamp>,
}

#[derive(Default)]
pub struct ConnectionRegistry {
    users: Mutex<HashMap<UserId, HashMap<ConnectionId, Entry>>>,
}

impl ConnectionRegistry {
    /// Lists a connection; `issued_at` is its token's `iat`.
    pub fn insert(&self, info: ConnectionInfo, issued_at: Option<Timestamp>, actor: Recipient<Kick>) {
        let entry = Entry { actor, info, issued_at };
        self.lock().entry(entry.info.user_id.clone()).or_default().insert(entry.info.connection_id, entry);
    }

    /// The connection took a fresh token.
    pub fn refreshed(
        &self,
        user: &UserId,
        connection: ConnectionId,
        expires_at: Timestamp,
        issued_at: Option<Timestamp>,
    ) {
        if let Some(entry) = self.lock().get_mut(user).and_then(|connections| connections.get_mut(&connection)) {
            entry.info.token_expires_at = expires_at;
            entry.issued_at = issued_at;
        }
    }

    pub fn remove(&self, user: &UserId, connection: ConnectionId) {
        let mut users = self.lock();
        if let Some(connections) = users.get_mut(user) {
            connections.remove(&connection);
            if connections.is_empty() {
                users.remove(user);
            }
        }
    }

    /// Sends `kick` to every connection of `user` here that it covers; how many it reached.
    pub fn kick(&self, user: &UserId, kick: &Kick) -> usize {
        let users = self.lock();
        let Some(connections) = users.get(user) else { return 0 };
        let covered = connections.values().filter(|entry| match kick.issued_before {
            None => true,
            Some(before) => entry.issued_at.is_none_or(|issued| issued < before),
        });
        let mut reached = 0;
        for entry in covered {
            entry.actor.do_send(kick.clone());
            reached += 1;
        }
        reached
    }

    /// `user`'s connections here, oldest first.
    pub fn of(&self, user: &UserId) -> Vec<ConnectionInfo> {
        let users = self.lock();
        let mut found: Vec<ConnectionInfo> = users
            .get(user)
            .map(|connections| connections.values().map(|e| e.info.clone()).collect())
            .unwrap_or_default();
        found.sort_by_key(|info| info.connected_at);
        found
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, HashMap<ConnectionId, Entry>>> {
        self.users.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
