//! Presence of a single node: the users connected here are all the users online.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;

use super::PresenceDirectory;
use crate::domain::{Error, UserId};

#[derive(Default)]
pub struct LocalPresence {
    online: Arc<Mutex<HashSet<UserId>>>,
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

    fn online_among(&self, users: Vec<UserId>) -> BoxFuture<'static, Result<HashSet<UserId>, Error>> {
        let online = self.online.lock().expect("presence lock");
        let found = users.into_iter().filter(|u| online.contains(u)).collect();
        Box::pin(async move { Ok(found) })
    }
}
