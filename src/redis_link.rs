//! The link to Redis, one server or a Redis Cluster, behind one type: commands that span keys
//! go out in one pipeline per hash slot, and pub/sub is sharded (`SPUBLISH`/`SSUBSCRIBE`) on a
//! cluster, so that a message is copied only to the shard that owns its channel and to the
//! nodes subscribed there. A node holds one connection per Redis server it talks to (two on a
//! single server: commands and subscriptions), never one per channel.
//!
//! Rule for keys: what one command or script touches shares a hash tag (`{…}`), since a
//! cluster refuses commands across slots.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures_util::future::{join_all, try_join_all};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo, Slot};
use redis::{Arg, Cmd, Pipeline, PushInfo, RedisFuture, RedisResult, Value};
use tokio::sync::mpsc;

use crate::config::RedisTarget;

/// A connection for commands; clones share it.
#[derive(Clone)]
pub enum Commands {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// The connection that holds this node's subscriptions; its messages and disconnections
/// arrive on the push channel given to [`connect`].
pub enum Subscriber {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// Connects to `target`: the command connection and the subscriber, whose pushes go to
/// `pushes`. On a cluster both are one connection per Redis node (RESP3 lets one connection
/// carry commands and subscriptions).
pub async fn connect(
    target: &RedisTarget,
    pushes: mpsc::UnboundedSender<PushInfo>,
) -> RedisResult<(Commands, Subscriber)> {
    match target {
        RedisTarget::Single(url) => {
            let client = redis::Client::open(resp3(url))?;
            let commands = client.get_connection_manager_with_config(manager_config()).await?;
            let subscriber = client
                .get_connection_manager_with_config(
                    manager_config().set_push_sender(pushes).set_automatic_resubscription(),
                )
                .await?;
            Ok((Commands::Single(commands), Subscriber::Single(subscriber)))
        }
        RedisTarget::Cluster(seeds) => {
            let client = ClusterClientBuilder::new(seeds.iter().map(|s| resp3(s)).collect::<Vec<_>>())
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(pushes)
                .connection_timeout(Duration::from_secs(2))
                .response_timeout(Duration::from_secs(2))
                .retries(2)
                .max_retry_wait(500)
                .build()?;
            let connection = client.get_async_connection().await?;
            Ok((Commands::Cluster(connection.clone()), Subscriber::Cluster(connection)))
        }
    }
}

/// Fail fast while Redis is away instead of queueing behind a dead socket.
fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500))
}

impl Commands {
    /// Runs `commands` in order per key and returns their replies in order: one pipeline on
    /// one server; on a cluster one pipeline per hash slot, sent together. Fails if any
    /// command does.
    pub async fn run_all(&self, commands: Vec<Cmd>) -> RedisResult<Vec<Value>> {
        self.run_each(commands).await.into_iter().collect()
    }

    /// Runs `commands` as [`run_all`](Self::run_all) does, each answered on its own: a command
    /// Redis refuses, or a slot whose pipeline fails, fails only its own commands.
    pub async fn run_each(&self, commands: Vec<Cmd>) -> Vec<RedisResult<Value>> {
        let total = commands.len();
        let missing = || Err((redis::ErrorKind::Client, "no reply").into());
        let mut replies: Vec<RedisResult<Value>> = (0..total).map(|_| missing()).collect();
        for (places, answer) in self.run_per_slot(commands).await {
            match answer {
                Ok(values) => {
                    places.into_iter().zip(values).for_each(|(at, value)| replies[at] = value.extract_error())
                }
                Err(e) => places.into_iter().for_each(|at| replies[at] = Err(e.clone())),
            }
        }
        replies
    }

