//! This node's connections by user, for what reaches one user's connections from outside
//! their rooms: revocations, kicks and the server API's listing. A connection is listed from
//! its registration to its end; routing pushes stays the hub's.

use std::collections::HashMap;
use std::sync::Mutex;

use actix::prelude::*;
use actix_ws::CloseCode;

use crate::domain::{ConnectionId, ConnectionInfo, NodeId, Timestamp, UserId};
use crate::wire::{Api, Framing};

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

/// One listed connection: what `of` reports, kept without the strings it repeats (its user is
/// the key, its node this registry's).
struct Entry {
    connection: ConnectionId,
    actor: Recipient<Kick>,
    api: Api,
    framing: Framing,
    connected_at: Timestamp,
    token_expires_at: Timestamp,
    issued_at: Option<Timestamp>,
}

/// A connection as it lists itself once authenticated.
pub struct Listing {
    pub connection: ConnectionId,
    pub user: UserId,
    pub api: Api,
    pub framing: Framing,
    pub token_expires_at: Timestamp,
    /// The token's `iat`.
    pub issued_at: Option<Timestamp>,
}

/// A user's connections here are few: a vector, not a map, so an idle user costs one small
/// allocation.
#[derive(Default)]
pub struct ConnectionRegistry {
    users: Mutex<HashMap<UserId, Vec<Entry>>>,
}

impl ConnectionRegistry {
    /// Lists a connection, connected now.
    pub fn insert(&self, listing: Listing, actor: Recipient<Kick>) {
        let Listing { connection, user, api, framing, token_expires_at, issued_at } = listing;
        let entry =
            Entry { connection, actor, api, framing, connected_at: Timestamp::now(), token_expires_at, issued_at };
        self.lock().entry(user).or_default().push(entry);
    }

    /// The connection took a fresh token.
    pub fn refreshed(
        &self,
        user: &UserId,
        connection: ConnectionId,
        expires_at: Timestamp,
        issued_at: Option<Timestamp>,
    ) {
        let mut users = self.lock();
        let Some(entries) = users.get_mut(user) else { return };
        if let Some(entry) = entries.iter_mut().find(|entry| entry.connection == connection) {
            entry.token_expires_at = expires_at;
            entry.issued_at = issued_at;
        }
    }

    pub fn remove(&self, user: &UserId, connection: ConnectionId) {
        let mut users = self.lock();
        if let Some(entries) = users.get_mut(user) {
            entries.retain(|entry| entry.connection != connection);
            if entries.is_empty() {
                users.remove(user);
            }
        }
    }

    /// Sends `kick` to every connection of `user` here that it covers; how many it reached.
    pub fn kick(&self, user: &UserId, kick: &Kick) -> usize {
        let users = self.lock();
        let Some(connections) = users.get(user) else { return 0 };
        let covered = connections.iter().filter(|entry| match kick.issued_before {
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

    /// `user`'s connections here (on `node`, this registry's), oldest first.
    pub fn of(&self, user: &UserId, node: &NodeId) -> Vec<ConnectionInfo> {
        let users = self.lock();
        let mut found: Vec<ConnectionInfo> = users
            .get(user)
            .into_iter()
            .flatten()
            .map(|entry| ConnectionInfo {
                connection_id: entry.connection,
                user_id: user.clone(),
                node: node.clone(),
                api: entry.api.as_str().to_owned(),
                framing: entry.framing.name().to_owned(),
                connected_at: entry.connected_at,
                token_expires_at: entry.token_expires_at,
            })
            .collect();
        found.sort_by_key(|info| info.connected_at);
        found
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, Vec<Entry>>> {
        self.users.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
