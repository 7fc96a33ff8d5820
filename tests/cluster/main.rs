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

/// The Redis that `deploy/local/test.sh` started.
pub fn redis_url() -> String {
    std::env::var("SWITCHBOARD_TEST_REDIS_URL")
        .expect("SWITCHBOARD_TEST_REDIS_URL is not set: run the tests with ./deploy/local/test.sh, which starts Redis")
}

/// A key prefix of its own, so that tests sharing one Redis never see each other.
pub fn fresh_prefix() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

pub struct Cluster {
    pub database_url: String,
    pub redis_url: String,
    pub prefix: String,
    pub nodes: Vec<TestApp>,
}

/// The per-address cap of test nodes, whose clients all connect from loopback.
const LOOPBACK_CLIENTS: usize = 100_000;

impl Cluster {
    /// `count` in-process nodes named n1, n2, … on one fresh database.
    pub async fn start(count: usize) -> Self {
        Self::start_with(count, redis_url(), |_| {}).await
    }

    pub async fn start_with(count: usize, redis: String, tweak: impl Fn(&mut Settings)) -> Self {
        Self::start_on(fresh_database(Db::Postgres).await, count, redis, tweak).await
    }

    /// `count` nodes on the database at `database_url` and the Redis at `redis`.
    pub async fn start_on(database_url: String, count: usize, redis: String, tweak: impl Fn(&mut Settings)) -> Self {
        let prefix = fresh_prefix();
        let mut cluster = Cluster { database_url, redis_url: redis, prefix, nodes: Vec::new() };
        for _ in 0..count {
            cluster.add_node(&tweak).await;
        }
        cluster
    }

    pub async fn add_node(&mut self, tweak: impl Fn(&mut Settings)) {
        let name = format!("n{}", self.nodes.len() + 1);
        let (redis, prefix) = (self.redis_url.clone(), self.prefix.clone());
        let node = spawn_on(self.database_url.clone(), |s| {
            s.redis_url = Some(redis);
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
            ("SWITCHBOARD_REDIS_URL", self.redis_url.as_str()),
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
    settings.redis_url = Some(redis_url());
    let err = switchboard::Application::build(settings).await.err().expect("refused");
    assert!(err.to_string().contains("PostgreSQL"), "{err}");
}
