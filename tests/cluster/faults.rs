//! Redis faults: while Redis is down sends still succeed (durable) and same-node delivery
//! goes on; when it returns, delivery across nodes resumes by itself and clients fill the
//! gap from history. On a Redis Cluster, a master that fails over loses nothing acknowledged.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;
use crate::services::{OwnRedis, OwnRedisCluster, Relay};
use crate::{Cluster, chatting_across, metric};

#[actix_web::test]
async fn redis_restart_loses_nothing() {
    let mut redis = OwnRedis::start().await;
    let cluster = Cluster::start_with(2, crate::Redis::One(redis.url()), |_| {}).await;
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

#[actix_web::test]
async fn after_a_redis_outage_nodes_deliver_what_their_members_missed() {
    let mut redis = OwnRedis::start().await;
    let cluster = Cluster::start_with(2, crate::Redis::One(redis.url()), |_| {}).await;
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let (mut alice, mut bob, room) = chatting_across(n1, n2).await;

    redis.stop().await;
    send_three_unpublished(&mut alice, &room, n1).await;
    redis.run().await;
    // Nobody sends again: bob's node reads what he missed from the store once its link is
    // back, and pushes it in order.
    gets_the_three_then_the_next(&mut alice, &mut bob, &room).await;
}

/// A gap longer than a connection's outbox takes: the node delivers the newest messages it
/// may (a quarter of the outbox) rather than the whole backlog, which would close every member
/// as a slow reader; members read the rest from history.
#[actix_web::test]
async fn after_a_long_redis_outage_members_get_the_newest_without_being_closed() {
    let mut redis = OwnRedis::start().await;
    let cluster = Cluster::start_with(2, crate::Redis::One(redis.url()), |s| s.outbound_queue = 16).await;
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let (mut alice, mut bob, room) = chatting_across(n1, n2).await;

    redis.stop().await;
    for i in 0..20 {
        send(&mut alice, &room, &format!("during {i}")).await;
    }
    until_publishes_dropped(n1, 20.0).await;
    redis.run().await;
    for seq in 18..=21 {
        let caught_up = bob.event("message.new").await;
        assert_eq!(caught_up["message"]["seq"], seq, "the newest four (seq 2 to 21 were missed)");
    }
    send(&mut alice, &room, "after").await;
    let next = bob.event("message.new").await;
    assert_eq!((next["message"]["seq"].as_i64(), next["message"]["body"].as_str()), (Some(22), Some("after")));
}

/// One node cut off from Redis while the others still reach it: its pushes are lost, and the
/// recipients' nodes, whose own links never broke, have nothing to notice. Once its publishes
/// go through again, it tells each room it could not reach, whose members' nodes read what
/// they missed from the store.
#[actix_web::test]
async fn a_node_cut_off_from_redis_tells_the_rooms_it_could_not_reach() {
    let (_redis, relay, cluster) = one_node_behind_a_relay(|_| {}).await;
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let (mut alice, mut bob, room) = chatting_across(n1, n2).await;

    relay.cut(true);
    send_three_unpublished(&mut alice, &room, n1).await;
    relay.cut(false);
    // Nobody sends again: only alice's node's notice tells bob's node.
    gets_the_three_then_the_next(&mut alice, &mut bob, &room).await;
}

#[actix_web::test]
async fn a_hung_redis_loses_no_push() {
    let redis = OwnRedis::start().await;
    let cluster = Cluster::start_with(2, crate::Redis::One(redis.url()), |_| {}).await;
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let (mut alice, mut bob, room) = chatting_across(n1, n2).await;

    // A hung Redis: connections stay open, nothing answers; alice's node gives up publishing.
    redis.freeze(true);
    send_three_unpublished(&mut alice, &room, n1).await;
    redis.freeze(false);
    // Nobody sends again: bob gets every message, once and in order, whether its push went out
    // late or his node reads it from the store once its link answers again.
    gets_the_three_then_the_next(&mut alice, &mut bob, &room).await;
}

/// One node's link to Redis hung, behind a short publish queue: a push the full queue dropped
/// is owed its room a notice too, so nobody needs to write there again for its members on
/// other nodes (whose links never faltered) to get it.
#[actix_web::test]
async fn a_hung_redis_link_behind_a_full_publish_queue_loses_no_push() {
    let (_redis, relay, cluster) = one_node_behind_a_relay(|s| s.bus_queue = 8).await;
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let (mut alice, mut bob, with_bob) = chatting_across(n1, n2).await;
    let mut carol = n2.connect("carol").await;
    let with_carol = direct_room(&mut alice, &carol).await;
    send(&mut alice, &with_carol, "before").await;
    assert_eq!(carol.event("message.new").await["message"]["body"], "before");
    let dropped = metric(n1.port, "switchboard_bus_dropped_total").await;

    relay.stall(true);
    // The first push hangs in the publisher (for the 2 s response timeout, then fails) while
    // the next ones fill the queue, until one finds it full; then carol's finds it full too.
    let stalled_at = tokio::time::Instant::now();
    let mut to_bob = 0;
    while metric(n1.port, "switchboard_bus_dropped_total").await < dropped + 1.0 {
        assert!(to_bob < 16, "the publish queue never filled");
        send(&mut alice, &with_bob, &format!("during {to_bob}")).await;
        to_bob += 1;
    }
    send(&mut alice, &with_carol, "dropped").await;
    assert!(stalled_at.elapsed() < Duration::from_millis(1500), "the queue may have drained before carol's push");
    until_publishes_dropped(n1, dropped + 3.0).await;
    relay.stall(false);

    for i in 0..to_bob {
        let pushed = tokio::time::timeout(Duration::from_secs(20), bob.event("message.new")).await.expect("bob's push");
        assert_eq!(pushed["message"]["body"], format!("during {i}"));
    }
    let missed = tokio::time::timeout(Duration::from_secs(20), carol.event("message.new")).await.expect("carol's push");
    assert_eq!((missed["message"]["body"].as_str(), missed["message"]["seq"].as_i64()), (Some("dropped"), Some(2)));
}

/// A member leaves while her node is cut off from Redis: once its link is back, the other
/// node reads the room's members again with the messages it missed, so the leaver's
/// connection there gets nothing more and may not post.
#[actix_web::test]
async fn a_node_cut_off_from_redis_loses_no_member_leaving() {
    let (_redis, relay, cluster) = one_node_behind_a_relay(|_| {}).await;
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let mut owner = n1.connect("owner").await;
    let mut leaver = n1.connect("leaver").await;
    let mut leaver_far = n2.connect("leaver").await;
    let mut stayer = n2.connect("stayer").await;
    let room = owner.ok("room.group.create", json!({"name": "split", "members": ["leaver", "stayer"]})).await;
    let room = room["room"]["id"].as_str().unwrap().to_owned();
    send(&mut owner, &room, "first").await;
    for client in [&mut leaver_far, &mut stayer] {
        assert_eq!(client.event("message.new").await["message"]["body"], "first");
    }
    let dropped = metric(n1.port, "switchboard_bus_dropped_total").await;

    relay.cut(true);
    leaver.ok("room.leave", json!({"room_id": room})).await;
    send(&mut owner, &room, "during").await;
    // Every push of the leave and of "during" given up (none still waiting for the link, to go
    // out live once it is back): the count no longer moves for longer than Redis's response
    // timeout.
    until_publishes_dropped(n1, dropped + 2.0).await;
    until_publishes_settle(n1).await;
    relay.cut(false);

    // The room's notice reached n2: stayer gets what she missed, and the leaver nothing.
    let missed = tokio::time::timeout(Duration::from_secs(20), stayer.event("message.new")).await.expect("caught up");
    assert_eq!(missed["message"]["body"], "during");
    assert_eq!(leaver_far.fails("message.send", json!({"room_id": room, "body": "still here?"})).await, "forbidden");
    send(&mut owner, &room, "after").await;
    assert_eq!(stayer.event("message.new").await["message"]["body"], "after");
    leaver_far.no_event("message.new", Duration::from_millis(300)).await;
}

/// While `node` is cut off from Redis, the rooms and live sessions a user joins or leaves
/// through it are not lost to the user's connections on other nodes: a group created with a
/// user reaches them there, and a viewer who left a live session gets nothing more of it
/// there and may not comment. Each user's topic is owed a `resumed` notice, on which the
/// other node reads the user's rooms and sessions again.
#[actix_web::test]
async fn a_node_cut_off_from_redis_loses_no_room_or_live_session_change() {
    let (_redis, relay, cluster) = one_node_behind_a_relay(|s| s.live_comment_rate = 50).await;
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let mut owner = n1.connect("owner").await;
    let mut joiner_far = n2.connect("joiner").await;
    let mut host = n1.connect("host").await;
    let mut viewer = n1.connect("viewer").await;
    let mut viewer_far = n2.connect("viewer").await;
    let mut stayer_far = n2.connect("stayer").await;
    let session = host.ok("live.create", json!({"title": "split"})).await["session"]["id"].clone();
    viewer.ok("live.join", json!({"session_id": session})).await;
    stayer_far.ok("live.join", json!({"session_id": session})).await;
    host.ok("live.comment", json!({"session_id": session, "text": "before"})).await;
    for client in [&mut viewer_far, &mut stayer_far] {
        assert_eq!(client.event("live.comment").await["text"], "before");
    }
    let dropped = metric(n1.port, "switchboard_bus_dropped_total").await;

    relay.cut(true);
    let room = owner.ok("room.group.create", json!({"name": "made in the dark", "members": ["joiner"]})).await;
    let room = room["room"]["id"].as_str().unwrap().to_owned();
    viewer.ok("live.leave", json!({"session_id": session})).await;
    until_publishes_dropped(n1, dropped + 2.0).await;
    until_publishes_settle(n1).await;
    relay.cut(false);

    // n2 reads both users again: the joiner listens to the new group there, and the viewer
    // no longer listens to the session.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        send(&mut owner, &room, "are you there?").await;
        let got = tokio::time::timeout(Duration::from_millis(500), joiner_far.event("message.new")).await;
        if let Ok(got) = got {
            assert_eq!(got["message"]["room_id"], room.as_str());
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the joiner never heard of the group on the other node");
    }
    host.ok("live.comment", json!({"session_id": session, "text": "after"})).await;
    assert_eq!(stayer_far.event_matching(|f| f["data"]["text"] == "after").await["event"], "live.comment");
    viewer_far.drop_events("live.comment");
    viewer_far.no_event("live.comment", Duration::from_millis(300)).await;
    let refused = viewer_far.fails("live.comment", json!({"session_id": session, "text": "still here"})).await;
    assert_eq!(refused, "forbidden");
}

/// Waits until `node`'s count of given-up publishes stays still for longer than Redis's 2 s
/// response timeout: none is still waiting for the link, to go out live once it is back.
async fn until_publishes_settle(node: &TestApp) {
    let mut settled = metric(node.port, "switchboard_bus_dropped_total").await;
    loop {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let now = metric(node.port, "switchboard_bus_dropped_total").await;
        if now == settled {
            return;
        }
        settled = now;
    }
}

/// Two nodes on one Redis, the first (started with `tweak`) reaching it through a relay that
/// can be cut or stalled while the second's link stays whole.
async fn one_node_behind_a_relay(tweak: impl Fn(&mut switchboard::Settings)) -> (OwnRedis, Relay, Cluster) {
    let redis = OwnRedis::start().await;
    let relay = Relay::to(redis.port()).await;
    let mut cluster = Cluster::start_with(1, crate::Redis::One(relay.url()), tweak).await;
    cluster.add_node(|s| s.redis_url = Some(redis.url())).await;
    (redis, relay, cluster)
}

/// Alice sends "during 0" to "during 2" on `node`, which cannot publish; returns once it has
/// given up publishing their pushes.
async fn send_three_unpublished(alice: &mut Client, room: &str, node: &TestApp) {
    for i in 0..3 {
        send(alice, room, &format!("during {i}")).await;
    }
    until_publishes_dropped(node, 3.0).await;
}

/// Bob gets the three messages alice's node could not publish, in order (after the one
/// `chatting_across` sent), then, nothing twice, her next message as the next push.
async fn gets_the_three_then_the_next(alice: &mut Client, bob: &mut Client, room: &str) {
    for i in 0..3 {
        let missed = bob.event("message.new").await;
        assert_eq!(missed["message"]["body"], format!("during {i}"));
        assert_eq!(missed["message"]["seq"], i + 2);
    }
    send(alice, room, "after").await;
    assert_eq!(bob.event("message.new").await["message"]["body"], "after");
}

/// Waits (up to 20 s) until `node` has given up publishing at least `pushes` pushes to Redis.
async fn until_publishes_dropped(node: &TestApp, pushes: f64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while metric(node.port, "switchboard_bus_dropped_total").await < pushes {
        assert!(tokio::time::Instant::now() < deadline, "the node never gave up publishing");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A Redis Cluster master killed while messages flow: its replica takes over, the nodes
/// subscribe again on the new master, and every acknowledged message reaches its recipient
/// live, once, in order: pushed, or read from the store by the recipient's node (once its link
/// is back, or when the next message shows the gap).
#[actix_web::test]
async fn a_redis_cluster_master_failing_over_under_traffic_loses_nothing_acknowledged() {
    let mut redis = OwnRedisCluster::start().await;
    let cluster = Cluster::start_with(2, crate::Redis::Cluster(redis.seeds()), |_| {}).await;
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let mut pairs = Vec::new();
    for i in 0..6 {
        let mut alice = n1.connect(&format!("alice{i}")).await;
        let bob = n2.connect(&format!("bob{i}")).await;
        let room = direct_room(&mut alice, &bob).await;
        pairs.push((alice, bob, room));
    }
    // One connection per Redis master per node, carrying that master's subscriptions too.
    assert_eq!(redis.connections_per_master().await, vec![(2, 2); 3]);
    // The master that serves the first room's channel dies.
    let doomed = redis.master_of(&format!("{}:r:{}", cluster.prefix, pairs[0].2)).await;

    let mut acked: Vec<Vec<String>> = vec![Vec::new(); pairs.len()];
    let started = tokio::time::Instant::now();
    let mut killed = false;
    while started.elapsed() < Duration::from_secs(6) {
        if !killed && started.elapsed() > Duration::from_secs(1) {
            redis.kill(doomed).await;
            killed = true;
        }
        for (i, (alice, _, room)) in pairs.iter_mut().enumerate() {
            let body = format!("m{}", acked[i].len());
            send(alice, room, &body).await;
            acked[i].push(body);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    redis.until_failed_over(doomed).await;
    // One more message each once the cluster is whole: a push lost in the failover leaves a gap
    // before it, which the recipient's node fills from the store.
    for (i, (alice, _, room)) in pairs.iter_mut().enumerate() {
        send(alice, room, "after").await;
        acked[i].push("after".to_owned());
    }

    for (i, (_, bob, _)) in pairs.iter_mut().enumerate() {
        for body in &acked[i] {
            let message = tokio::time::timeout(Duration::from_secs(20), bob.event("message.new"))
                .await
                .unwrap_or_else(|_| panic!("bob{i} never got {body} of {}", acked[i].len()));
            assert_eq!(&message["message"]["body"], body, "bob{i}: in order, once");
        }
    }
    assert!(metric(n2.port, "switchboard_redis_reconnects_total").await >= 1.0);
}

/// A room's channel whose hash slot moves to another master: Redis unsubscribes the nodes
/// from it, they subscribe again on the new master, and nothing sent around the move is lost.
#[actix_web::test]
async fn a_redis_cluster_slot_moving_to_another_master_loses_nothing() {
    let redis = OwnRedisCluster::start().await;
    let cluster = Cluster::start_with(2, crate::Redis::Cluster(redis.seeds()), |_| {}).await;
    let (mut alice, mut bob, room) = chatting_across(&cluster.nodes[0], &cluster.nodes[1]).await;
    let channel = format!("{}:r:{room}", cluster.prefix);

    let (from, to) = redis.move_slot_of(&channel).await;
    assert_ne!(from, redis.master_of(&channel).await);
    assert_eq!(to, redis.master_of(&channel).await);
    for i in 0..20 {
        send(&mut alice, &room, &format!("after {i}")).await;
    }
    for i in 0..20 {
        let message = tokio::time::timeout(Duration::from_secs(10), bob.event("message.new"))
            .await
            .unwrap_or_else(|_| panic!("bob never got message {i} after the slot moved"));
        assert_eq!(message["message"]["body"], format!("after {i}"));
    }
}
