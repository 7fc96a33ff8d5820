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
//! What connections do (admit, release, a user's first and last connection here) is queued
//! and sent in rounds: the calls queued while one round is out go together in the next, in
//! two pipelines, so that many connections opening or closing at once cost one Redis server
//! and the node two requests per round rather than several per connection (a Redis Cluster
//! gets a pipeline per hash slot). Each call sees heartbeats and counts as fresh as it would
//! alone; a user's first-and-last-connection calls keep their order, and a round's releases
//! go before its admits.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::{AsyncCommands, Cmd, ErrorKind, FromRedisValue, RedisResult, ServerErrorKind, Value};
use tokio::sync::{mpsc, oneshot};

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
    /// The calls waiting for the next round.
    calls: mpsc::Sender<Call>,
}

/// Most calls one round takes.
const ROUND_MAX: usize = 512;
/// Calls waiting for a round before callers wait (and may lose their order).
const CALL_QUEUE: usize = 16_384;

/// A call on a user's keys, run by the next round that takes it.
enum Call {
    /// Count one more connection unless the user holds `cap`; answers whether it was counted.
    Admit { user: UserId, cap: usize, answer: oneshot::Sender<RedisResult<bool>> },
    /// A counted connection closed.
    Release { user: UserId },
    /// This node starts (`holds`) or stops holding the user; answers whether no other live
    /// node holds them (also when Redis could not say: a redundant presence push is better
    /// than a missing one).
    Hold { user: UserId, holds: bool, answer: oneshot::Sender<bool> },
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

    /// One round for `calls`. First pipeline: the other nodes' heartbeats, then the holds and
    /// releases in queue order (so that a seat freed in a round is free for its admits);
    /// second: the admits, told which nodes the first found dead, and the heartbeats of holders
    /// the first did not cover (nodes newer than the last beat).
    async fn round(&self, calls: Vec<Call>) {
        // Releases alone need no heartbeats.
        let others = if calls.iter().all(|call| matches!(call, Call::Release { .. })) {
            Vec::new()
        } else {
            self.others.lock().expect("presence lock").clone()
        };
        let mut replies = self.run_scripts(self.changes(&calls, &others)).await.into_iter();
        let live = if others.is_empty() { Ok(HashSet::new()) } else { heartbeats(&others, next(&mut replies)) };
        let (holds, admits) = settle_changes(calls, &mut replies);
        match live {
            Ok(live) => self.admit_and_answer(holds, admits, &others, &live).await,
            Err(e) => {
                tracing::warn!(error = %e, admits = admits.len(), "presence heartbeats unavailable");
                for (.., answer) in admits {
                    let _ = answer.send(Err(e.clone()));
                }
                for (_, answer) in holds {
                    let _ = answer.send(true);
                }
            }
        }
    }

    /// The first pipeline of a round.
    fn changes(&self, calls: &[Call], others: &[String]) -> Vec<Cmd> {
        let keys = &self.keys;
        let mut commands = Vec::with_capacity(1 + 3 * calls.len());
        if !others.is_empty() {
            commands.push(Cmd::mget(others.iter().map(|node| keys.heartbeat(node)).collect::<Vec<_>>()));
        }
        for call in calls {
            match call {
                Call::Hold { user, holds, .. } => {
                    let (holders, node_users) = (keys.user(user.as_str()), keys.node_users(&keys.node));
                    if *holds {
                        commands.extend([Cmd::sadd(&holders, &keys.node), Cmd::sadd(node_users, user.as_str())]);
                    } else {
                        commands.extend([Cmd::srem(&holders, &keys.node), Cmd::srem(node_users, user.as_str())]);
                    }
                    commands.push(Cmd::smembers(&holders));
                }
                Call::Release { user } => {
                    commands.push(script(&RELEASE, keys.connections(user.as_str()), [keys.node.as_str()]));
                }
                Call::Admit { .. } => {}
            }
        }
        commands
    }

