//! Presence across nodes: online wherever a user is connected, offline after their last
//! connection on any node closes, and after the node holding them dies.

use std::time::Duration;

use serde_json::json;

use crate::Cluster;
use crate::helpers::*;

#[actix_web::test]
async fn presence_is_cluster_wide() {
    let cluster = Cluster::start(3).await;
    let nodes = &cluster.nodes;
    let mut alice = nodes[0].connect("alice").await;
    let bob_b = nodes[1].connect("bob").await;
    direct_room(&mut alice, &bob_b).await;
    // Bob's arrival may still be announced: he connected just before their room existed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    alice.no_event("message.new", Duration::from_millis(10)).await;
    alice.drop_events("presence");
    let bob_c = nodes[2].connect("bob").await;

    let query = json!({"user_ids": ["bob"]});
    for node in nodes {
        let mut asker = node.connect("asker").await;
        assert_eq!(asker.ok("presence.query", query.clone()).await["users"][0]["online"], true);
    }
    // Closing one of two devices on different nodes does not make bob offline.
    bob_b.close().await;
    alice.no_event("presence", Duration::from_millis(500)).await;
    assert_eq!(alice.ok("presence.query", query.clone()).await["users"][0]["online"], true);
    bob_c.close().await;
    let offline = alice.event("presence").await;
    assert_eq!(offline["user_id"], "bob");
    assert_eq!(offline["online"], false);
    assert_eq!(alice.ok("presence.query", query.clone()).await["users"][0]["online"], false);

    let _bob = nodes[2].connect("bob").await;
    let online = alice.event("presence").await;
    assert_eq!(online["online"], true);
}

#[actix_web::test]
async fn users_of_a_killed_node_go_offline() {
    let ttl = "3";
    let cluster = Cluster::start_with(1, crate::shared_redis(), |s| s.node_ttl_secs = 3).await;
    let (mut doomed, port) = cluster.spawn_node_process("doomed", &[("SWITCHBOARD_NODE_TTL_SECS", ttl)]).await;

    let mut alice = cluster.nodes[0].connect("alice").await;
    let bob_url = format!("ws://127.0.0.1:{port}/ws?token={}", cluster.nodes[0].token("bob"));
    let bob = Client::connect_url(&bob_url).await;
    assert_eq!(bob.hello["node"], "doomed");
    direct_room(&mut alice, &bob).await;
    assert_eq!(alice.ok("presence.query", json!({"user_ids": ["bob"]})).await["users"][0]["online"], true);

    doomed.start_kill().unwrap(); // SIGKILL: no drain, no goodbye
    doomed.wait().await.unwrap();
    let started = std::time::Instant::now();
    // Bob's arrival may be announced late (he connected before their room existed): wait
    // for the offline push itself.
    let offline = tokio::time::timeout(
        Duration::from_secs(30),
        alice.event_matching(|f| f["event"] == "presence" && f["data"]["online"] == false),
    )
    .await
    .expect("offline within 30 s")["data"]
        .clone();
    assert_eq!(offline["user_id"], "bob");
    assert_eq!(offline["online"], false);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(alice.ok("presence.query", json!({"user_ids": ["bob"]})).await["users"][0]["online"], false);
    drop(bob);
}

