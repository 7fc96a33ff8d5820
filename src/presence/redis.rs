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
//!
//! What connections do (admit, release, a user's first and last connection here) goes to
//! Redis in rounds ([`rounds`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::{AsyncCommands, Cmd, FromRedisValue, RedisResult, Value};
use tokio::sync::{mpsc, oneshot};

use super::{PresenceDirectory, PresenceNews};
use crate::domain::{Error, NodeId, UserId};
use crate::redis_link::Commands;
use rounds::{CALL_QUEUE, Call, serve_rounds};

mod rounds;

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
    /// The calls waiting for the next round.
    calls: mpsc::Sender<Call>,
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
        let (calls, queued) = mpsc::channel(CALL_QUEUE);
        let presence = Arc::new(Self {
            keys: Keys { prefix: prefix.to_owned(), node: node.to_string() },
            redis,
            others: Mutex::default(),
            retired: Default::default(),
            local: Mutex::default(),
            seats: Mutex::default(),
            calls,
        });
        tokio::spawn(serve_rounds(Arc::downgrade(&presence), queued));
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
        let reply: Value =
            self.redis.clone().mget(nodes.iter().map(|n| self.keys.heartbeat(n)).collect::<Vec<_>>()).await?;
        heartbeats(nodes, Ok(reply))
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
}

impl PresenceDirectory for Arc<RedisPresence> {
    fn connected(&self, user: UserId) -> BoxFuture<'static, bool> {
        self.local.lock().expect("presence lock").insert(user.clone());
        self.hold(user, true)
    }

    fn disconnected(&self, user: UserId) -> BoxFuture<'static, bool> {
        self.local.lock().expect("presence lock").remove(&user);
        self.hold(user, false)
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
        let (answer, answered) = oneshot::channel();
        let queued = self.queue(Call::Admit { user: user.clone(), cap, answer });
        Box::pin(async move {
            queued.await;
            let admitted = answered.await.ok().and_then(Result::ok);
            let admitted = admitted.ok_or_else(|| Error::Unavailable("connection count unavailable".into()))?;
            if admitted {
                *presence.seats.lock().expect("presence lock").entry(user).or_default() += 1;
            }
            Ok(admitted)
        })
    }

    fn release(&self, user: UserId) -> BoxFuture<'static, ()> {
        {
            let mut seats = self.seats.lock().expect("presence lock");
            if let Some(held) = seats.get_mut(&user) {
                *held -= 1;
                if *held <= 0 {
                    seats.remove(&user);
                }
            }
        }
        self.queue(Call::Release { user })
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

/// Which of `nodes` have a heartbeat, given the reply to the `MGET` of their heartbeats.
fn heartbeats(nodes: &[String], reply: RedisResult<Value>) -> RedisResult<HashSet<String>> {
    let beats: Vec<Option<String>> = parse(reply?)?;
    Ok(nodes.iter().zip(beats).filter(|(_, beat)| beat.is_some()).map(|(node, _)| node.clone()).collect())
}
