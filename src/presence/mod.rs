//! Who is online. The hub reports a user's first and last connection on its node; the
//! directory answers whether that changed the user's state cluster-wide, and which users
//! are online anywhere. One node keeps it in memory; a cluster keeps it in Redis.

mod local;
mod redis;

use std::collections::HashSet;

use futures_util::future::BoxFuture;

use crate::domain::{Error, NodeId, UserId};

pub use local::LocalPresence;
pub use redis::RedisPresence;

/// What cluster presence learns by itself, for the hub to announce: a user who went offline
/// with a node that died, or a user of this node who is back after the other nodes took it for
/// dead (it was frozen or cut off from Redis past its TTL, with the user still connected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresenceNews {
    WentOffline(UserId),
    CameBack(UserId),
}

pub trait PresenceDirectory: Send + Sync + 'static {
    /// The user's first connection on this node opened; true if they were offline everywhere.
    fn connected(&self, user: UserId) -> BoxFuture<'static, bool>;
    /// The user's last connection on this node closed; true if they are now offline everywhere.
    fn disconnected(&self, user: UserId) -> BoxFuture<'static, bool>;
    /// Counts a connection of `user` on this node unless they already hold `cap` connections
    /// across the cluster: true if counted, false if refused.
    fn admit(&self, user: UserId, cap: usize) -> BoxFuture<'static, Result<bool, Error>>;
    /// A connection counted by `admit` closed.
    fn release(&self, user: UserId) -> BoxFuture<'static, ()>;
    /// Which of `users` are online on any node.
    fn online_among(&self, users: Vec<UserId>) -> BoxFuture<'static, Result<HashSet<UserId>, Error>>;

    /// The other live nodes that hold connections of `user` (none on a single node).
    fn other_nodes_holding(&self, _user: UserId) -> BoxFuture<'static, Result<Vec<NodeId>, Error>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// The node is going away (after its drain): stop vouching for its users, so that the
    /// other nodes reap the ones who did not reconnect elsewhere.
    fn retire(&self) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}
