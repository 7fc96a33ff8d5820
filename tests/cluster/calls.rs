//! Calls across nodes: caller and callee on different nodes, devices on both, and a call
//! whose caller's node dies while it rings.

use std::time::Duration;

use serde_json::json;

use crate::Cluster;
use crate::helpers::*;

#[actix_web::test]
async fn calls_work_across_nodes_and_devices() {
    let cluster = Cluster::start(2).await;
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let mut alice = n1.connect("alice").await;
    let mut bob_here = n1.connect("bob").await;
    let mut bob_there = n2.connect("bob").await;
    let room = direct_room(&mut alice, &bob_there).await;
    let id = alice.ok("call.start", json!({"room_id": room, "media": "audio"})).await["call"]["id"].clone();
    for device in [&mut bob_here, &mut bob_there] {
        assert_eq!(device.event("call.incoming").await["call"]["media"], "audio");
    }
    bob_there.ok("call.accept", json!({"call_id": id})).await;
    assert_eq!(alice.event("call.accepted").await["call"]["state"], "active");
    assert_eq!(bob_here.event("call.ended").await["reason"], "answered_elsewhere");
    alice.ok("call.signal", json!({"call_id": id, "signal": {"sdp": "v=0"}})).await;
    assert_eq!(bob_there.event("call.signal").await["signal"]["sdp"], "v=0");
    bob_here.no_event("call.signal", Duration::from_millis(300)).await;
    bob_there.ok("call.signal", json!({"call_id": id, "signal": {"sdp": "answer"}})).await;
    assert_eq!(alice.event("call.signal").await["from"], "bob");

    // Busy is checked across nodes.
    let mut carol = n2.connect("carol").await;
    let carol_alice = direct_room(&mut carol, &alice).await;
    let busy = carol.ok("call.start", json!({"room_id": carol_alice})).await["call"].clone();
    assert_eq!(busy["end_reason"], "busy");

    bob_there.ok("call.end", json!({"call_id": id})).await;
    assert_eq!(alice.event("call.ended").await["reason"], "hangup");
}

#[actix_web::test]
async fn a_call_whose_node_dies_while_ringing_does_not_ring_forever() {
    let cluster = Cluster::start_with(1, crate::shared_redis(), |s| {
        s.call_ring_secs = 3;
        s.node_ttl_secs = 3;
    })
    .await;
    let extra = [("SWITCHBOARD_CALL_RING_SECS", "3"), ("SWITCHBOARD_NODE_TTL_SECS", "3")];
    let (mut doomed, port) = cluster.spawn_node_process("doomed", &extra).await;

    let mut bob = cluster.nodes[0].connect("bob").await;
    let url = format!("ws://127.0.0.1:{port}/ws?token={}", cluster.nodes[0].token("alice"));
    let mut alice = Client::connect_url(&url).await;
    let room = direct_room(&mut alice, &bob).await;
    let id = alice.ok("call.start", json!({"room_id": room})).await["call"]["id"].clone();
    assert_eq!(bob.event("call.incoming").await["call"]["id"], id);

    doomed.start_kill().unwrap();
    doomed.wait().await.unwrap();
    // The surviving node's sweeper ends it: missed at the ring timeout.
    let ended = tokio::time::timeout(Duration::from_secs(20), bob.event("call.ended")).await.expect("the call ends");
    assert_eq!(ended["call"]["id"], id);
    assert_eq!(ended["call"]["state"], "ended");
    assert!(matches!(ended["reason"].as_str(), Some("missed" | "disconnected")), "{ended}");
    // And the line is free again.
    let mut carol = cluster.nodes[0].connect("carol").await;
    let carol_bob = direct_room(&mut carol, &bob).await;
    assert_eq!(carol.ok("call.start", json!({"room_id": carol_bob})).await["call"]["state"], "ringing");
}