    /// The second pipeline of a round: runs the admits and answers them and the holds.
    async fn admit_and_answer(&self, holds: Vec<Held>, admits: Vec<Admit>, others: &[String], live: &HashSet<String>) {
        let keys = &self.keys;
        let known: HashSet<&String> = others.iter().chain([&keys.node]).collect();
        let newer: Vec<String> = holds
            .iter()
            .flat_map(|(holders, _)| holders)
            .filter(|node| !known.contains(node))
            .cloned()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut commands = Vec::with_capacity(1 + admits.len());
        if !newer.is_empty() {
            commands.push(Cmd::mget(newer.iter().map(|node| keys.heartbeat(node)).collect::<Vec<_>>()));
        }
        let dead: Vec<&String> = others.iter().filter(|node| !live.contains(*node)).collect();
        for (user, cap, _) in &admits {
            let cap = cap.to_string();
            let args = [keys.node.as_str(), cap.as_str()].into_iter().chain(dead.iter().map(|node| node.as_str()));
            commands.push(script(&ADMIT, keys.connections(user.as_str()), args));
        }
        let mut replies = if commands.is_empty() { Vec::new() } else { self.run_scripts(commands).await }.into_iter();

        let newer_live = if newer.is_empty() { Ok(HashSet::new()) } else { heartbeats(&newer, next(&mut replies)) };
        for (holders, answer) in holds {
            let other = |node: &&String| **node != keys.node;
            let alone = match &newer_live {
                Ok(newer_live) => !holders.iter().filter(other).any(|n| live.contains(n) || newer_live.contains(n)),
                // Unsure whether a newer holder lives: the state counts as changed.
                Err(_) => {
                    holders.iter().any(|node| newer.contains(node))
                        || !holders.iter().filter(other).any(|n| live.contains(n))
                }
            };
            let _ = answer.send(alone);
        }
        let mut failed = None;
        for (user, _, answer) in admits {
            let admitted = next(&mut replies).and_then(parse::<i64>).map(|admitted| admitted == 1);
            if let Err(e) = &admitted {
                failed.get_or_insert_with(|| e.to_string());
            }
            // A connection that went away while its count was taken gives it back.
            if let Err(Ok(true)) = answer.send(admitted) {
                tokio::spawn(self.queue(Call::Release { user }));
            }
        }
        if let Some(e) = failed {
            tracing::warn!(error = %e, "connection count unavailable");
        }
    }

    /// Runs `commands` each on its own; a script Redis does not hold (it restarted, or a
    /// replica took over) is loaded and the commands it refused run again, once.
    async fn run_scripts(&self, commands: Vec<Cmd>) -> Vec<RedisResult<Value>> {
        let scripted: Vec<(usize, Cmd)> = commands
            .iter()
            .enumerate()
            .filter(|(_, command)| is_script(command))
            .map(|(at, c)| (at, c.clone()))
            .collect();
        let mut replies = self.redis.run_each(commands).await;
        let refused: Vec<(usize, Cmd)> =
            scripted.into_iter().filter(|(at, _)| replies.get(*at).is_some_and(unknown_script)).collect();
        if refused.is_empty() {
            return replies;
        }
        let mut redis = self.redis.clone();
        for loaded in [ADMIT.load_async(&mut redis).await, RELEASE.load_async(&mut redis).await] {
            if let Err(e) = loaded {
                tracing::warn!(error = %e, "could not load a presence script");
            }
        }
        let (places, again): (Vec<usize>, Vec<Cmd>) = refused.into_iter().unzip();
        for (at, reply) in places.into_iter().zip(self.redis.run_each(again).await) {
            if let Some(place) = replies.get_mut(at) {
                *place = reply;
            }
        }
        replies
    }
}

