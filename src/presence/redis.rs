//! Cluster presence in Redis. Each node keeps a heartbeat key with a TTL and the set of
//! users connected to it; each user has the set of nodes they are connected to. A user is
//! online when any node in their set still has a heartbeat.
//!
//! Keys (`P` is the configured prefix), hash-tagged so that what one command touches lives in
//! one slot of a Redis Cluster: `{P}:nodes` (every node), `{P}:node:N` (heartbeat, expires
//! after the node TTL), `{P}:reap:N`, `P:node-users:{N}`, `P:user:{U}` (nodes holding U),
//! `P:conns:{U}` (a hash of node to the number of U's connections there, for the per-user
//! cap; a node found dead on the last heartbeat does not count).
//!
//! Every node looks for dead nodes on each heartbeat; the first to claim a dead node
//! (`P:reap:N`, SET NX) removes it from its users' sets and reports the users who went
//! offline with it, so that their peers are told once. A node also clears what an earlier
//! run under its own name left behind when it starts.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::{AsyncCommands, Cmd, FromRedisValue, RedisResult, Value};
use tokio::sync::mpsc;

use super::{PresenceDirectory, PresenceNews};
use crate::domain::{Error, NodeId, UserId};
use crate::redis_link::Commands;

pub struct RedisPresence {
    keys: Keys,
    redis: Commands,
    /// The other nodes in the node set at the last look (refreshed every beat): those of them
    /// without a heartbeat when a user connects no longer count toward the user's cap.
    others: Mutex<Vec<String>>,
    /// Set when the node retires: the heartbeat stops.
    retired: std::sync::atomic::AtomicBool,
    /// Users connected here: re-asserted after a Redis outage.
    local: Mutex<HashSet<UserId>>,
    /// Connections each user holds here as counted by `admit`: restored when this node finds
    /// the others reaped it (which drops its counts).
    seats: Mutex<HashMap<UserId, i64>>,
}

#[derive(Clone)]
struct Keys {
    prefix: String,
    node: String,
}

impl Keys {
    fn nodes(&self) -> String {
        format!("{{{}}}:nodes", self.prefix)
    }
    fn heartbeat(&self, node: &str) -> String {
        format!("{{{}}}:node:{node}", self.prefix)
    }
    fn reap(&self, node: &str) -> String {
        format!("{{{}}}:reap:{node}", self.prefix)
    }
    fn node_users(&self, node: &str) -> String {
        format!("{}:node-users:{{{node}}}", self.prefix)
    }
    fn user(&self, user: &str) -> String {
        format!("{}:user:{{{user}}}", self.prefix)
    }
    fn connections(&self, user: &str) -> String {
        format!("{}:conns:{{{user}}}", self.prefix)
    }
}

/// Counts one more connection of a user on node `ARGV[1]` unless the other nodes already hold
/// `ARGV[2]` of them; drops the counts of the dead nodes `ARGV[3…]` met on the way. 1 if
/// counted, 0 if refused. (It touches only `KEYS[1]`, as a cluster requires.)
static ADMIT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(ADMIT_LUA));
const ADMIT_LUA: &str = r"
local dead = {}
for i = 3, #ARGV do dead[ARGV[i]] = true end
local counts = redis.call('HGETALL', KEYS[1])
local total = 0
for i = 1, #counts, 2 do
  local node, held = counts[i], tonumber(counts[i + 1])
  if dead[node] and node ~= ARGV[1] then
    redis.call('HDEL', KEYS[1], node)
  else
    total = total + held
  end
end
if total >= tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
return 1
";

/// One connection of a user on node `ARGV[1]` closed.
static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(RELEASE_LUA));
const RELEASE_LUA: &str = r"
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
";

