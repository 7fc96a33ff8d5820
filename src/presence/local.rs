//! Presence of a single node: the users connected here are all the users online.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;

use super::PresenceDirectory;
use crate::domain::{Error, UserId};

#[derive(Default)]
pub struct LocalPresence {
    online: Arc<Mutex<HashSet<UserId>>>,
    /// Connections per user, for the per-user cap.
    connections: Mutex<HashMap<UserId, usize>>,
}

impl PresenceDirectory for LocalPresence {
    fn connected(&self, user: UserId) -> BoxFuture<'static, bool> {
        let changed = self.online.lock().expect("presence lock").insert(user);
        Box::pin(async move { changed })
    }

    fn disconnected(&self, user: UserId) -> BoxFuture<'static, bool> {
        let changed = self.online.lock().expect("presence lock").remove(&user);
        Box::pin(async move { changed })
    }

    fn admit(&self, user: UserId, cap: usize) -> BoxFuture<'static, Result<bool, Error>> {
        let mut connections = self.connections.lock().expect("presence lock");
        let held = connections.entry(user).or_default();
        let admitted = *held < cap;
        if admitted {
            *held += 1;
        }
        Box::pin(async move { Ok(admitted) })
    }

    fn release(&self, user: UserId) -> BoxFuture<'static, ()> {
        let mut connections = self.connections.lock().expect("presence lock");
        if let Some(held) = connections.get_mut(&user) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                connections.remove(&user);
            }
        }
        Box::pin(async {})
    }

    fn online_among(&self, users: Vec<UserId>) -> BoxFuture<'static, Result<HashSet<UserId>, Error>> {
        let online = self.online.lock().expect("presence lock");
        let found = users.into_iter().filter(|u| online.contains(u)).collect();
        Box::pin(async move { Ok(found) })
    }
}
