//! Call signaling: every transition, on both backends.

use std::time::Duration;

use serde_json::{Value, json};

use crate::both;
use crate::helpers::*;

async fn start(client: &mut Client, room: &str) -> Value {
    client.ok("call.start", json!({"room_id": room, "media": "video"})).await["call"].clone()
}

async fn ring_accept_on_one_device_signal_and_hang_up(db: Db) {
    let app = spawn_app(db).await;
    let mut alice = app.connect("alice").await;
    let mut bob_phone = app.connect("bob").await;
    let mut bob_laptop = app.connect("bob").await;
    let room = direct_room(&mut alice, &bob_phone).await;
    let call = start(&mut alice, &room).await;
    assert_eq!(call["state"], "ringing");
    assert_eq!(call["callee_ids"], json!(["bob"]));
    assert_eq!(call["caller_id"], "alice");
    let id = call["id"].as_str().unwrap().to_owned();
    for device in [&mut bob_phone, &mut bob_laptop] {
        assert_eq!(device.event("call.incoming").await["call"]["id"], id.as_str());
    }
    // The caller's ICE while ringing reaches every callee device.
    alice.ok("call.signal", json!({"call_id": id, "signal": {"candidate": "early"}})).await;
    for device in [&mut bob_phone, &mut bob_laptop] {
        assert_eq!(device.event("call.signal").await["signal"]["candidate"], "early");
    }

    let accepted = bob_laptop.ok("call.accept", json!({"call_id": id})).await["call"].clone();
    assert_eq!(accepted["state"], "active");
    assert!(accepted["answered_at"].is_string());
    assert_eq!(alice.event("call.accepted").await["call"]["state"], "active");
    let elsewhere = bob_phone.event("call.ended").await;
    assert_eq!(elsewhere["reason"], "answered_elsewhere");
    bob_laptop.no_event("call.ended", Duration::from_millis(200)).await;
    assert_eq!(bob_phone.fails("call.accept", json!({"call_id": id})).await, "conflict");

    // Once answered, signals go to the answering device only.
    alice.ok("call.signal", json!({"call_id": id, "signal": {"sdp": "offer"}})).await;
    let signal = bob_laptop.event("call.signal").await;
    assert_eq!(signal, json!({"call_id": id, "from": "alice", "signal": {"sdp": "offer"}}));
    bob_phone.no_event("call.signal", Duration::from_millis(300)).await;
    bob_laptop.ok("call.signal", json!({"call_id": id, "signal": {"sdp": "answer"}})).await;
    assert_eq!(alice.event("call.signal").await["signal"]["sdp"], "answer");
    // Another device of the party takes the call over by signalling (a reconnected app).
    bob_phone.ok("call.signal", json!({"call_id": id, "signal": {"sdp": "moved"}})).await;
    assert_eq!(alice.event("call.signal").await["signal"]["sdp"], "moved");
    alice.ok("call.signal", json!({"call_id": id, "signal": {"sdp": "to the phone"}})).await;
    assert_eq!(bob_phone.event("call.signal").await["signal"]["sdp"], "to the phone");
    bob_laptop.no_event("call.signal", Duration::from_millis(300)).await;

    let ended = alice.ok("call.end", json!({"call_id": id})).await["call"].clone();
    assert_eq!(ended["state"], "ended");
    assert_eq!(ended["end_reason"], "hangup");
    assert_eq!(bob_laptop.event("call.ended").await["reason"], "hangup");
    // Hanging up again is harmless; signalling an ended call is not.
    alice.ok("call.end", json!({"call_id": id})).await;
    assert_eq!(alice.fails("call.signal", json!({"call_id": id, "signal": {}})).await, "conflict");

    let history = alice.ok("call.history", json!({"room_id": room})).await["calls"].clone();
    assert_eq!(history[0]["id"], id.as_str());
    assert_eq!(history[0]["end_reason"], "hangup");
    assert!(history[0]["duration_secs"].is_i64());
    let parties: Vec<(&str, &str)> = history[0]["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["user_id"].as_str().unwrap(), p["status"].as_str().unwrap()))
        .collect();
    assert_eq!(parties, vec![("bob", "left"), ("alice", "left")]);
}

async fn declines_and_cancels(db: Db) {
    let app = spawn_app(db).await;
    let mut alice = app.connect("alice").await;
    let mut bob = app.connect("bob").await;
    let room = direct_room(&mut alice, &bob).await;

    let id = start(&mut alice, &room).await["id"].clone();
    bob.event("call.incoming").await;
    assert_eq!(bob.ok("call.decline", json!({"call_id": id})).await["call"]["end_reason"], "declined");
    assert_eq!(alice.event("call.ended").await["reason"], "declined");

    let id = start(&mut alice, &room).await["id"].clone();
    bob.event("call.incoming").await;
    assert_eq!(alice.ok("call.end", json!({"call_id": id})).await["call"]["end_reason"], "cancelled");
    assert_eq!(bob.event("call.ended").await["reason"], "cancelled");
    // The caller cannot decline, the line is free again.
    let id = start(&mut alice, &room).await["id"].clone();
    assert_eq!(alice.fails("call.decline", json!({"call_id": id})).await, "conflict");
    // A callee hanging up while it rings declines.
    bob.event("call.incoming").await;
    assert_eq!(bob.ok("call.end", json!({"call_id": id})).await["call"]["end_reason"], "declined");
}

async fn unanswered_calls_are_missed(db: Db) {
    let app = spawn_with(db, |s| s.call_ring_secs = 1).await;
    let mut alice = app.connect("alice").await;
    let mut bob = app.connect("bob").await;
    let room = direct_room(&mut alice, &bob).await;
    start(&mut alice, &room).await;
    bob.event("call.incoming").await;
    assert_eq!(bob.event("call.ended").await["reason"], "missed");
    let ended = alice.event("call.ended").await;
    assert_eq!(ended["reason"], "missed");
    assert_eq!(ended["call"]["participants"][0]["status"], "missed");
}

async fn busy_parties(db: Db) {
    let app = spawn_app(db).await;
    let mut alice = app.connect("alice").await;
    let mut bob = app.connect("bob").await;
    let mut carol = app.connect("carol").await;
    let room = direct_room(&mut alice, &bob).await;
    let id = start(&mut alice, &room).await["id"].clone();
    bob.event("call.incoming").await;
    bob.ok("call.accept", json!({"call_id": id})).await;

    let carol_bob = direct_room(&mut carol, &bob).await;
    let busy = start(&mut carol, &carol_bob).await;
    assert_eq!(busy["state"], "ended");
    assert_eq!(busy["end_reason"], "busy");
    bob.no_event("call.incoming", Duration::from_millis(300)).await;
    // A caller already on a line is refused.
    let carol_alice = direct_room(&mut carol, &alice).await;
    assert_eq!(alice.fails("call.start", json!({"room_id": carol_alice})).await, "busy");
    // Ringing counts as busy too.
    alice.ok("call.end", json!({"call_id": id})).await;
    start(&mut carol, &carol_alice).await;
    let busy = start(&mut bob, &room).await;
    assert_eq!(busy["end_reason"], "busy");
}

async fn only_parties_act_and_blocks_hold(db: Db) {
    let app = spawn_app(db).await;
    let mut alice = app.connect("alice").await;
    let mut bob = app.connect("bob").await;
    let mut eve = app.connect("eve").await;
    let room = direct_room(&mut alice, &bob).await;
    assert_eq!(eve.fails("call.start", json!({"room_id": room})).await, "forbidden");
    let id = start(&mut alice, &room).await["id"].clone();
    for event in ["call.accept", "call.decline", "call.end"] {
        assert_eq!(eve.fails(event, json!({"call_id": id})).await, "forbidden", "{event}");
    }
    assert_eq!(eve.fails("call.signal", json!({"call_id": id, "signal": {}})).await, "forbidden");
    assert_eq!(eve.fails("call.history", json!({"room_id": room})).await, "forbidden");
    let unknown = uuid::Uuid::new_v4().to_string();
    assert_eq!(eve.fails("call.accept", json!({"call_id": unknown})).await, "not_found");
    assert_eq!(eve.fails("call.start", json!({"room_id": room, "media": "hologram"})).await, "bad_request");
    alice.ok("call.end", json!({"call_id": id})).await;

    bob.ok("block", json!({"user_id": "alice"})).await;
    assert_eq!(alice.fails("call.start", json!({"room_id": room})).await, "forbidden");
    assert_eq!(bob.fails("call.start", json!({"room_id": room})).await, "forbidden");
}

async fn vanished_parties_are_dropped_after_the_grace_period(db: Db) {
    let app = spawn_with(db, |s| s.call_grace_secs = 2).await;
    let mut alice = app.connect("alice").await;
    let mut bob = app.connect("bob").await;
    let room = direct_room(&mut alice, &bob).await;
    let id = start(&mut alice, &room).await["id"].clone();
    bob.event("call.incoming").await;
    bob.ok("call.accept", json!({"call_id": id})).await;

    // Back within the grace period: the call goes on, on the new connection.
    bob.close().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut bob = app.connect("bob").await;
    alice.no_event("call.ended", Duration::from_secs(3)).await;
    alice.ok("call.signal", json!({"call_id": id, "signal": {"ice": 1}})).await;
    assert_eq!(bob.event("call.signal").await["signal"]["ice"], 1);
    bob.ok("call.signal", json!({"call_id": id, "signal": {"ice": 2}})).await;

    // Marked away while connected (the node a phone moved from can mark it away after the
    // node it moved to marked it back): the sweep finds it online and keeps it in the call.
    execute_sql(&app.database_url, "UPDATE call_participants SET away_since = 0").await;
    alice.no_event("call.ended", Duration::from_secs(3)).await;
    alice.ok("call.signal", json!({"call_id": id, "signal": {"ice": 3}})).await;
    assert_eq!(bob.event("call.signal").await["signal"]["ice"], 3);

    // Gone for good: dropped as disconnected.
    bob.close().await;
    let ended = alice.event("call.ended").await;
    assert_eq!(ended["reason"], "disconnected");
    assert_eq!(ended["call"]["state"], "ended");
}

async fn group_calls_ring_everyone_and_end_with_one_left(db: Db) {
    let app = spawn_with(db, |s| s.call_ring_secs = 2).await;
    let mut owner = app.connect("owner").await;
    let mut m = Vec::new();
    for name in ["m1", "m2", "m3"] {
        m.push(app.connect(name).await);
    }
    let room =
        owner.ok("room.group.create", json!({"name": "call", "members": ["m1", "m2", "m3"]})).await["room"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
    let id = start(&mut owner, &room).await["id"].clone();
    for member in &mut m {
        assert_eq!(member.event("call.incoming").await["call"]["id"], id);
    }
    m[0].ok("call.accept", json!({"call_id": id})).await;
    assert_eq!(owner.event("call.accepted").await["call"]["state"], "active");
    m[1].ok("call.decline", json!({"call_id": id})).await;
    assert_eq!(owner.event("call.left").await["user_id"], "m2");
    // A group signal must name its target.
    assert_eq!(owner.fails("call.signal", json!({"call_id": id, "signal": {}})).await, "bad_request");
    owner.ok("call.signal", json!({"call_id": id, "signal": {"to_m1": true}, "to": "m1"})).await;
    assert_eq!(m[0].event("call.signal").await["from"], "owner");
    // m3 never answers: it stops ringing for m3 only.
    assert_eq!(m[2].event("call.ended").await["reason"], "missed");
    owner.no_event("call.ended", Duration::from_millis(300)).await;
    // m1 leaves: only the owner is left, so the call ends.
    m[0].ok("call.end", json!({"call_id": id})).await;
    let ended = owner.event("call.ended").await;
    assert_eq!(ended["reason"], "hangup");
    assert_eq!(ended["call"]["state"], "ended");
}

/// Every callee declining at once ends the call: each decline sees the other's (each used to
/// hold only its own party's row and see the other still ringing, and the call rang on with
/// nobody left to ring).
async fn callees_declining_at_once_end_the_call(db: Db) {
    let app = spawn_with(db, |s| s.call_ring_secs = 30).await;
    let mut owner = app.connect("owner").await;
    let (mut m1, mut m2) = (app.connect("m1").await, app.connect("m2").await);
    let room = owner.ok("room.group.create", json!({"name": "call", "members": ["m1", "m2"]})).await["room"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..10 {
        let id = start(&mut owner, &room).await["id"].clone();
        m1.event("call.incoming").await;
        m2.event("call.incoming").await;
        let decline = json!({"call_id": id});
        let (first, second) =
            tokio::join!(m1.ok("call.decline", decline.clone()), m2.ok("call.decline", decline.clone()));
        let reasons = [&first["call"]["end_reason"], &second["call"]["end_reason"]];
        assert!(reasons.contains(&&json!("declined")), "{reasons:?}");
        assert_eq!(owner.event("call.ended").await["reason"], "declined");
    }
}

/// A party's signals are bounded in size and in rate (per user, per node), so nobody can
/// fill the other party's outboxes and close their devices by signalling.
async fn signals_are_bounded(db: Db) {
    let app = spawn_with(db, |s| s.user_limits.call_signals_per_min = 30).await;
    let mut alice = app.connect("alice").await;
    let mut bob = app.connect("bob").await;
    let room = direct_room(&mut alice, &bob).await;
    let id = start(&mut alice, &room).await["id"].clone();
    bob.event("call.incoming").await;
    let huge = json!({"call_id": id, "signal": {"sdp": "x".repeat(17 * 1024)}});
    assert_eq!(alice.fails("call.signal", huge).await, "too_large");
    // 30 a minute come in bursts of 3.
    for n in 0..3 {
        alice.ok("call.signal", json!({"call_id": id, "signal": {"n": n}})).await;
    }
    assert_eq!(alice.fails("call.signal", json!({"call_id": id, "signal": {"n": 3}})).await, "rate_limited");
    for n in 0..3 {
        assert_eq!(bob.event("call.signal").await["signal"]["n"], n);
    }
}

both!(
    callees_declining_at_once_end_the_call,
    signals_are_bounded,
    ring_accept_on_one_device_signal_and_hang_up,
    declines_and_cancels,
    unanswered_calls_are_missed,
    busy_parties,
    only_parties_act_and_blocks_hold,
    vanished_parties_are_dropped_after_the_grace_period,
    group_calls_ring_everyone_and_end_with_one_left,
);
