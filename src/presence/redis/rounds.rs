//! The rounds of a node's presence calls to Redis.
//!
//! What connections do (admit, release, a user's first and last connection here) is queued
//! and sent in rounds: the calls queued while one round is out go together in the next, in
//! two pipelines, so that many connections opening or closing at once cost one Redis server
//! and the node two requests per round rather than several per connection (a Redis Cluster
//! gets a pipeline per hash slot). Each call sees heartbeats and counts as fresh as it would
//! alone; a user's first-and-last-connection calls keep their order, and a round's releases
//! go before its admits.

use std::collections::HashSet;
use std::sync::LazyLock;

use futures_util::future::BoxFuture;
use redis::{Cmd, ErrorKind, RedisResult, ServerErrorKind, Value};
use tokio::sync::{mpsc, oneshot};

use super::{RedisPresence, heartbeats, parse};
use crate::domain::UserId;

/// Most calls one round takes.
const ROUND_MAX: usize = 512;
/// Calls waiting for a round before callers wait (and may lose their order).
pub(super) const CALL_QUEUE: usize = 16_384;

/// A call on a user's keys, run by the next round that takes it.
pub(super) enum Call {
    /// Count one more connection unless the user holds `cap`; answers whether it was counted.
    Admit { user: UserId, cap: usize, answer: oneshot::Sender<RedisResult<bool>> },
    /// A counted connection closed.
    Release { user: UserId },
    /// This node starts (`holds`) or stops holding the user; answers whether no other live
    /// node holds them (also when Redis could not say: a redundant presence push is better
    /// than a missing one).
    Hold { user: UserId, holds: bool, answer: oneshot::Sender<bool> },
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
pub(super) async fn serve_rounds(presence: std::sync::Weak<RedisPresence>, mut queued: mpsc::Receiver<Call>) {
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

impl RedisPresence {
    /// Queues `call` for the next round, at once while the queue has room, so that the calls
    /// of one user keep the order they were made in.
    pub(super) fn queue(&self, call: Call) -> BoxFuture<'static, ()> {
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

    pub(super) fn hold(&self, user: UserId, holds: bool) -> BoxFuture<'static, bool> {
        let (answer, answered) = oneshot::channel();
        let queued = self.queue(Call::Hold { user, holds, answer });
        Box::pin(async move {
            queued.await;
            answered.await.unwrap_or(true)
        })
    }
}