#[actix_web::test]
async fn a_drained_node_hands_its_users_over() {
    let cluster = Cluster::start_with(1, crate::shared_redis(), |s| s.node_ttl_secs = 3).await;
    let (mut drained, port) = cluster.spawn_node_process("drained", &[("SWITCHBOARD_NODE_TTL_SECS", "3")]).await;
    let token = |user: &str| cluster.nodes[0].token(user);
    let on_drained = |user: &str| format!("ws://127.0.0.1:{port}/ws?token={}", token(user));

    let mut alice = cluster.nodes[0].connect("alice").await;
    let mut bob = Client::connect_url(&on_drained("bob")).await;
    let mut carol = Client::connect_url(&on_drained("carol")).await;
    direct_room(&mut bob, &alice).await;
    direct_room(&mut carol, &alice).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    alice.no_event("message.new", Duration::from_millis(10)).await;
    alice.drop_events("presence");

    std::process::Command::new("kill").args(["-TERM", &drained.id().unwrap().to_string()]).status().unwrap();
    assert_eq!(bob.close_code().await, Some(1012));
    assert_eq!(carol.close_code().await, Some(1012));
    // Carol reconnects through the load balancer to the other node; bob does not come back.
    let _carol = cluster.nodes[0].connect("carol").await;
    assert!(tokio::time::timeout(Duration::from_secs(30), drained.wait()).await.unwrap().unwrap().success());

    let offline = tokio::time::timeout(
        Duration::from_secs(30),
        alice.event_matching(|f| f["event"] == "presence" && f["data"]["online"] == false),
    )
    .await
    .expect("bob is reaped as offline")["data"]
        .clone();
    assert_eq!(offline["user_id"], "bob");
    assert!(offline["last_seen"].is_string());
    // Carol never went offline: no push about her, and she is online.
    assert!(
        !alice
            .has_event(|f| f["event"] == "presence" && f["data"]["user_id"] == "carol" && f["data"]["online"] == false)
    );
    let carol_now = alice.ok("presence.query", json!({"user_ids": ["carol", "bob"]})).await["users"].clone();
    assert_eq!(carol_now[0]["online"], true);
    assert_eq!(carol_now[1]["online"], false);
}

#[actix_web::test]
async fn users_of_a_node_frozen_past_its_ttl_come_back_when_it_resumes() {
    let cluster = Cluster::start_with(1, crate::shared_redis(), |s| {
        s.node_ttl_secs = 3;
        s.max_connections_per_user = 2;
    })
    .await;
    let frozen_env = [("SWITCHBOARD_NODE_TTL_SECS", "3"), ("SWITCHBOARD_MAX_CONNECTIONS_PER_USER", "2")];
    let (frozen, port) = cluster.spawn_node_process("frozen", &frozen_env).await;
    let pid = frozen.id().expect("the node runs").to_string();
    let mut alice = cluster.nodes[0].connect("alice").await;
    let bob_url = format!("ws://127.0.0.1:{port}/ws?token={}", cluster.nodes[0].token("bob"));
    let mut bob = Client::connect_url(&bob_url).await;
    let room = direct_room(&mut alice, &bob).await;
    let query = json!({"user_ids": ["bob"]});
    assert_eq!(alice.ok("presence.query", query.clone()).await["users"][0]["online"], true);

    // Frozen past its TTL, the node is taken for dead: bob goes offline for everyone.
    std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    let offline = alice.event_matching(|f| f["event"] == "presence" && f["data"]["online"] == false).await;
    assert_eq!(offline["data"]["user_id"], "bob");
    // An "online" from bob's connect may have come after the room existed: only a new one counts.
    alice.drop_events("presence");

    // Resumed, with bob still connected to it: bob is online again, and told so.
    std::process::Command::new("kill").args(["-CONT", &pid]).status().unwrap();
    let online = alice.event_matching(|f| f["event"] == "presence" && f["data"]["online"] == true).await;
    assert_eq!(online["data"]["user_id"], "bob");
    assert_eq!(alice.ok("presence.query", query).await["users"][0]["online"], true);
    // And his node still delivers to him.
    send(&mut alice, &room, "welcome back").await;
    assert_eq!(bob.event("message.new").await["message"]["body"], "welcome back");
    // His connection there counts again towards his cap of 2: one more anywhere, not two.
    let n1 = &cluster.nodes[0];
    let _second = n1.connect("bob").await;
    assert_eq!(crate::admission::refused_status(n1.ws_url(&n1.token("bob"))).await, Some(429));
    drop(frozen);
}
