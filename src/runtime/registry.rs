//! This node's connections by user, for what reaches one user's connections from outside
//! their rooms: revocations and kicks. A connection is listed from its registration to its
//! end; routing pushes stays the hub's.

use std::collections::HashMap;
use std::sync::Mutex;

use actix::prelude::*;
use actix_ws::CloseCode;

use crate::domain::{ConnectionId, Timestamp, UserId};

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

#[derive(Default)]
pub struct ConnectionRegistry {
    users: Mutex<HashMap<UserId, HashMap<ConnectionId, Recipient<Kick>>>>,
}

impl ConnectionRegistry {
    pub fn insert(&self, user: UserId, connection: ConnectionId, actor: Recipient<Kick>) {
        self.lock().entry(user).or_default().insert(connection, actor);
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

    /// Sends `kick` to every connection of `user` here; how many it reached.
    pub fn kick(&self, user: &UserId, kick: &Kick) -> usize {
        let users = self.lock();
        let Some(connections) = users.get(user) else { return 0 };
        for actor in connections.values() {
            actor.do_send(kick.clone());
        }
        connections.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, HashMap<ConnectionId, Recipient<Kick>>>> {
        self.users.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