    /// Publishes each `(channel, payload)`: `PUBLISH` on one server, `SPUBLISH` on a cluster,
    /// where a shard that fails costs only its own messages. Which were not sent (their
    /// places in `messages`), and why.
    pub async fn publish_all(&self, messages: &[(String, Vec<u8>)]) -> Result<(), (Vec<usize>, redis::RedisError)> {
        let verb = match self {
            Self::Single(_) => "PUBLISH",
            Self::Cluster(_) => "SPUBLISH",
        };
        let commands = messages.iter().map(|(channel, payload)| redis::cmd(verb).arg(channel).arg(payload).to_owned());
        let mut failed: Option<(Vec<usize>, redis::RedisError)> = None;
        for (at, answer) in self.run_each(commands.collect()).await.into_iter().enumerate() {
            if let Err(e) = answer {
                failed.get_or_insert_with(|| (Vec::new(), e)).0.push(at);
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// The commands, grouped by hash slot on a cluster (one group on one server), each group
    /// in one pipeline whose replies carry Redis's refusals in place; with each group, the
    /// places of its commands in `commands`.
    async fn run_per_slot(&self, commands: Vec<Cmd>) -> Vec<(Vec<usize>, RedisResult<Vec<Value>>)> {
        let connection = match self {
            Self::Single(connection) => {
                let places = (0..commands.len()).collect();
                let mut pipe = Pipeline::with_capacity(commands.len());
                commands.into_iter().for_each(|command| {
                    pipe.add_command(command);
                });
                return vec![(places, pipe.ignore_errors().query_async(&mut connection.clone()).await)];
            }
            Self::Cluster(connection) => connection,
        };
        let mut by_slot: HashMap<Option<Slot>, (Vec<usize>, Pipeline)> = HashMap::new();
        for (at, command) in commands.into_iter().enumerate() {
            let (places, pipe) = by_slot.entry(first_key_slot(&command)).or_default();
            places.push(at);
            pipe.add_command(command);
        }
        join_all(by_slot.into_values().map(|(places, mut pipe)| {
            let mut connection = connection.clone();
            async move { (places, pipe.ignore_errors().query_async::<Vec<Value>>(&mut connection).await) }
        }))
        .await
    }
}

impl ConnectionLike for Commands {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}

impl Subscriber {
    /// Subscribes to `channels` (again, after a reconnect: subscribing twice is harmless).
    pub async fn subscribe(&mut self, channels: &[String]) -> RedisResult<()> {
        match self {
            Self::Single(connection) => {
                for chunk in channels.chunks(1000) {
                    connection.subscribe(chunk).await?;
                }
                Ok(())
            }
            Self::Cluster(connection) => {
                let groups = by_slot(channels).into_values().map(|group| {
                    let mut connection = connection.clone();
                    async move { connection.ssubscribe(group).await }
                });
                try_join_all(groups).await.map(drop)
            }
        }
    }

    pub async fn unsubscribe(&mut self, channels: &[String]) -> RedisResult<()> {
        match self {
            Self::Single(connection) => {
                for chunk in channels.chunks(1000) {
                    connection.unsubscribe(chunk).await?;
                }
                Ok(())
            }
            Self::Cluster(connection) => {
                let groups = by_slot(channels).into_values().map(|group| {
                    let mut connection = connection.clone();
                    async move { connection.sunsubscribe(group).await }
                });
                try_join_all(groups).await.map(drop)
            }
        }
    }

    /// Whether pub/sub is sharded (a cluster), where Redis confirms each unsubscription with a
    /// push as well.
    pub fn is_sharded(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// The channels of `held` that Redis does not hold for this node. On a cluster, every
    /// master is asked (`CLIENT INFO` on this node's connection to it) how many shard channels
    /// it holds for this node; a master holding fewer than the channels of `held` its slots
    /// take has all of those returned (subscribing twice is harmless). Subscriptions go
    /// missing when a master fails over, or when the client replaces its connections while
    /// recovering; nothing else tells of it. Empty on one server, whose connection manager
    /// subscribes again by itself after a reconnect.
    pub async fn missing(&mut self, held: &HashSet<String>) -> RedisResult<Vec<String>> {
        let Self::Cluster(connection) = self else { return Ok(Vec::new()) };
        let reply: Value = redis::cmd("CLUSTER").arg("SLOTS").query_async(connection).await?;
        let owners = SlotOwners::parse(&reply);
        let groups = by_slot(held);
        let mut expected: HashMap<&(String, u16), Vec<&String>> = HashMap::new();
        for slot in 0..SLOTS {
            if let (Some(group), Some(master)) = (Slot::new(slot).and_then(|s| groups.get(&s)), owners.owner(slot)) {
                expected.entry(master).or_default().extend(group);
            }
        }
        let mut missing = Vec::new();
        for ((host, port), channels) in expected {
            let at = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host: host.clone(), port: *port });
            // A master that does not answer is left to the next check.
            let Ok(info) = connection.route_command(redis::cmd("CLIENT").arg("INFO").to_owned(), at).await else {
                continue;
            };
            if shard_subscriptions(&info).is_none_or(|held_there| held_there < channels.len()) {
                missing.extend(channels.into_iter().cloned());
            }
        }
        Ok(missing)
    }

    /// Proves the link answers (on a cluster, every master).
    pub async fn ping(&mut self) -> RedisResult<()> {
        match self {
            Self::Single(connection) => redis::cmd("PING").query_async(connection).await,
            Self::Cluster(connection) => redis::cmd("PING").query_async(connection).await,
        }
    }
}

/// Which master serves each hash slot of a Redis Cluster: ranges of slots, each with its
/// master's address, in slot order. A slot in no range has no master.
#[derive(Debug, Default, PartialEq, Eq)]
struct SlotOwners(Vec<(u16, u16, (String, u16))>);

impl SlotOwners {
    /// Reads a `CLUSTER SLOTS` reply: `[start, end, [host, port, id, …], replicas…]` per range.
    /// What does not have that shape (or names no host) is left out.
    fn parse(reply: &Value) -> Self {
        let Value::Array(ranges) = reply else { return Self::default() };
        let mut owners: Vec<(u16, u16, (String, u16))> = ranges
            .iter()
            .filter_map(|range| {
                let Value::Array(fields) = range else { return None };
                let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(master))) =
                    (fields.first(), fields.get(1), fields.get(2))
                else {
                    return None;
                };
                let (Some(Value::BulkString(host)), Some(Value::Int(port))) = (master.first(), master.get(1)) else {
                    return None;
                };
                let host = String::from_utf8(host.clone()).ok().filter(|host| !host.is_empty() && host != "?")?;
                let address = (host, u16::try_from(*port).ok()?);
                Some((u16::try_from(*start).ok()?, u16::try_from(*end).ok()?, address))
            })
            .collect();
        owners.sort();
        Self(owners)
    }