impl RedisPresence {
    /// Clears this node's leftovers, starts its heartbeat and the reaper. Users who go
    /// offline because a node died, and this node's users back after it was taken for dead,
    /// are sent on `news`.
    pub async fn start(
        redis: Commands,
        prefix: &str,
        node: &NodeId,
        ttl: Duration,
        news: mpsc::UnboundedSender<PresenceNews>,
    ) -> redis::RedisResult<Arc<Self>> {
        let presence = Arc::new(Self {
            keys: Keys { prefix: prefix.to_owned(), node: node.to_string() },
            redis,
            others: Mutex::default(),
            retired: Default::default(),
            local: Mutex::default(),
            seats: Mutex::default(),
        });
        let me = presence.keys.node.clone();
        for user in presence.clone().reap(&me).await? {
            let _ = news.send(PresenceNews::WentOffline(user));
        }
        presence.beat(ttl, false).await?;
        let weak = Arc::downgrade(&presence);
        tokio::spawn(async move {
            let mut healthy = true;
            let mut tick = tokio::time::interval(ttl / 3);
            loop {
                tick.tick().await;
                let Some(presence) = weak.upgrade() else { return };
                if presence.retired.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                match presence.beat(ttl, !healthy).await {
                    Ok(back) => {
                        healthy = true;
                        back.into_iter().for_each(|u| {
                            let _ = news.send(PresenceNews::CameBack(u));
                        });
                    }
                    Err(e) => {
                        if healthy {
                            tracing::warn!(error = %e, "presence heartbeat failed");
                        }
                        healthy = false;
                        continue;
                    }
                }
                match presence.reap_dead_nodes().await {
                    Ok(users) => users.into_iter().for_each(|u| {
                        let _ = news.send(PresenceNews::WentOffline(u));
                    }),
                    Err(e) => tracing::warn!(error = %e, "presence reaper failed"),
                }
            }
        });
        Ok(presence)
    }

    /// Refreshes the heartbeat. After an outage (`reassert`), or when this node finds it was
    /// reaped (it is no longer in the node set: frozen or cut off past its TTL), re-registers
    /// every local user; when reaped, returns them, as their peers were told they went
    /// offline.
    async fn beat(&self, ttl: Duration, reassert: bool) -> redis::RedisResult<Vec<UserId>> {
        let keys = &self.keys;
        let mut redis = self.redis.clone();
        let mut pipe = redis::pipe();
        pipe.sadd(keys.nodes(), &keys.node);
        pipe.set_ex(keys.heartbeat(&keys.node), 1, ttl.as_secs().max(1)).ignore();
        let (added,): (i64,) = pipe.query_async(&mut redis).await?;
        let reaped = added == 1;
        if !(reassert || reaped) {
            return Ok(Vec::new());
        }
        let users: Vec<UserId> = self.local.lock().expect("presence lock").iter().cloned().collect();
        // The reaper's claim goes too, so that another death of this node is reaped at once.
        let mut commands = vec![Cmd::del(keys.reap(&keys.node))];
        for user in &users {
            commands.push(Cmd::sadd(keys.node_users(&keys.node), user.as_str()));
            commands.push(Cmd::sadd(keys.user(user.as_str()), &keys.node));
        }
        if reaped {
            let seats: Vec<(UserId, i64)> =
                self.seats.lock().expect("presence lock").iter().map(|(u, n)| (u.clone(), *n)).collect();
            for (user, held) in seats {
                commands.push(Cmd::hset(keys.connections(user.as_str()), &keys.node, held));
            }
        }
        self.redis.run_all(commands).await?;
        if reaped && !users.is_empty() {
            tracing::warn!(users = users.len(), "this node had been taken for dead; its users are back online");
        }
        Ok(if reaped { users } else { Vec::new() })
    }

    /// Which of `nodes` still have a heartbeat.
    async fn live(&self, nodes: &[String]) -> redis::RedisResult<HashSet<String>> {
        if nodes.is_empty() {
            return Ok(HashSet::new());
        }
        let mut redis = self.redis.clone();
        let beats: Vec<Option<String>> =
            redis.mget(nodes.iter().map(|n| self.keys.heartbeat(n)).collect::<Vec<_>>()).await?;
        Ok(nodes.iter().zip(beats).filter(|(_, beat)| beat.is_some()).map(|(n, _)| n.clone()).collect())
    }