/// Takes calls as they queue and runs them in rounds, until the presence is dropped.
async fn serve_rounds(presence: std::sync::Weak<RedisPresence>, mut queued: mpsc::Receiver<Call>) {
    let mut calls = Vec::with_capacity(ROUND_MAX);
    while queued.recv_many(&mut calls, ROUND_MAX).await > 0 {
        let Some(presence) = presence.upgrade() else { return };
        presence.round(std::mem::take(&mut calls)).await;
    }
}

/// A hold whose change Redis made: the nodes holding the user after it, and who waits.
type Held = (Vec<String>, oneshot::Sender<bool>);
/// An admit waiting for the second pipeline.
type Admit = (UserId, usize, oneshot::Sender<RedisResult<bool>>);

/// Takes the replies of a round's first pipeline after the heartbeats, in the order of
/// [`RedisPresence::changes`]: answers the holds that failed and the releases (nobody waits
/// for those); returns the holds done and the admits, for the second.
fn settle_changes(calls: Vec<Call>, replies: &mut impl Iterator<Item = RedisResult<Value>>) -> (Vec<Held>, Vec<Admit>) {
    let (mut holds, mut admits) = (Vec::new(), Vec::new());
    for call in calls {
        match call {
            Call::Hold { user, answer, .. } => {
                let (this, node_users) = (next(replies), next(replies));
                match this.and(node_users).and(next(replies)).and_then(parse::<Vec<String>>) {
                    Ok(holders) => holds.push((holders, answer)),
                    Err(e) => {
                        tracing::warn!(%user, error = %e, "presence update failed");
                        let _ = answer.send(true);
                    }
                }
            }
            Call::Release { user } => {
                if let Err(e) = next(replies) {
                    tracing::warn!(%user, error = %e, "could not release a connection count");
                }
            }
            Call::Admit { user, cap, answer } => admits.push((user, cap, answer)),
        }
    }
    (holds, admits)
}

/// `script` called on `key` with `args` (`EVALSHA`).
fn script<'a>(script: &redis::Script, key: String, args: impl IntoIterator<Item = &'a str>) -> Cmd {
    let mut call = script.prepare_invoke();
    call.key(key);
    for arg in args {
        call.arg(arg);
    }
    Cmd::invoke_script(&call)
}

fn is_script(command: &Cmd) -> bool {
    command.args_iter().next().is_some_and(|verb| matches!(verb, redis::Arg::Simple(b"EVALSHA")))
}

fn unknown_script(reply: &RedisResult<Value>) -> bool {
    reply.as_ref().is_err_and(|e| e.kind() == ErrorKind::Server(ServerErrorKind::NoScript))
}

/// The next reply of a round (a missing one is an error, not a panic).
fn next(replies: &mut impl Iterator<Item = RedisResult<Value>>) -> RedisResult<Value> {
    replies.next().unwrap_or_else(|| Err((ErrorKind::Client, "a reply is missing").into()))
}

/// Which of `nodes` have a heartbeat, given the reply to the `MGET` of their heartbeats.
fn heartbeats(nodes: &[String], reply: RedisResult<Value>) -> RedisResult<HashSet<String>> {
    let beats: Vec<Option<String>> = parse(reply?)?;
    Ok(nodes.iter().zip(beats).filter(|(_, beat)| beat.is_some()).map(|(node, _)| node.clone()).collect())
}

impl RedisPresence {
    /// Queues `call` for the next round, at once while the queue has room, so that the calls
    /// of one user keep the order they were made in.
    fn queue(&self, call: Call) -> BoxFuture<'static, ()> {
        match self.calls.try_send(call) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => Box::pin(async {}),
            Err(mpsc::error::TrySendError::Full(call)) => {
                let calls = self.calls.clone();
                Box::pin(async move {
                    let _ = calls.send(call).await;
                })
            }
        }
    }

    fn hold(&self, user: UserId, holds: bool) -> BoxFuture<'static, bool> {
        let (answer, answered) = oneshot::channel();
        let queued = self.queue(Call::Hold { user, holds, answer });
        Box::pin(async move {
            queued.await;
            answered.await.unwrap_or(true)
        })
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
