//! Admission across nodes: the per-user cap counts a user's connections on every node (also
//! after Redis forgot its scripts), a killed node's connections stop counting, and a
//! revocation closes connections everywhere.

use std::time::Duration;

use serde_json::json;
use tokio_tungstenite::connect_async;

use crate::Cluster;
use crate::helpers::*;

pub async fn refused_status(url: String) -> Option<u16> {
    match connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Some(response.status().as_u16()),
        _ => None,
    }
}

#[actix_web::test]
async fn the_per_user_cap_counts_every_node() {
    let cluster = Cluster::start_with(2, crate::shared_redis(), |s| s.max_connections_per_user = 3).await;
    let nodes = &cluster.nodes;
    let _a = nodes[0].connect("alice").await;
    let _b = nodes[0].connect("alice").await;
    let c = nodes[1].connect("alice").await;
    for node in nodes {
        assert_eq!(refused_status(node.ws_url(&node.token("alice"))).await, Some(429));
    }
    // Another user is not affected; a closed connection gives its place back on any node.
    nodes[1].connect("bob").await;
    c.close().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    nodes[0].connect("alice").await;
}

/// Redis forgets its scripts when it restarts or a replica takes over; the count goes on.
#[actix_web::test]
async fn the_per_user_cap_counts_after_redis_forgets_its_scripts() {
    let cluster = Cluster::start_with(2, crate::shared_redis(), |s| s.max_connections_per_user = 2).await;
    let nodes = &cluster.nodes;
    let _a = nodes[0].connect("alice").await;
    cluster.redis.forget_scripts().await;
    let b = nodes[1].connect("alice").await;
    assert_eq!(refused_status(nodes[0].ws_url(&nodes[0].token("alice"))).await, Some(429));
    cluster.redis.forget_scripts().await;
    b.close().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _c = nodes[0].connect("alice").await;
    assert_eq!(refused_status(nodes[1].ws_url(&nodes[1].token("alice"))).await, Some(429));
}

/// Many users connecting and leaving at once, whose counts go to Redis together (on a Redis
/// Cluster, each user's count in a slot of its own).
#[actix_web::test]
async fn the_per_user_cap_counts_a_crowd_connecting_at_once() {
    let cluster = Cluster::start_with(2, crate::shared_redis(), |s| s.max_connections_per_user = 1).await;
    let nodes = &cluster.nodes;
    let users: Vec<String> = (0..40).map(|i| format!("crowd{i}")).collect();
    let crowd = futures_util::future::join_all(users.iter().map(|user| nodes[0].connect(user))).await;
    for user in &users {
        assert_eq!(refused_status(nodes[1].ws_url(&nodes[1].token(user))).await, Some(429), "{user} counted");
    }
    futures_util::future::join_all(crowd.into_iter().map(Client::close)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _back = futures_util::future::join_all(users.iter().map(|user| nodes[1].connect(user))).await;
}

#[actix_web::test]
async fn a_killed_nodes_connections_stop_counting() {
    let cluster = Cluster::start_with(1, crate::shared_redis(), |s| s.max_connections_per_user = 2).await;
    let (mut doomed, port) = cluster
        .spawn_node_process(
            "doomed",
            &[("SWITCHBOARD_NODE_TTL_SECS", "3"), ("SWITCHBOARD_MAX_CONNECTIONS_PER_USER", "2")],
        )
        .await;
    let auth = switchboard::auth::Authenticator::new(SECRET);
    let token = auth.mint(&switchboard::domain::UserId::parse("alice").unwrap(), &Default::default(), 600);
    let _one = Client::connect_url(&format!("ws://127.0.0.1:{port}/ws?token={token}")).await;
    let _two = Client::connect_url(&format!("ws://127.0.0.1:{port}/ws?token={token}")).await;
    let survivor = &cluster.nodes[0];
    assert_eq!(refused_status(survivor.ws_url(&survivor.token("alice"))).await, Some(429));
    doomed.kill().await.unwrap();
    // Once the dead node's heartbeat lapses its connections no longer count.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if refused_status(survivor.ws_url(&survivor.token("alice"))).await.is_none() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the dead node's connections still count");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[actix_web::test]
async fn a_revocation_closes_connections_on_every_node() {
    let cluster = Cluster::start(2).await;
    let nodes = &cluster.nodes;
    let mut on_first = nodes[0].connect("alice").await;
    let mut on_second = nodes[1].connect("alice").await;
    let mut bob = nodes[1].connect("bob").await;
    let store =
        switchboard::store::Store::connect(&switchboard::store::Backend::from_url(&cluster.database_url).unwrap(), 1)
            .await
            .unwrap();
    let alice = switchboard::domain::UserId::parse("alice").unwrap();
    store.revoke(&alice, switchboard::domain::Timestamp::now()).await.unwrap();
    assert_eq!(on_first.close_code().await, Some(4003));
    assert_eq!(on_second.close_code().await, Some(4003));
    bob.ok("presence.query", json!({"user_ids": ["alice"]})).await;
}