    async fn reap_dead_nodes(&self) -> redis::RedisResult<Vec<UserId>> {
        let mut redis = self.redis.clone();
        let nodes: Vec<String> = redis.smembers(self.keys.nodes()).await?;
        let live = self.live(&nodes).await?;
        *self.others.lock().expect("presence lock") = nodes.iter().filter(|n| **n != self.keys.node).cloned().collect();
        let mut offline = Vec::new();
        for node in nodes.iter().filter(|n| !live.contains(*n) && **n != self.keys.node) {
            let claimed: bool = redis::cmd("SET")
                .arg(self.keys.reap(node))
                .arg(&self.keys.node)
                .arg("NX")
                .arg("EX")
                .arg(60)
                .query_async::<Option<String>>(&mut redis)
                .await?
                .is_some();
            if claimed {
                tracing::info!(node, "reaping a node that stopped heartbeating");
                offline.extend(self.reap(node).await?);
            }
        }
        Ok(offline)
    }

    /// Removes `node` from the sets of its users; returns those now offline everywhere.
    async fn reap(&self, node: &str) -> redis::RedisResult<Vec<UserId>> {
        let mut redis = self.redis.clone();
        let users: Vec<String> = redis.smembers(self.keys.node_users(node)).await?;
        let mut offline = Vec::new();
        for user in users {
            let remaining: Vec<String> = redis::pipe()
                .srem(self.keys.user(&user), node)
                .ignore()
                .hdel(self.keys.connections(&user), node)
                .ignore()
                .smembers(self.keys.user(&user))
                .query_async::<(Vec<String>,)>(&mut redis)
                .await?
                .0;
            if self.live(&remaining).await?.is_empty() {
                if let Ok(user) = UserId::parse(user) {
                    offline.push(user);
                }
            }
        }
        self.redis.run_all(vec![Cmd::del(self.keys.node_users(node)), Cmd::srem(self.keys.nodes(), node)]).await?;
        Ok(offline)
    }

    /// Adds or removes this node in the user's set; returns the other nodes still holding them.
    async fn update(&self, user: &UserId, add: bool) -> redis::RedisResult<Vec<String>> {
        let keys = &self.keys;
        let (holders, node_users) = (keys.user(user.as_str()), keys.node_users(&keys.node));
        let commands = if add {
            vec![Cmd::sadd(&holders, &keys.node), Cmd::sadd(node_users, user.as_str()), Cmd::smembers(&holders)]
        } else {
            vec![Cmd::srem(&holders, &keys.node), Cmd::srem(node_users, user.as_str()), Cmd::smembers(&holders)]
        };
        let members: Vec<String> = parse(self.redis.run_all(commands).await?.pop().unwrap_or(Value::Nil))?;
        Ok(members.into_iter().filter(|n| n != &keys.node).collect())
    }

    /// True when no other live node holds `user` (errors count as "changed": presence is
    /// best effort, and a redundant push is better than a missing one).
    async fn alone(self: Arc<Self>, user: UserId, add: bool) -> bool {
        let others = match self.update(&user, add).await {
            Ok(others) => others,
            Err(e) => {
                tracing::warn!(%user, error = %e, "presence update failed");
                return true;
            }
        };
        self.live(&others).await.map(|live| live.is_empty()).unwrap_or(true)
    }
}

