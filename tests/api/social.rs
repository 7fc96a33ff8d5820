//! Follow and friend requests, notifications, likes and matches, blocks, reports, nearby.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard::domain::{Location, LocationGrid, UserId};
use switchboard::store::{Backend, Store};

use crate::both;
use crate::helpers::*;

async fn follow_requests_notify_and_acceptance_opens_a_room(db: Db) {
    let app = spawn_app(db).await;
    let mut alice = app.connect("alice").await;
    let mut bob = app.connect("bob").await;
    alice.ok("follow.request", json!({"user_id": "bob"})).await;
    let note = bob.event("notification").await;
    assert_eq!(note["kind"], "follow_request");
    assert_eq!(note["from"], "alice");
    assert_eq!(note["read"], false);
    // Asking again while pending notifies nobody twice.
    alice.ok("follow.request", json!({"user_id": "bob"})).await;
    bob.no_event("notification", Duration::from_millis(300)).await;

    let reply = bob.ok("follow.respond", json!({"user_id": "alice", "accept": true})).await;
    let room = reply["room"]["id"].as_str().unwrap().to_owned();
    assert_eq!(reply["room"]["kind"], "direct");
    let accepted = alice.event("notification").await;
    assert_eq!(accepted["kind"], "follow_accepted");
    assert_eq!(accepted["from"], "bob");
    assert_eq!(accepted["room_id"], room.as_str());
    assert_eq!(alice.event("room.created").await["room"]["id"], room.as_str());
    assert_eq!(bob.event("room.created").await["room"]["id"], room.as_str());
    // The room works at once.
    let message = send(&mut alice, &room, "thanks for the follow").await;
    assert_eq!(bob.event("message.new").await["message"], message);
    assert_eq!(bob.fails("follow.respond", json!({"user_id": "alice", "accept": true})).await, "not_found");
}

