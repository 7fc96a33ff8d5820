//! Cluster tests: several nodes sharing a real PostgreSQL and a real Redis behave as one
//! server. Nodes run in this process (each its own hub, writer and Redis connections), or
//! as real processes where a test kills one.

#[path = "../api/helpers.rs"]
#[allow(dead_code)] // shared with the api tests, which use all of it
mod helpers;

pub mod admission;
mod calls;
mod chat;
mod faults;
mod live;
mod nginx;
mod postgres_faults;
mod presence;
mod server_api;
mod services;
mod social;
mod socketio;

use helpers::*;
use switchboard::Settings;

/// Where a test cluster's nodes find Redis.
#[derive(Debug, Clone)]
pub enum Redis {
    /// One server's URL.
    One(String),
    /// A Redis Cluster's seed nodes, comma-separated.
    Cluster(String),
}

impl Redis {
    fn apply(&self, settings: &mut Settings) {
        match self {
            Redis::One(url) => settings.redis_url = Some(url.clone()),
            Redis::Cluster(seeds) => settings.redis_cluster_nodes = seeds.split(',').map(str::to_owned).collect(),
        }
    }

    /// Makes Redis forget its scripts (`SCRIPT FLUSH` on every server), as a restart or a
    /// failover to a replica does.
    pub async fn forget_scripts(&self) {
        let flush = redis::cmd("SCRIPT").arg("FLUSH").to_owned();
        let flushed: redis::RedisResult<()> = match self {
            Redis::One(url) => match redis::Client::open(url.as_str()) {
                Ok(client) => match client.get_multiplexed_async_connection().await {
                    Ok(mut connection) => flush.query_async(&mut connection).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            },
            Redis::Cluster(seeds) => match redis::cluster::ClusterClient::new(seeds.split(',').collect::<Vec<_>>()) {
                Ok(client) => match client.get_async_connection().await {
                    Ok(mut connection) => flush.query_async(&mut connection).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            },
        };
        flushed.expect("SCRIPT FLUSH");
    }

    /// The setting for a node run as a process.
    fn env(&self) -> (&'static str, &str) {
        match self {
            Redis::One(url) => ("SWITCHBOARD_REDIS_URL", url),
            Redis::Cluster(seeds) => ("SWITCHBOARD_REDIS_CLUSTER_NODES", seeds),
        }
    }
}

/// The Redis that `deploy/local/test.sh` started: the Redis Cluster whose seeds are in
/// `SWITCHBOARD_TEST_REDIS_CLUSTER_NODES` when that is set (the test command's second pass),
/// otherwise the one server at `SWITCHBOARD_TEST_REDIS_URL`.
pub fn shared_redis() -> Redis {
    if let Ok(seeds) = std::env::var("SWITCHBOARD_TEST_REDIS_CLUSTER_NODES") {
        return Redis::Cluster(seeds);
    }
    Redis::One(
        std::env::var("SWITCHBOARD_TEST_REDIS_URL").expect(
            "SWITCHBOARD_TEST_REDIS_URL is not set: run the tests with ./deploy/local/test.sh, which starts Redis",
        ),
    )
}

/// A key prefix of its own, so that tests sharing one Redis never see each other.
pub fn fresh_prefix() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

pub struct Cluster {
    pub database_url: String,
    pub redis: Redis,
    pub prefix: String,
    pub nodes: Vec<TestApp>,
}

/// The per-address cap of test nodes, whose clients all connect from loopback.
const LOOPBACK_CLIENTS: usize = 100_000;

impl Cluster {
    /// `count` in-process nodes named n1, n2, … on one fresh database.
    pub async fn start(count: usize) -> Self {
        Self::start_with(count, shared_redis(), |_| {}).await
    }

    pub async fn start_with(count: usize, redis: Redis, tweak: impl Fn(&mut Settings)) -> Self {
        Self::start_on(fresh_database(Db::Postgres).await, count, redis, tweak).await
    }

    /// `count` nodes on the database at `database_url` and the Redis at `redis`.
    pub async fn start_on(database_url: String, count: usize, redis: Redis, tweak: impl Fn(&mut Settings)) -> Self {
        let prefix = fresh_prefix();
        let mut cluster = Cluster { database_url, redis, prefix, nodes: Vec::new() };
        for _ in 0..count {
            cluster.add_node(&tweak).await;
        }
        cluster
    }

    pub async fn add_node(&mut self, tweak: impl Fn(&mut Settings)) {
        let name = format!("n{}", self.nodes.len() + 1);
        let (redis, prefix) = (self.redis.clone(), self.prefix.clone());
        let node = spawn_on(self.database_url.clone(), |s| {
            redis.apply(s);
            s.redis_prefix = prefix;
            s.node_id = Some(name);
            // Every test client connects from loopback.
            s.max_connections_per_ip = LOOPBACK_CLIENTS;
            tweak(s);
        })
        .await;
        self.nodes.push(node);
    }

    /// Starts a node of this cluster as a real process (to kill or drain it), with `extra`
    /// settings; the child and its port.
    pub async fn spawn_node_process(&self, node: &str, extra: &[(&str, &str)]) -> (tokio::process::Child, u16) {
        let mut env = vec![
            ("SWITCHBOARD_DATABASE_URL", self.database_url.as_str()),
            self.redis.env(),
            ("SWITCHBOARD_REDIS_PREFIX", self.prefix.as_str()),
            ("SWITCHBOARD_NODE_ID", node),
            ("SWITCHBOARD_MAX_CONNECTIONS_PER_IP", "100000"),
        ];
        env.extend_from_slice(extra);
        spawn_process(&env).await
    }
}

/// Alice on `n1` and Bob on `n2` in their direct room, with a first message ("before")
/// delivered across the nodes: (alice, bob, room).
pub async fn chatting_across(n1: &TestApp, n2: &TestApp) -> (Client, Client, String) {
    let mut alice = n1.connect("alice").await;
    let mut bob = n2.connect("bob").await;
    let room = direct_room(&mut alice, &bob).await;
    send(&mut alice, &room, "before").await;
    assert_eq!(bob.event("message.new").await["message"]["body"], "before");
    (alice, bob, room)
}

/// A metric's value in a node's /metrics (0 when absent).
pub async fn metric(port: u16, name: &str) -> f64 {
    let (_, body) = http_get(port, "/metrics").await;
    body.lines()
        .find(|line| line.split([' ', '{']).next() == Some(name))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

#[actix_web::test]
async fn cluster_mode_refuses_sqlite() {
    let url = fresh_database(Db::Sqlite).await;
    let mut settings = helpers::settings(&url);
    shared_redis().apply(&mut settings);
    let err = switchboard::Application::build(settings).await.err().expect("refused");
    assert!(err.to_string().contains("PostgreSQL"), "{err}");
}