impl PresenceDirectory for Arc<RedisPresence> {
    fn connected(&self, user: UserId) -> BoxFuture<'static, bool> {
        self.local.lock().expect("presence lock").insert(user.clone());
        Box::pin(self.clone().alone(user, true))
    }

    fn disconnected(&self, user: UserId) -> BoxFuture<'static, bool> {
        self.local.lock().expect("presence lock").remove(&user);
        Box::pin(self.clone().alone(user, false))
    }

    fn retire(&self) -> BoxFuture<'static, ()> {
        self.retired.store(true, std::sync::atomic::Ordering::Relaxed);
        let presence = self.clone();
        Box::pin(async move {
            let mut redis = presence.redis.clone();
            let heartbeat = presence.keys.heartbeat(&presence.keys.node);
            if let Err(e) = redis.del::<_, ()>(heartbeat).await {
                tracing::warn!(error = %e, "could not retire this node's heartbeat");
            }
        })
    }

    fn admit(&self, user: UserId, cap: usize) -> BoxFuture<'static, Result<bool, Error>> {
        let presence = self.clone();
        Box::pin(async move {
            let keys = &presence.keys;
            let mut redis = presence.redis.clone();
            let others = presence.others.lock().expect("presence lock").clone();
            let unavailable = |e: redis::RedisError| {
                tracing::warn!(error = %e, "connection count unavailable");
                Error::Unavailable("connection count unavailable".into())
            };
            let live = presence.live(&others).await.map_err(unavailable)?;
            let dead: Vec<&String> = others.iter().filter(|node| !live.contains(*node)).collect();
            let admitted: i64 = ADMIT
                .key(keys.connections(user.as_str()))
                .arg(&keys.node)
                .arg(cap)
                .arg(dead)
                .invoke_async(&mut redis)
                .await
                .map_err(unavailable)?;
            if admitted == 1 {
                *presence.seats.lock().expect("presence lock").entry(user).or_default() += 1;
            }
            Ok(admitted == 1)
        })
    }

    fn release(&self, user: UserId) -> BoxFuture<'static, ()> {
        let presence = self.clone();
        {
            let mut seats = self.seats.lock().expect("presence lock");
            if let Some(held) = seats.get_mut(&user) {
                *held -= 1;
                if *held <= 0 {
                    seats.remove(&user);
                }
            }
        }
        Box::pin(async move {
            let keys = &presence.keys;
            let mut redis = presence.redis.clone();
            let released: redis::RedisResult<()> =
                RELEASE.key(keys.connections(user.as_str())).arg(&keys.node).invoke_async(&mut redis).await;
            if let Err(e) = released {
                tracing::warn!(%user, error = %e, "could not release a connection count");
            }
        })
    }

    fn other_nodes_holding(&self, user: UserId) -> BoxFuture<'static, Result<Vec<NodeId>, Error>> {
        let presence = self.clone();
        Box::pin(async move {
            let unavailable = |e: redis::RedisError| {
                tracing::warn!(error = %e, "presence lookup failed");
                Error::Unavailable("presence is unavailable; retry".into())
            };
            let mut redis = presence.redis.clone();
            let nodes: Vec<String> = redis.smembers(presence.keys.user(user.as_str())).await.map_err(unavailable)?;
            let live = presence.live(&nodes).await.map_err(unavailable)?;
            Ok(live.into_iter().filter(|node| *node != presence.keys.node).map(NodeId::new).collect())
        })
    }

    fn online_among(&self, users: Vec<UserId>) -> BoxFuture<'static, Result<HashSet<UserId>, Error>> {
        let presence = self.clone();
        Box::pin(async move {
            let unavailable = |e: redis::RedisError| {
                tracing::warn!(error = %e, "presence lookup failed");
                Error::Unavailable("presence is unavailable; retry".into())
            };
            if users.is_empty() {
                return Ok(HashSet::new());
            }
            let lookups = users.iter().map(|user| Cmd::smembers(presence.keys.user(user.as_str()))).collect();
            let holders: Vec<Vec<String>> = presence
                .redis
                .run_all(lookups)
                .await
                .and_then(|replies| replies.into_iter().map(parse).collect())
                .map_err(unavailable)?;
            let nodes: Vec<String> = holders.iter().flatten().cloned().collect::<HashSet<_>>().into_iter().collect();
            let live = presence.live(&nodes).await.map_err(unavailable)?;
            Ok(users
                .into_iter()
                .zip(holders)
                .filter(|(_, nodes)| nodes.iter().any(|n| live.contains(n)))
                .map(|(user, _)| user)
                .collect())
        })
    }
}

fn parse<T: FromRedisValue>(reply: Value) -> RedisResult<T> {
    T::from_redis_value(reply).map_err(Into::into)
}
