//! Chat across nodes: every member receives every message exactly once, in seq order, on
//! whichever node they are connected to; nodes without members receive nothing.

use serde_json::json;

use crate::helpers::*;
use crate::{Cluster, metric};

/// Reads `count` message.new pushes and returns their (seq, body) in arrival order.
async fn collect(client: &mut Client, count: usize) -> Vec<(i64, String)> {
    let mut got = Vec::new();
    for _ in 0..count {
        let message = client.event("message.new").await["message"].clone();
        got.push((message["seq"].as_i64().unwrap(), message["body"].as_str().unwrap().to_owned()));
    }
    got
}

fn assert_in_order_once(who: &str, got: &[(i64, String)]) {
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "{who} got messages out of seq order: {got:?}");
}

#[actix_web::test]
async fn direct_chat_across_nodes() {
    let cluster = Cluster::start(2).await;
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let mut alice = n1.connect("alice").await;
    let mut bob = n2.connect("bob").await;
    let mut bob_phone = n1.connect("bob").await;
    assert_eq!(alice.hello["node"], "n1");
    assert_eq!(bob.hello["node"], "n2");
    let room = direct_room(&mut alice, &bob).await;
    let mut sent = Vec::new();
    for i in 0..20 {
        sent.push(send(&mut alice, &room, &format!("hi {i}")).await["seq"].as_i64().unwrap());
    }
    for client in [&mut bob, &mut bob_phone] {
        let got = collect(client, 20).await;
        assert_eq!(got.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), sent);
        client.no_event("message.new", std::time::Duration::from_millis(300)).await;
    }
    // Read receipts and typing cross nodes too.
    bob.ok("room.read", json!({"room_id": room})).await;
    assert_eq!(alice.event("room.read").await["seq"], 20);
    bob.ok("typing", json!({"room_id": room, "typing": true})).await;
    assert_eq!(alice.event("typing").await["user_id"], "bob");
}

