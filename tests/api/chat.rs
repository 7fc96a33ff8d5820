//! Rooms and messages: direct and group rooms, send, history, read, clear, typing, list.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::both;
use crate::helpers::*;

async fn direct_room_is_created_once_per_pair(db: Db) {
    let app = spawn_app(db).await;
    let mut alice = app.connect("alice").await;
    let mut bob = app.connect("bob").await;
    let first = direct_room(&mut alice, &bob).await;
    let again = direct_room(&mut alice, &bob).await;
    let from_bob = direct_room(&mut bob, &alice).await;
    assert_eq!(first, again);
    assert_eq!(first, from_bob);
    let room = alice.ok("room.direct", json!({"user_id": "bob"})).await["room"].clone();
    assert_eq!(room["kind"], "direct");
    let members: HashSet<&str> = room["members"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    assert_eq!(members, HashSet::from(["alice", "bob"]));
    assert_eq!(alice.fails("room.direct", json!({"user_id": "alice"})).await, "bad_request");
    assert_eq!(alice.fails("room.direct", json!({})).await, "bad_request");
}

async fn messages_reach_members_once_with_increasing_seq(db: Db) {
    let app = spawn_app(db).await;
    let mut alice = app.connect("alice").await;
    let mut alice_phone = app.connect("alice").await;
    let mut bob = app.connect("bob").await;
    let room = direct_room(&mut alice, &bob).await;

    for (i, body) in ["one", "two", "three"].iter().enumerate() {
        let message = send(&mut alice, &room, body).await;
        assert_eq!(message["seq"], i as i64 + 1);
        assert_eq!(message["sender_id"], "alice");
        assert_eq!(message["kind"], "text");
        assert_eq!(message["room_id"], room.as_str());
        assert!(message["created_at"].as_str().unwrap().ends_with('Z'));
        let pushed = bob.event("message.new").await["message"].clone();
        assert_eq!(pushed, message);
        // The sender's other device sees it too.
        assert_eq!(alice_phone.event("message.new").await["message"], message);
    }
    // The sending connection has its ack instead of a push.
    alice.no_event("message.new", Duration::from_millis(300)).await;
    bob.no_event("message.new", Duration::from_millis(300)).await;
}

async fn outsiders_cannot_read_or_write(db: Db) {
    let app = spawn_app(db).await;
    let mut alice = app.connect("alice").await;
    let bob = app.connect("bob").await;
    let mut eve = app.connect("eve").await;
    let room = direct_room(&mut alice, &bob).await;
    send(&mut alice, &room, "secret").await;
    for (event, data) in [
        ("message.send", json!({"room_id": room, "body": "hi"})),
        ("message.history", json!({"room_id": room})),
        ("room.read", json!({"room_id": room})),
        ("room.clear", json!({"room_id": room})),
        ("typing", json!({"room_id": room, "typing": true})),
    ] {
        assert_eq!(eve.fails(event, data).await, "forbidden", "{event}");
    }
    let unknown = uuid::Uuid::new_v4().to_string();
    assert_eq!(eve.fails("message.send", json!({"room_id": unknown, "body": "x"})).await, "not_found");
    assert_eq!(eve.fails("message.send", json!({"room_id": "nope", "body": "x"})).await, "bad_request");
    eve.no_event("message.new", Duration::from_millis(300)).await;
}

async fn client_id_makes_send_idempotent(db: Db) {
    let app = spawn_app(db).await;
    let mut alice = app.connect("alice").await;
    let mut bob = app.connect("bob").await;
    let room = direct_room(&mut alice, &bob).await;
    let data = json!({"room_id": room, "body": "once", "client_id": "c-1"});
    let first = alice.ok("message.send", data.clone()).await["message"].clone();
    let retry = alice.ok("message.send", data).await["message"].clone();
    assert_eq!(first, retry);
    assert_eq!(first["client_id"], "c-1");
    assert_eq!(bob.event("message.new").await["message"], first);
    bob.no_event("message.new", Duration::from_millis(300)).await;
    let history = alice.ok("message.history", json!({"room_id": room})).await;
    assert_eq!(history["messages"].as_array().unwrap().len(), 1);
    // Another sender may use the same client id.
    let theirs = bob.ok("message.send", json!({"room_id": room, "body": "mine", "client_id": "c-1"})).await;
    assert_eq!(theirs["message"]["seq"], 2);
}

async fn message_kinds_and_bodies_are_validated(db: Db) {
    let app = spawn_app(db).await;
    let mut alice = app.connect("alice").await;
    let bob = app.connect("bob").await;
    let room = direct_room(&mut alice, &bob).await;
    for kind in ["image", "video", "audio", "file"] {
        let url = format!("https://cdn.example/{kind}.bin");
        let message = alice.ok("message.send", json!({"room_id": room, "kind": kind, "body": url})).await;
        assert_eq!(message["message"]["kind"], kind);
        assert_eq!(message["message"]["body"], url.as_str());
    }
    assert_eq!(
        alice.fails("message.send", json!({"room_id": room, "kind": "image", "body": "javascript:alert(1)"})).await,
        "bad_request"
    );
    assert_eq!(alice.fails("message.send", json!({"room_id": room, "kind": "gif", "body": "x"})).await, "bad_request");
    assert_eq!(
        alice.fails("message.send", json!({"room_id": room, "kind": "system", "body": "x"})).await,
        "bad_request"
    );
    assert_eq!(alice.fails("message.send", json!({"room_id": room, "body": ""})).await, "bad_request");
    assert_eq!(alice.fails("message.send", json!({"room_id": room, "body": "x".repeat(20_000)})).await, "too_large");
}

async fn groups_respect_the_limit_and_announce_themselves(db: Db) {
    let app = spawn_app(db).await;
    let mut owner = app.connect("owner").await;
    let mut owner_tablet = app.connect("owner").await;
    let mut members = Vec::new();
    for i in 0..8 {
        members.push(app.connect(&format!("m{i}")).await);
    }
    let too_many: Vec<String> = (0..9).map(|i| format!("m{i}")).collect();
    assert_eq!(owner.fails("room.group.create", json!({"name": "big", "members": too_many})).await, "bad_request");
    assert_eq!(owner.fails("room.group.create", json!({"name": "solo", "members": []})).await, "bad_request");
    assert_eq!(owner.fails("room.group.create", json!({"name": " ", "members": ["m0"]})).await, "bad_request");

    let names: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
    let room = owner.ok("room.group.create", json!({"name": "crew", "members": names})).await["room"].clone();
    assert_eq!(room["kind"], "group");
    assert_eq!(room["name"], "crew");
    assert_eq!(room["members"].as_array().unwrap().len(), 9);
    let id = room["id"].as_str().unwrap().to_owned();
    for member in &mut members {
        assert_eq!(member.event("room.created").await["room"]["id"], id.as_str());
    }
    assert_eq!(owner_tablet.event("room.created").await["room"]["id"], id.as_str());
    owner.no_event("room.created", Duration::from_millis(200)).await;

    let message = send(&mut members[3], &id, "hello crew").await;
    for (i, member) in members.iter_mut().enumerate() {
        if i != 3 {
            assert_eq!(member.event("message.new").await["message"], message);
        }
    }
    assert_eq!(owner.event("message.new").await["message"], message);
}

async fn history_pages_by_seq(db: Db) {
    let app = spawn_app(db).await;
    let mut alice = app.connect("alice").await;
    let bob = app.connect("bob").await;
    let room = direct_room(&mut alice, &bob).await;
    for i in 1..=7 {
        send(&mut alice, &room, &format!("m{i}")).await;
    }
    let seqs = |page: &Value| -> Vec<i64> {
        page["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect()
    };
    let newest = alice.ok("message.history", json!({"room_id": room, "limit": 3})).await;
    assert_eq!(seqs(&newest), vec![5, 6, 7]);
    assert_eq!(newest["has_more"], true);
    let before = alice.ok("message.history", json!({"room_id": room, "before_seq": 5, "limit": 3})).await;
    assert_eq!(seqs(&before), vec![2, 3, 4]);
    assert_eq!(before["has_more"], true);
    let first = alice.ok("message.history", json!({"room_id": room, "before_seq": 2, "limit": 3})).await;
    assert_eq!(seqs(&first), vec![1]);
    assert_eq!(first["has_more"], false);
    let after = alice.ok("message.history", json!({"room_id": room, "after_seq": 4, "limit": 2})).await;
    assert_eq!(seqs(&after), vec![5, 6]);
    assert_eq!(after["has_more"], true);
    let tail = alice.ok("message.history", json!({"room_id": room, "after_seq": 5})).await;
    assert_eq!(seqs(&tail), vec![6, 7]);
    assert_eq!(tail["has_more"], false);
    let all = alice.ok("message.history", json!({"room_id": room})).await;
    assert_eq!(seqs(&all), (1..=7).collect::<Vec<_>>());
    assert_eq!(alice.fails("message.history", json!({"room_id": room, "limit": 101})).await, "bad_request");
    assert_eq!(
        alice.fails("message.history", json!({"room_id": room, "before_seq": 3, "after_seq": 1})).await,
        "bad_request"
    );
}

async fn read_receipts_and_unread_counts(db: Db) {
    let app = spawn_app(db).await;
    let mut alice = app.connect("alice").await;
    let mut bob = app.connect("bob").await;
    let room = direct_room(&mut alice, &bob).await;
    for i in 0..3 {
        send(&mut alice, &room, &format!("m{i}")).await;
    }
    let unread = |rooms: &Value| rooms["rooms"][0]["unread"].as_i64().unwrap();
    assert_eq!(unread(&bob.ok("room.list", json!({})).await), 3);
    assert_eq!(unread(&alice.ok("room.list", json!({})).await), 0, "own messages are never unread");

    let read = bob.ok("room.read", json!({"room_id": room, "seq": 2})).await;
    assert_eq!(read, json!({"room_id": room, "seq": 2}));
    let receipt = alice.event("room.read").await;
    assert_eq!(receipt, json!({"room_id": room, "user_id": "bob", "seq": 2}));
    assert_eq!(unread(&bob.ok("room.list", json!({})).await), 1);

    // Never backward; the default is the latest; never past the last seq.
    assert_eq!(bob.ok("room.read", json!({"room_id": room, "seq": 1})).await["seq"], 2);
    assert_eq!(bob.ok("room.read", json!({"room_id": room})).await["seq"], 3);
    assert_eq!(bob.ok("room.read", json!({"room_id": room, "seq": 99})).await["seq"], 3);
    let listed = bob.ok("room.list", json!({})).await;
    assert_eq!(unread(&listed), 0);
    assert_eq!(listed["rooms"][0]["last_read_seq"], 3);
}

async fn clearing_hides_history_for_one_member_only(db: Db) {
    let app = spawn_app(db).await;
    let mut alice = app.connect("alice").await;
    let mut bob = app.connect("bob").await;
    let room = direct_room(&mut alice, &bob).await;
    send(&mut alice, &room, "old 1").await;
    send(&mut alice, &room, "old 2").await;
    assert_eq!(bob.ok("room.clear", json!({"room_id": room})).await, json!({"room_id": room, "cleared_seq": 2}));
    let bob_view = bob.ok("message.history", json!({"room_id": room})).await;
    assert_eq!(bob_view["messages"].as_array().unwrap().len(), 0);
    let listed = bob.ok("room.list", json!({})).await;
    assert!(listed["rooms"][0]["last_message"].is_null());
    assert_eq!(listed["rooms"][0]["unread"], 0);
    let alice_view = alice.ok("message.history", json!({"room_id": room})).await;
    assert_eq!(alice_view["messages"].as_array().unwrap().len(), 2);

    send(&mut alice, &room, "new").await;
    let bob_view = bob.ok("message.history", json!({"room_id": room})).await;
    let bodies: Vec<&str> =
        bob_view["messages"].as_array().unwrap().iter().map(|m| m["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, vec!["new"]);
}

async fn typing_reaches_the_others(db: Db) {
    let app = spawn_app(db).await;
    let mut alice = app.connect("alice").await;
    let mut bob = app.connect("bob").await;
    let room = direct_room(&mut alice, &bob).await;
    // With an id, even typing gets an ack with no data.
    let ack = alice.request("typing", json!({"room_id": room, "typing": true})).await;
    assert_eq!(ack, json!({"ack": ack["ack"], "ok": true}));
    assert_eq!(bob.event("typing").await, json!({"room_id": room, "user_id": "alice", "typing": true}));
    alice.send_text(json!({"event": "typing", "data": {"room_id": room, "typing": false}}).to_string()).await;
    assert_eq!(bob.event("typing").await["typing"], false);
    alice.no_event("typing", Duration::from_millis(200)).await;
}

async fn room_list_is_newest_first_with_last_message(db: Db) {
    let app = spawn_app(db).await;
    let mut alice = app.connect("alice").await;
    let mut peers = Vec::new();
    for name in ["p1", "p2", "p3"] {
        peers.push(app.connect(name).await);
    }
    let mut rooms = Vec::new();
    for peer in &peers {
        rooms.push(direct_room(&mut alice, peer).await);
    }
    for room in &rooms {
        send(&mut alice, room, &format!("to {room}")).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Activity in the oldest room moves it to the front.
    send(&mut peers[0], &rooms[0], "bump").await;
    let listed = alice.ok("room.list", json!({})).await;
    let order: Vec<&str> = listed["rooms"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(order, vec![rooms[0].as_str(), rooms[2].as_str(), rooms[1].as_str()]);
    assert_eq!(listed["rooms"][0]["last_message"]["body"], "bump");
    assert_eq!(listed["rooms"][0]["unread"], 1);

    let page = alice.ok("room.list", json!({"limit": 2})).await;
    assert_eq!(page["rooms"].as_array().unwrap().len(), 2);
    let cursor = page["rooms"][1]["last_activity_at"].clone();
    let rest = alice.ok("room.list", json!({"limit": 2, "before": cursor})).await;
    let rest: Vec<&str> = rest["rooms"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(rest, vec![rooms[1].as_str()]);
    // The exact cursor: the id of the last room the client has.
    let after_first = alice.ok("room.list", json!({"limit": 5, "before": rooms[0]})).await;
    let after_first: Vec<&str> =
        after_first["rooms"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(after_first, vec![rooms[2].as_str(), rooms[1].as_str()]);
}

async fn concurrent_senders_get_gapless_seqs(db: Db) {
    let app = spawn_app(db).await;
    let mut owner = app.connect("owner").await;
    let names: Vec<String> = (0..4).map(|i| format!("s{i}")).collect();
    let room = owner.ok("room.group.create", json!({"name": "race", "members": names})).await["room"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut tasks = Vec::new();
    for name in names {
        let url = app.ws_url(&app.token(&name));
        let room = room.clone();
        tasks.push(actix_rt::spawn(async move {
            let mut client = Client::connect_url(&url).await;
            // Fire 25 requests without waiting, then collect the acks.
            for i in 0..25 {
                client
                    .send_text(
                        json!({"event": "message.send", "id": i, "data": {"room_id": room, "body": format!("{i}")}})
                            .to_string(),
                    )
                    .await;
            }
            let mut seqs = Vec::new();
            for i in 0..25 {
                let ack = client.ack(i).await;
                assert_eq!(ack["ok"], true, "{ack}");
                seqs.push(ack["data"]["message"]["seq"].as_i64().unwrap());
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        let seqs = task.await.unwrap();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "one sender's messages keep their order: {seqs:?}");
        all.extend(seqs);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=100).collect::<Vec<_>>());
}

async fn bad_frames_get_errors_and_the_connection_survives(db: Db) {
    let app = spawn_app(db).await;
    let mut alice = app.connect("alice").await;
    alice.send_text("this is not json").await;
    assert_eq!(alice.event("error").await["code"], "bad_request");
    alice.send_text(r#"{"data":{}}"#).await;
    assert_eq!(alice.event("error").await["code"], "bad_request");
    alice.send_text(r#"{"event":"no.such.event","data":{}}"#).await;
    assert_eq!(alice.event("error").await["code"], "unknown_event");
    assert_eq!(alice.fails("no.such.event", json!({})).await, "unknown_event");
    assert_eq!(alice.fails("message.send", json!("not an object")).await, "bad_request");
    // Any integer id is echoed as sent.
    alice.send_text(r#"{"event":"presence.query","id":18446744073709551615,"data":{"user_ids":[]}}"#).await;
    let ack = alice.event_matching(|f| f.get("ack").is_some()).await;
    assert_eq!(ack["ack"].as_u64(), Some(u64::MAX));
    // Still usable.
    let bob = app.connect("bob").await;
    let room = direct_room(&mut alice, &bob).await;
    send(&mut alice, &room, "still here").await;
}

both!(
    direct_room_is_created_once_per_pair,
    messages_reach_members_once_with_increasing_seq,
    outsiders_cannot_read_or_write,
    client_id_makes_send_idempotent,
    message_kinds_and_bodies_are_validated,
    groups_respect_the_limit_and_announce_themselves,
    history_pages_by_seq,
    read_receipts_and_unread_counts,
    clearing_hides_history_for_one_member_only,
    typing_reaches_the_others,
    room_list_is_newest_first_with_last_message,
    concurrent_senders_get_gapless_seqs,
    bad_frames_get_errors_and_the_connection_survives,
);