async fn offline_users_find_their_notifications_later(db: Db) {
    let app = spawn_app(db).await;
    let mut carol = app.connect("carol").await;
    carol.ok("friend.request", json!({"user_id": "dave"})).await;
    let mut erin = app.connect("erin").await;
    erin.ok("follow.request", json!({"user_id": "dave"})).await;

    let mut dave = app.connect("dave").await;
    let listed = dave.ok("notification.list", json!({})).await["notifications"].clone();
    let kinds: Vec<(&str, &str)> =
        listed.as_array().unwrap().iter().map(|n| (n["kind"].as_str().unwrap(), n["from"].as_str().unwrap())).collect();
    assert_eq!(kinds, vec![("follow_request", "erin"), ("friend_request", "carol")], "newest first");
    let first = listed[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(dave.ok("notification.read", json!({"ids": [first]})).await["read"], 1);
    let unread = dave.ok("notification.list", json!({"unread_only": true})).await["notifications"].clone();
    assert_eq!(unread.as_array().unwrap().len(), 1);
    assert_eq!(dave.ok("notification.read", json!({})).await["read"], 1);
    let unread = dave.ok("notification.list", json!({"unread_only": true})).await["notifications"].clone();
    assert!(unread.as_array().unwrap().is_empty());
    let page =
        dave.ok("notification.list", json!({"limit": 1, "before": listed[0]["id"]})).await["notifications"].clone();
    assert_eq!(page[0]["from"], "carol");

    let declined = dave.ok("friend.respond", json!({"user_id": "carol", "accept": false})).await;
    assert!(declined["room"].is_null());
    carol.no_event("notification", Duration::from_millis(300)).await;
    // A declined request may be sent again.
    carol.ok("friend.request", json!({"user_id": "dave"})).await;
    assert_eq!(dave.event("notification").await["kind"], "friend_request");
    let accepted = dave.ok("friend.respond", json!({"user_id": "carol", "accept": 1})).await;
    assert_eq!(accepted["room"]["kind"], "direct");
    assert_eq!(carol.event("notification").await["kind"], "friend_accepted");
}

async fn mutual_likes_match_once(db: Db) {
    let app = spawn_app(db).await;
    let mut alice = app.connect("alice").await;
    let mut bob = app.connect("bob").await;
    let mut carol = app.connect("carol").await;
    assert_eq!(
        alice.ok("like", json!({"user_id": "bob", "like": true})).await,
        json!({"matched": false, "room": null})
    );
    bob.no_event("match", Duration::from_millis(200)).await;
    let reply = bob.ok("like", json!({"user_id": "alice", "like": true})).await;
    assert_eq!(reply["matched"], true);
    let room = reply["room"]["id"].as_str().unwrap().to_owned();
    for (client, other) in [(&mut alice, "bob"), (&mut bob, "alice")] {
        assert_eq!(client.event("match").await, json!({"user_id": other, "room_id": room}));
    }
    // Liking again changes nothing and announces nothing.
    assert_eq!(alice.ok("like", json!({"user_id": "bob", "like": true})).await["matched"], true);
    alice.no_event("match", Duration::from_millis(300)).await;
    bob.no_event("match", Duration::from_millis(300)).await;

    // A dislike is recorded: no match after the other likes.
    carol.ok("like", json!({"user_id": "alice", "like": false})).await;
    assert_eq!(alice.ok("like", json!({"user_id": "carol", "like": 1})).await["matched"], false);
    assert_eq!(alice.fails("like", json!({"user_id": "alice", "like": true})).await, "bad_request");
    assert_eq!(alice.fails("like", json!({"user_id": "bob", "like": "yes"})).await, "bad_request");
}

async fn blocks_are_enforced_on_every_path(db: Db) {
    let app = spawn_app(db).await;
    let mut alice = app.connect("alice").await;
    let mut bob = app.connect("bob").await;
    let room = direct_room(&mut alice, &bob).await;
    for (user, lat) in [(&mut alice, 10.0), (&mut bob, 10.001)] {
        user.ok("location.update", json!({"lat": lat, "lng": 20.0})).await;
    }
    assert_eq!(
        alice.ok("block", json!({"user_id": "bob", "blocked": true})).await,
        json!({"user_id": "bob", "blocked": true})
    );
    let listed = alice.ok("block.list", json!({})).await["users"].clone();
    assert_eq!(listed[0]["user_id"], "bob");

    // Neither side can reach the other one to one.
    assert_eq!(bob.fails("room.direct", json!({"user_id": "alice"})).await, "forbidden");
    assert_eq!(bob.fails("message.send", json!({"room_id": room, "body": "hey"})).await, "forbidden");
    assert_eq!(alice.fails("message.send", json!({"room_id": room, "body": "hey"})).await, "forbidden");
    assert_eq!(bob.fails("typing", json!({"room_id": room, "typing": true})).await, "forbidden");
    assert_eq!(bob.fails("like", json!({"user_id": "alice", "like": true})).await, "forbidden");
    assert_eq!(bob.fails("follow.request", json!({"user_id": "alice"})).await, "forbidden");
    assert_eq!(bob.fails("friend.request", json!({"user_id": "alice"})).await, "forbidden");
    assert_eq!(bob.fails("room.group.create", json!({"name": "g", "members": ["alice"]})).await, "forbidden");
    let seen = bob.ok("presence.query", json!({"user_ids": ["alice"]})).await["users"][0].clone();
    assert_eq!(seen, json!({"user_id": "alice", "online": false, "last_seen": null}));
    let near = bob.ok("location.nearby", json!({"radius_km": 5})).await["users"].clone();
    assert!(near.as_array().unwrap().is_empty(), "{near}");
    // History stays readable; nothing new arrived.
    bob.ok("message.history", json!({"room_id": room})).await;

    alice.ok("block", json!({"user_id": "bob", "blocked": false})).await;
    let message = send(&mut bob, &room, "friends again").await;
    assert_eq!(alice.event("message.new").await["message"], message);
    assert_eq!(bob.ok("location.nearby", json!({"radius_km": 5})).await["users"][0]["user_id"], "alice");
}

async fn a_block_ends_what_the_pair_shares_live(db: Db) {
    let app = spawn_with(db, |s| s.live_comment_rate = 50).await;
    let mut alice = app.connect("alice").await;
    let mut bob = app.connect("bob").await;
    let room = direct_room(&mut alice, &bob).await;
    send(&mut alice, &room, "unread by both, soon").await;
    send(&mut bob, &room, "and this").await;
    // Bob watches Alice's session with his hand up; Alice watches Bob's.
    let hosted = alice.ok("live.create", json!({"title": "alice live"})).await["session"]["id"].clone();
    let theirs = bob.ok("live.create", json!({"title": "bob live"})).await["session"]["id"].clone();
    bob.ok("live.join", json!({"session_id": hosted})).await;
    bob.ok("live.raise_hand", json!({"session_id": hosted})).await;
    alice.ok("live.join", json!({"session_id": theirs})).await;
    // And Alice calls Bob.
    let call = alice.ok("call.start", json!({"room_id": room, "media": "audio"})).await["call"]["id"].clone();
    bob.event("call.incoming").await;
    alice.drop_events("live.viewers");
    alice.drop_events("live.hand_raised");

    alice.ok("block", json!({"user_id": "bob"})).await;
    // The call is over for both, the blocker's device included.
    assert_eq!(bob.event("call.ended").await["call"]["id"], call);
    assert_eq!(alice.event("call.ended").await["call"]["id"], call);
    assert_eq!(bob.fails("call.signal", json!({"call_id": call, "signal": {"sdp": "x"}})).await, "conflict");
    // Neither watches the other's session: not counted, no hand, nothing said there.
    let viewers = alice.event_matching(|e| e["event"] == "live.viewers" && e["data"]["viewers"] == 0).await;
    assert_eq!(viewers["data"]["session_id"], hosted);
    assert_eq!(alice.ok("live.hands", json!({"session_id": hosted})).await["hands"], json!([]));
    assert_eq!(bob.fails("live.comment", json!({"session_id": hosted, "text": "still here"})).await, "forbidden");
    assert_eq!(bob.fails("live.raise_hand", json!({"session_id": hosted})).await, "forbidden");
    assert_eq!(bob.fails("live.join", json!({"session_id": hosted})).await, "forbidden");
    assert_eq!(alice.fails("live.comment", json!({"session_id": theirs, "text": "hi"})).await, "forbidden");
    bob.drop_events("live.comment");
    let mut carl = app.connect("carl").await;
    carl.ok("live.join", json!({"session_id": hosted})).await;
    alice.ok("live.comment", json!({"session_id": hosted, "text": "welcome carl"})).await;
    assert_eq!(carl.event("live.comment").await["text"], "welcome carl");
    bob.no_event("live.comment", Duration::from_millis(300)).await;

    // Read marks in the direct room reach only the reader's own connections.
    let mut alice_phone = app.connect("alice").await;
    alice.ok("room.read", json!({"room_id": room})).await;
    bob.ok("room.read", json!({"room_id": room})).await;
    assert_eq!(alice_phone.event("room.read").await["user_id"], "alice");
    bob.no_event("room.read", Duration::from_millis(300)).await;
    alice.no_event("room.read", Duration::from_millis(100)).await;
}

async fn reports_are_stored(db: Db) {
    let app = spawn_app(db).await;
    let mut alice = app.connect("alice").await;
    let bob = app.connect("bob").await;
    let room = direct_room(&mut alice, &bob).await;
    let reply = alice.ok("report", json!({"user_id": "bob", "reason": "spam", "room_id": room})).await;
    assert!(reply["report_id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(alice.fails("report", json!({"user_id": "bob", "reason": " "})).await, "bad_request");
    assert_eq!(alice.fails("report", json!({"user_id": "alice", "reason": "me"})).await, "bad_request");
    assert_eq!(alice.fails("report", json!({"user_id": "bob"})).await, "bad_request");
    // What is stored and sent on to the app's back end is bounded and printable.
    let long_id = "m".repeat(129);
    assert_eq!(
        alice.fails("report", json!({"user_id": "bob", "reason": "x", "message_id": long_id})).await,
        "bad_request"
    );
    assert_eq!(alice.fails("report", json!({"user_id": "bob", "reason": "x\u{1b}[2J"})).await, "bad_request");
    alice.ok("report", json!({"user_id": "bob", "reason": "line one\nline two", "message_id": "0193"})).await;
}

async fn reports_are_rate_limited_per_user(db: Db) {
    let app = spawn_with(db, |s| s.user_limits.reports_per_min = 3).await;
    let mut alice = app.connect("alice").await;
    for _ in 0..3 {
        alice.ok("report", json!({"user_id": "bob", "reason": "spam"})).await;
    }
    assert_eq!(alice.fails("report", json!({"user_id": "bob", "reason": "spam"})).await, "rate_limited");
    let mut carl = app.connect("carl").await;
    carl.ok("report", json!({"user_id": "bob", "reason": "spam"})).await;
}

async fn new_direct_rooms_are_rate_limited_per_user(db: Db) {
    let app = spawn_with(db, |s| s.user_limits.direct_opens_per_min = 3).await;
    let mut alice = app.connect("alice").await;
    let mut rooms = Vec::new();
    for peer in ["p1", "p2", "p3"] {
        rooms.push(alice.ok("room.direct", json!({"user_id": peer})).await["room"]["id"].clone());
    }
    assert_eq!(alice.fails("room.direct", json!({"user_id": "p4"})).await, "rate_limited");
    // Opening a room that exists is free, from either side.
    assert_eq!(alice.ok("room.direct", json!({"user_id": "p1"})).await["room"]["id"], rooms[0]);
    let mut p2 = app.connect("p2").await;
    for peer in ["q1", "q2", "q3"] {
        p2.ok("room.direct", json!({"user_id": peer})).await;
    }
    assert_eq!(p2.ok("room.direct", json!({"user_id": "alice"})).await["room"]["id"], rooms[1]);
    assert_eq!(p2.fails("room.direct", json!({"user_id": "q4"})).await, "rate_limited");
}

async fn nearby_users_sorted_by_distance(db: Db) {
    let app = spawn_app(db).await;
    let mut me = app.connect("me").await;
    assert_eq!(me.fails("location.nearby", json!({"radius_km": 5})).await, "bad_request");
    assert_eq!(me.fails("location.update", json!({"lat": 91, "lng": 0})).await, "bad_request");
    assert_eq!(me.fails("location.update", json!({"lat": 0, "lng": 181})).await, "bad_request");
    assert_eq!(me.fails("location.update", json!({"lat": "north", "lng": 0})).await, "bad_request");
    // The reply is the stored point: the centre of the position's 100 m cell.
    let stored = me.ok("location.update", json!({"lat": 31.228125, "lng": 74.833771})).await;
    let (lat, lng) = (stored["lat"].as_f64().unwrap(), stored["lng"].as_f64().unwrap());
    assert!((lat - 31.228125).abs() < 0.0005 && (lng - 74.833771).abs() < 0.0006, "{stored}");
    assert_eq!(me.ok("location.update", stored.clone()).await, stored, "a stored point stays where it is");
    // Others at about 0.1, 1, 3 and 40 km north; `far` stays connected, the rest leave.
    let mut keep = Vec::new();
    for (user, km) in [("near", 0.1), ("mid", 1.0), ("far", 3.0), ("away", 40.0)] {
        let mut client = app.connect(user).await;
        client.ok("location.update", json!({"lat": 31.228125 + km / 111.2, "lng": 74.833771})).await;
        if user == "far" { keep.push(client) } else { client.close().await }
    }
    let found = me.ok("location.nearby", json!({"radius_km": 5})).await["users"].clone();
    let names: Vec<&str> = found.as_array().unwrap().iter().map(|u| u["user_id"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["near", "mid", "far"]);
    // Distances are told in 0.1 km steps, within a step of the truth.
    let km = |u: &Value| u["distance_km"].as_f64().unwrap();
    for (user, truth) in found.as_array().unwrap().iter().zip([0.1, 1.0, 3.0]) {
        assert!(whole_steps(km(user), 0.1) && (km(user) - truth).abs() <= 0.1 + 1e-9, "{found}");
    }
    assert_eq!(found[2]["online"], true);
    assert_eq!(found[0]["online"], false);
    let limited = me.ok("location.nearby", json!({"radius_km": 50, "limit": 2})).await["users"].clone();
    assert_eq!(limited.as_array().unwrap().len(), 2);
    let wide = me.ok("location.nearby", json!({"radius_km": 50})).await["users"].clone();
    assert_eq!(wide.as_array().unwrap().len(), 4);
    assert_eq!(me.fails("location.nearby", json!({"radius_km": 0})).await, "bad_request");
    assert_eq!(me.fails("location.nearby", json!({"radius_km": 10_000})).await, "bad_request");
}

/// Whether `km` is a whole number (at least one) of `step`s.
fn whole_steps(km: f64, step: f64) -> bool {
    let steps = km / step;
    steps >= 1.0 - 1e-9 && (steps - steps.round()).abs() < 1e-6
}

/// An attacker who may move anywhere, as often as they like, and ask from anywhere cannot
/// place a victim more finely than the 100 m grid: every distance is a whole number of
/// 0.1 km steps, and two positions a few metres apart in one cell give identical answers
/// from every vantage point.
async fn nearby_never_places_anyone_more_finely_than_the_grid(db: Db) {
    let app = spawn_with(db, |s| s.user_limits.location_updates_per_min = 10_000).await;
    let mut victim = app.connect("victim").await;
    let mut attacker = app.connect("attacker").await;
    let (lat0, lng0) = (48.85661, 2.35222);
    let cell = victim.ok("location.update", json!({"lat": lat0, "lng": lng0})).await;
    let (clat, clng) = (cell["lat"].as_f64().unwrap(), cell["lng"].as_f64().unwrap());
    // Two positions about 8 m apart, each within 4 m of the cell's centre.
    let (dlat, dlng) = (3.0 / 111_195.0, 3.0 / (111_195.0 * clat.to_radians().cos()));
    let positions = [(clat + dlat, clng + dlng), (clat - dlat, clng - dlng)];
    // Vantage points around the victim, a few metres to a few kilometres away.
    let vantages: Vec<(f64, f64)> = [(0.0, 0.0), (140.0, -60.0), (-230.0, 410.0), (660.0, 520.0), (-1800.0, -2900.0)]
        .iter()
        .map(|(north, east)| {
            (clat + dlat + north / 111_195.0, clng + dlng + east / (111_195.0 * clat.to_radians().cos()))
        })
        .collect();
    let mut answers = Vec::new();
    for (lat, lng) in positions {
        let stored = victim.ok("location.update", json!({"lat": lat, "lng": lng})).await;
        let mut seen = Vec::new();
        for (vlat, vlng) in &vantages {
            attacker.ok("location.update", json!({"lat": vlat, "lng": vlng})).await;
            let near = attacker.ok("location.nearby", json!({"radius_km": 10})).await["users"].clone();
            let found = near.as_array().unwrap().iter().find(|u| u["user_id"] == "victim").cloned();
            let distance =
                found.and_then(|u| u["distance_km"].as_f64()).unwrap_or_else(|| panic!("victim not found: {near}"));
            assert!(whole_steps(distance, 0.1), "{distance} km is not a whole number of 0.1 km steps");
            seen.push(distance);
        }
        answers.push((stored, seen));
    }
    assert_eq!(answers[0], answers[1], "positions a few metres apart in one cell must look the same");
    // Standing on the victim's very spot reads as one step, not 0.
    assert_eq!(answers[0].1[0], 0.1);
}

/// A position stored on a finer grid (or by a server that kept exact positions) is moved to
/// its cell's centre when a node starts.
async fn stored_positions_are_snapped_to_the_grid_at_start_up(db: Db) {
    let url = fresh_database(db).await;
    let store = Store::connect(&Backend::from_url(&url).unwrap(), 1).await.unwrap();
    let user = UserId::parse("early").unwrap();
    let sent = Location::parse(48.85661, 2.35222).unwrap();
    let fine = store.set_location(&user, sent, LocationGrid::new(100)).await.unwrap();
    let coarse = LocationGrid::new(1000).snap(sent);
    assert_ne!(fine, coarse);

    let app = spawn_on(url, |s| s.location_precision_m = 1000).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while store.location_of(&user).await.unwrap() != Some(coarse) {
        assert!(tokio::time::Instant::now() < deadline, "the stored position was not snapped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Distances are told in steps of the new grid.
    let mut me = app.connect("me").await;
    me.ok("location.update", json!({"lat": 48.87, "lng": 2.36})).await;
    let near = me.ok("location.nearby", json!({"radius_km": 10})).await["users"].clone();
    assert!(whole_steps(near[0]["distance_km"].as_f64().unwrap(), 1.0), "{near}");
}

async fn location_updates_are_rate_limited_per_user(db: Db) {
    // The default allowance: 6 a minute.
    let app = spawn_app(db).await;
    let mut mover = app.connect("mover").await;
    let mut mover_phone = app.connect("mover").await;
    for i in 0..6 {
        mover.ok("location.update", json!({"lat": 10.0 + f64::from(i) * 0.01, "lng": 20.0})).await;
    }
    assert_eq!(mover.fails("location.update", json!({"lat": 10.5, "lng": 20.0})).await, "rate_limited");
    assert_eq!(mover_phone.fails("location.update", json!({"lat": 10.5, "lng": 20.0})).await, "rate_limited");
    // Others are not held back, and searching is not counted.
    let mut other = app.connect("other").await;
    other.ok("location.update", json!({"lat": 10.0, "lng": 20.0})).await;
    let near = mover.ok("location.nearby", json!({"radius_km": 50})).await["users"].clone();
    assert_eq!(near[0]["user_id"], "other");
}

both!(
    follow_requests_notify_and_acceptance_opens_a_room,
    offline_users_find_their_notifications_later,
    mutual_likes_match_once,
    blocks_are_enforced_on_every_path,
    reports_are_stored,
    reports_are_rate_limited_per_user,
    new_direct_rooms_are_rate_limited_per_user,
    a_block_ends_what_the_pair_shares_live,
    nearby_users_sorted_by_distance,
    nearby_never_places_anyone_more_finely_than_the_grid,
    location_updates_are_rate_limited_per_user,
    stored_positions_are_snapped_to_the_grid_at_start_up,
);