    fn owner(&self, slot: u16) -> Option<&(String, u16)> {
        let after = self.0.partition_point(|(start, _, _)| *start <= slot);
        let (_, end, master) = self.0.get(after.checked_sub(1)?)?;
        (slot <= *end).then_some(master)
    }
}

/// The `ssub=` count of a `CLIENT INFO` reply: how many shard channels the connection holds.
fn shard_subscriptions(info: &Value) -> Option<usize> {
    let text = match info {
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?,
        Value::VerbatimString { text, .. } => text.as_str(),
        Value::SimpleString(text) => text.as_str(),
        _ => return None,
    };
    text.split_whitespace().find_map(|field| field.strip_prefix("ssub="))?.parse().ok()
}

/// How many hash slots a Redis Cluster has.
const SLOTS: u16 = 16_384;

/// The hash slot of a command's first key: its first argument after its name, or for a script
/// (`EVAL`, `EVALSHA`) the argument after the script and the key count.
fn first_key_slot(command: &Cmd) -> Option<Slot> {
    let mut args = command.args_iter();
    let Arg::Simple(verb) = args.next()? else { return None };
    let skip = if verb.eq_ignore_ascii_case(b"EVALSHA") || verb.eq_ignore_ascii_case(b"EVAL") { 2 } else { 0 };
    match args.nth(skip)? {
        Arg::Simple(key) => Some(Slot::for_key(key)),
        _ => None,
    }
}

fn by_slot<'a>(channels: impl IntoIterator<Item = &'a String>) -> HashMap<Slot, Vec<&'a String>> {
    let mut groups: HashMap<Slot, Vec<&String>> = HashMap::new();
    for channel in channels {
        groups.entry(Slot::for_key(channel)).or_default().push(channel);
    }
    groups
}

fn resp3(url: &str) -> String {
    if url.contains("protocol=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&protocol=resp3")
    } else {
        format!("{url}?protocol=resp3")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_for_resp3() {
        assert_eq!(resp3("redis://h:1"), "redis://h:1?protocol=resp3");
        assert_eq!(resp3("redis://h:1/?db=2"), "redis://h:1/?db=2&protocol=resp3");
    }

    fn range(start: i64, end: i64, port: i64) -> Value {
        let master = Value::Array(vec![
            Value::BulkString(b"127.0.0.1".to_vec()),
            Value::Int(port),
            Value::BulkString(b"0123abcd".to_vec()),
        ]);
        Value::Array(vec![Value::Int(start), Value::Int(end), master])
    }

    #[test]
    fn every_slot_has_the_master_its_range_names() {
        let owners =
            SlotOwners::parse(&Value::Array(vec![range(5461, 10922, 2), range(0, 5460, 1), range(10923, 16383, 3)]));
        let port = |slot| owners.owner(slot).map(|(_, port)| *port);
        assert_eq!(
            [port(0), port(5460), port(5461), port(10922), port(16383)],
            [Some(1), Some(1), Some(2), Some(2), Some(3)]
        );
        assert_eq!(owners.owner(0), Some(&("127.0.0.1".to_owned(), 1)));
    }

    #[test]
    fn a_slot_nobody_serves_has_no_master_and_garbage_is_left_out() {
        let partial =
            SlotOwners::parse(&Value::Array(vec![range(0, 99, 1), Value::Int(3), Value::Array(vec![Value::Nil])]));
        assert_eq!(partial.owner(100), None);
        assert_eq!(partial.0.len(), 1);
        assert_eq!(SlotOwners::parse(&Value::Nil), SlotOwners::default());
    }

    #[test]
    fn client_info_tells_the_shard_subscriptions() {
        let info =
            "id=7 addr=127.0.0.1:5000 laddr=127.0.0.1:7000 fd=9 name= age=3 sub=0 psub=0 ssub=12 multi=-1 resp=3\n";
        assert_eq!(shard_subscriptions(&Value::BulkString(info.as_bytes().to_vec())), Some(12));
        assert_eq!(shard_subscriptions(&Value::BulkString(b"id=7 sub=0".to_vec())), None);
        assert_eq!(shard_subscriptions(&Value::Int(3)), None);
    }

    #[test]
    fn commands_go_by_their_keys_slot() {
        let tagged = redis::cmd("SADD").arg("sb:user:{alice}").arg("n1").to_owned();
        assert_eq!(first_key_slot(&tagged), Some(Slot::for_key("alice")));
        let script = redis::Script::new("return 1");
        let mut call = script.prepare_invoke();
        call.key("sb:conns:{bob}").arg("n1");
        assert_eq!(first_key_slot(&Cmd::invoke_script(&call)), Some(Slot::for_key("bob")));
        let channels = ["a{x}".to_owned(), "b{x}".to_owned(), "c{y}".to_owned()];
        let groups = by_slot(&channels);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[&Slot::for_key("x")].len(), 2);
    }
}
