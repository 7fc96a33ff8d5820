//! Redis faults: while Redis is down sends still succeed (durable) and same-node delivery
//! goes on; when it returns, delivery across nodes resumes by itself and clients fill the
//! gap from history.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;
use crate::{Cluster, metric};

/// A Redis server of this test's own, so that it can be stopped and started again.
struct OwnRedis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<tokio::process::Child>,
}

impl OwnRedis {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut redis = OwnRedis { port, dir: tempfile::tempdir().unwrap(), child: None };
        redis.run().await;
        redis
    }

    async fn run(&mut self) {
        let child = tokio::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is installed (deploy/local/test.sh installs it)");
        self.child = Some(child);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not start");
    }

    async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().unwrap();
            child.wait().await.unwrap();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

#[actix_web::test]
async fn redis_restart_loses_nothing() {
    let mut redis = OwnRedis::start().await;
    let cluster = Cluster::start_with(2, redis.url(), |_| {}).await;
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let mut alice = n1.connect("alice").await;
    let mut alice_tablet = n1.connect("alice").await;
    let mut bob = n2.connect("bob").await;
    let room = direct_room(&mut alice, &bob).await;
    send(&mut alice, &room, "before").await;
    assert_eq!(bob.event("message.new").await["message"]["body"], "before");
    alice_tablet.event("message.new").await;

    redis.stop().await;
    // Sends are durable without Redis; the sender's other device on the same node still
    // gets them live.
    let mut during = Vec::new();
    for i in 0..5 {
        during.push(send(&mut alice, &room, &format!("during {i}")).await["seq"].as_i64().unwrap());
        assert_eq!(alice_tablet.event("message.new").await["message"]["body"], format!("during {i}"));
    }
    assert_eq!(during, vec![2, 3, 4, 5, 6]);

    redis.run().await;
    // Delivery across nodes resumes by itself: keep sending until bob sees a live one.
    let mut resumed = None;
    for attempt in 0..60 {
        let message = send(&mut alice, &room, &format!("after {attempt}")).await;
        let seq = message["seq"].as_i64().unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        while let Ok(frame) = tokio::time::timeout_at(deadline, bob.event("message.new")).await {
            if frame["message"]["seq"] == seq {
                resumed = Some(seq);
                break;
            }
        }
        if resumed.is_some() {
            break;
        }
    }
    let resumed = resumed.expect("cross-node delivery resumed after Redis came back");
    assert!(metric(n2.port, "switchboard_redis_reconnects_total").await >= 1.0);

    // Bob fills the gap from history: every message, once, in order.
    let history = bob.ok("message.history", json!({"room_id": room, "after_seq": 1, "limit": 100})).await;
    let seqs: Vec<i64> = history["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (2..=resumed).collect::<Vec<_>>());
    assert_eq!(history["messages"][0]["body"], "during 0");
}