#[actix_web::test]
async fn group_chat_on_three_nodes_exactly_once_in_order() {
    let mut cluster = Cluster::start(3).await;
    cluster.add_node(|_| {}).await; // n4 holds nobody in the group
    let nodes = &cluster.nodes;
    let mut owner = nodes[0].connect("owner").await;
    let mut bob = nodes[1].connect("bob").await;
    let mut carol = nodes[2].connect("carol").await;
    let mut dave_a = nodes[0].connect("dave").await;
    let mut dave_b = nodes[2].connect("dave").await;
    let _outsider = nodes[3].connect("outsider").await;
    let room = owner.ok("room.group.create", json!({"name": "spread", "members": ["bob", "carol", "dave"]})).await
        ["room"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for client in [&mut bob, &mut carol, &mut dave_a, &mut dave_b] {
        assert_eq!(client.event("room.created").await["room"]["id"], room.as_str());
    }
    let received_before = metric(nodes[3].port, "switchboard_bus_received_total").await;

    // Three senders on three nodes at once, 20 messages each, without waiting for acks.
    let per_sender = 20;
    let mut senders = Vec::new();
    for (node, user) in [(0, "owner"), (1, "bob"), (2, "carol")] {
        let url = nodes[node].ws_url(&nodes[node].token(user));
        let room = room.clone();
        senders.push(actix_rt::spawn(async move {
            let mut client = Client::connect_url(&url).await;
            for i in 0..per_sender {
                let frame =
                    json!({"event": "message.send", "id": i, "data": {"room_id": room, "body": format!("{user} {i}")}});
                client.send_text(frame.to_string()).await;
            }
            let mut seqs = Vec::new();
            for i in 0..per_sender {
                let ack = client.ack(i).await;
                assert_eq!(ack["ok"], true, "{ack}");
                seqs.push(ack["data"]["message"]["seq"].as_i64().unwrap());
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for sender in senders {
        all.extend(sender.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (1..=3 * per_sender).collect::<Vec<_>>(), "gapless seqs across nodes");

    // Everyone (each of dave's devices too) gets all 60 once, in seq order. The members'
    // own first connections did not send (the senders used separate connections).
    for (name, client) in [
        ("owner", &mut owner),
        ("bob", &mut bob),
        ("carol", &mut carol),
        ("dave_a", &mut dave_a),
        ("dave_b", &mut dave_b),
    ] {
        let got = collect(client, 3 * per_sender as usize).await;
        assert_in_order_once(name, &got);
        assert_eq!(got.iter().map(|(s, _)| *s).collect::<Vec<_>>(), (1..=3 * per_sender).collect::<Vec<_>>());
        client.no_event("message.new", std::time::Duration::from_millis(300)).await;
    }
    // The node holding no member received none of it.
    assert_eq!(metric(nodes[3].port, "switchboard_bus_received_total").await, received_before);
}

/// One user's two devices, on two nodes, send the same 40 messages (same client ids) at once,
/// one device going through four shared rooms in one order and the other in the reverse:
/// the nodes' batches lock overlapping rooms and race to store the same keys.
#[actix_web::test]
async fn the_same_messages_sent_on_two_nodes_at_once_are_stored_once() {
    let cluster = Cluster::start(2).await;
    let nodes = &cluster.nodes;
    let mut owner = nodes[0].connect("owner").await;
    let mut rooms = Vec::new();
    for i in 0..4 {
        let room = owner.ok("room.group.create", json!({"name": format!("r{i}"), "members": ["bob"]})).await;
        rooms.push(room["room"]["id"].as_str().unwrap().to_owned());
    }
    let count = 40;
    let frames: Vec<serde_json::Value> = (0..count)
        .map(|i| {
            let data = json!({"room_id": rooms[i % 4], "body": format!("m{i}"), "client_id": format!("c-{i}")});
            json!({"event": "message.send", "id": i, "data": data})
        })
        .collect();
    let mut devices = Vec::new();
    for (node, reverse) in [(0, false), (1, true)] {
        let url = nodes[node].ws_url(&nodes[node].token("owner"));
        let mut frames = frames.clone();
        if reverse {
            frames.reverse();
        }
        devices.push(actix_rt::spawn(async move {
            let mut client = Client::connect_url(&url).await;
            for frame in &frames {
                client.send_text(frame.to_string()).await;
            }
            let mut messages = Vec::new();
            for i in 0..count as i64 {
                let ack = client.ack(i).await;
                assert_eq!(ack["ok"], true, "{ack}");
                messages.push(ack["data"]["message"].clone());
            }
            messages
        }));
    }
    let first = devices.remove(0).await.unwrap();
    let second = devices.remove(0).await.unwrap();
    for (a, b) in first.iter().zip(&second) {
        assert_eq!(a["id"], b["id"], "both devices were answered with the one stored message");
        assert_eq!(a["seq"], b["seq"]);
    }
    for room in &rooms {
        let history = owner.ok("message.history", json!({"room_id": room, "limit": 50})).await;
        let seqs: Vec<i64> =
            history["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect();
        assert_eq!(seqs, (1..=(count / 4) as i64).collect::<Vec<_>>(), "each message stored once, seqs gapless");
    }
    // Whichever node came second with a key had its batch refused and written again.
    let retries = metric(nodes[0].port, "switchboard_write_resend_retries_total").await
        + metric(nodes[1].port, "switchboard_write_resend_retries_total").await;
    assert!(retries >= 1.0, "no batch was refused: the race was not run");
}

#[actix_web::test]
async fn new_rooms_reach_members_on_other_nodes() {
    let cluster = Cluster::start(2).await;
    let mut alice = cluster.nodes[0].connect("alice").await;
    let mut bob = cluster.nodes[1].connect("bob").await;
    // The direct room is new to bob's node: it must start listening before the first message.
    let room = direct_room(&mut alice, &bob).await;
    let message = send(&mut alice, &room, "first").await;
    assert_eq!(bob.event("message.new").await["message"], message);
}

#[actix_web::test]
async fn a_member_who_leaves_stops_receiving_on_every_node() {
    let cluster = Cluster::start(2).await;
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let mut owner = n1.connect("owner").await;
    let mut leaver = n1.connect("leaver").await;
    let mut leaver_far = n2.connect("leaver").await;
    let mut stayer = n2.connect("stayer").await;
    let room =
        owner.ok("room.group.create", json!({"name": "split", "members": ["leaver", "stayer"]})).await["room"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
    let first = send(&mut owner, &room, "first").await;
    for client in [&mut leaver, &mut leaver_far, &mut stayer] {
        assert_eq!(client.event("message.new").await["message"], first);
    }

    leaver.ok("room.leave", json!({"room_id": room})).await;
    let left = json!({"room_id": room, "user_id": "leaver"});
    for client in [&mut owner, &mut stayer, &mut leaver_far] {
        assert_eq!(client.event("room.member_left").await, left);
    }
    // n2 has heard of it (stayer was told there): the leaver is refused and hears nothing there.
    assert_eq!(leaver_far.fails("message.send", json!({"room_id": room, "body": "hello?"})).await, "forbidden");
    let after = send(&mut stayer, &room, "after").await;
    assert_eq!(owner.event("message.new").await["message"], after);
    leaver_far.no_event("message.new", std::time::Duration::from_millis(300)).await;
    leaver.no_event("message.new", std::time::Duration::ZERO).await;
}
