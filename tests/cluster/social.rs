//! Notifications and matches reach users on other nodes; a mutual like made at the same
//! instant on two nodes is one match.

use std::time::Duration;

use serde_json::json;

use crate::Cluster;
use crate::helpers::*;

#[actix_web::test]
async fn notifications_cross_nodes() {
    let cluster = Cluster::start(2).await;
    let mut alice = cluster.nodes[0].connect("alice").await;
    let mut bob = cluster.nodes[1].connect("bob").await;
    alice.ok("follow.request", json!({"user_id": "bob"})).await;
    assert_eq!(bob.event("notification").await["kind"], "follow_request");
    let room = bob.ok("follow.respond", json!({"user_id": "alice", "accept": true})).await["room"]["id"].clone();
    assert_eq!(alice.event("notification").await["room_id"], room);
    let message = send(&mut alice, room.as_str().unwrap(), "hello across").await;
    assert_eq!(bob.event("message.new").await["message"], message);
}

#[actix_web::test]
async fn simultaneous_likes_on_two_nodes_match_exactly_once() {
    let cluster = Cluster::start(2).await;
    for round in 0..5 {
        let (a, b) = (format!("a{round}"), format!("b{round}"));
        let mut alice = cluster.nodes[0].connect(&a).await;
        let mut bob = cluster.nodes[1].connect(&b).await;
        let (mut alice_watch, mut bob_watch) = (cluster.nodes[1].connect(&a).await, cluster.nodes[0].connect(&b).await);
        let like_a = alice.request("like", json!({"user_id": b, "like": true}));
        let like_b = bob.request("like", json!({"user_id": a, "like": true}));
        let (ack_a, ack_b) = futures_util::join!(like_a, like_b);
        assert_eq!(ack_a["ok"], true, "{ack_a}");
        assert!(ack_a["data"]["matched"] == true || ack_b["data"]["matched"] == true);
        let room = if ack_a["data"]["matched"] == true { &ack_a } else { &ack_b }["data"]["room"]["id"].clone();
        for (client, other) in [(&mut alice, &b), (&mut alice_watch, &b), (&mut bob, &a), (&mut bob_watch, &a)] {
            assert_eq!(client.event("match").await, json!({"user_id": other, "room_id": room}));
            client.no_event("match", Duration::from_millis(300)).await;
        }
    }
}
