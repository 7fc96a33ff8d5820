//! The connection lifecycle's batched store work: each batched query answers what its
//! one-user query answers, and many connects and presence changes at once behave as one at a
//! time did.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::json;
use switchboard::domain::{ConnectionId, LiveTitle, Media, RoomId, SessionId, Timestamp, UserId};
use switchboard::store::{Backend, Profile, Store};

use crate::both;
use crate::helpers::*;

fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

async fn store(db: Db) -> Store {
    let url = fresh_database(db).await;
    Store::connect(&Backend::from_url(&url).unwrap(), 4).await.expect("store connects")
}

fn sorted<T: Ord>(mut items: Vec<T>) -> Vec<T> {
    items.sort();
    items
}

async fn batched_reads_answer_what_single_reads_do(db: Db) {
    let store = store(db).await;
    let [ann, ben, cat, dan, eve] = ["ann", "ben", "cat", "dan", "eve"].map(user);
    let everyone = [ann.clone(), ben.clone(), cat.clone(), dan.clone(), eve.clone()];
    store.open_direct_room(&ann, &ben).await.unwrap();
    store.open_direct_room(&ann, &cat).await.unwrap();
    store.open_direct_room(&cat, &dan).await.unwrap();
    let group = store.create_group_room(&ann, "group", &[ben.clone(), dan.clone()]).await.unwrap();
    store.set_block(&cat, &ann, true).await.unwrap();
    store.set_block(&dan, &ben, true).await.unwrap();
    let hosted = store.create_live_session(&ann, &LiveTitle::parse("hosted").unwrap(), 1).await.unwrap().unwrap();
    store.join_live(hosted.id, &ben).await.unwrap();
    let ended = store.create_live_session(&cat, &LiveTitle::parse("ended").unwrap(), 1).await.unwrap().unwrap();
    store.join_live(ended.id, &ben).await.unwrap();
    store.end_live(ended.id, switchboard::domain::LiveEndReason::HostEnded).await.unwrap();

    let rooms = store.rooms_of_many(&everyone).await.unwrap();
    let peers = store.direct_peers_many(&everyone).await.unwrap();
    let blocks = store.block_relations_many(&everyone).await.unwrap();
    let live = store.live_sessions_of_many(&everyone).await.unwrap();
    for one in &everyone {
        let single = sorted(store.rooms_of(one).await.unwrap());
        assert_eq!(sorted(rooms.get(one).cloned().unwrap_or_default()), single, "rooms of {one}");
        let single = sorted(store.direct_peers(one).await.unwrap());
        assert_eq!(sorted(peers.get(one).cloned().unwrap_or_default()), single, "direct peers of {one}");
        let single = store.block_relations(one).await.unwrap();
        assert_eq!(blocks.get(one).cloned().unwrap_or_default(), single, "blocks of {one}");
        let single = store.live_sessions_of(one).await.unwrap();
        assert_eq!(live.get(one).cloned().unwrap_or_default(), single, "live sessions of {one}");
    }
    // Spot checks, so that the comparison above is not between two empty answers.
    assert_eq!(rooms[&ann].len(), 3);
    assert_eq!(sorted(peers[&cat].iter().map(|(_, p)| p.clone()).collect()), vec![ann.clone(), dan.clone()]);
    assert!(!rooms.contains_key(&eve) && !peers.contains_key(&eve) && !blocks.contains_key(&eve));
    assert_eq!(blocks[&ben], HashSet::from([dan.clone()]));
    assert_eq!(live[&ann], vec![(hosted.id, true)]);
    assert_eq!(live[&ben], vec![(hosted.id, false)]);

    // Room loads: members, and blocks between the two members of a direct room.
    let (ann_cat, _) = store.open_direct_room(&ann, &cat).await.unwrap();
    let (ann_ben, _) = store.open_direct_room(&ann, &ben).await.unwrap();
    let unknown = RoomId::new();
    let loaded = store.room_members_many(&[ann_cat, ann_ben, group, unknown]).await.unwrap();
    assert!(!loaded.contains_key(&unknown));
    for id in [ann_cat, ann_ben, group] {
        let single = store.room_members(id).await.unwrap().unwrap();
        let batched = &loaded[&id];
        assert_eq!((batched.kind, &batched.members, batched.last_seq), (single.kind, &single.members, single.last_seq));
        assert_eq!(batched.number, single.number);
    }
    let pairs = [(ann.clone(), cat.clone()), (ann.clone(), ben.clone()), (ben.clone(), dan.clone())];
    let blocked = store.blocked_pairs(&pairs).await.unwrap();
    assert_eq!(blocked, HashSet::from([(ann.clone(), cat.clone()), (ben.clone(), dan.clone())]));
    for (a, b) in &pairs {
        assert_eq!(blocked.contains(&(a.clone(), b.clone())), store.blocked_between(a, b).await.unwrap());
    }
}

async fn batched_writes_store_what_single_writes_do(db: Db) {
    let store = store(db).await;
    let [ann, ben, cat] = ["ann", "ben", "cat"].map(user);
    let named = |name: &str| Profile { name: Some(name.into()), avatar: Some(format!("https://a/{name}")) };

    // New users are created; a later touch without a name keeps the stored one.
    let first = Timestamp::from_millis(1_000_000);
    store.touch_users(&[(ben.clone(), named("Ben")), (ann.clone(), named("Ann"))], first).await.unwrap();
    let later = Timestamp::from_millis(2_000_000);
    let nameless = Profile { name: None, avatar: Some("https://a/new".into()) };
    store.touch_users(&[(ann.clone(), nameless), (cat.clone(), Profile::default())], later).await.unwrap();
    let profiles = store.profiles(&[ann.clone(), ben.clone(), cat.clone()]).await.unwrap();
    assert_eq!(profiles[&ann], Profile { name: Some("Ann".into()), avatar: Some("https://a/new".into()) });
    assert_eq!(profiles[&ben], named("Ben"));
    assert_eq!(profiles[&cat], Profile::default());
    let seen = store.last_seen(&[ann.clone(), ben.clone(), cat.clone()]).await.unwrap();
    assert_eq!((seen[&ann], seen[&ben], seen[&cat]), (later, first, later));

    let (a, b) = (Timestamp::from_millis(3_000_000), Timestamp::from_millis(3_000_500));
    store.set_last_seen_many(&[(ann.clone(), a), (ben.clone(), b), (user("nobody"), b)]).await.unwrap();
    let seen = store.last_seen(&[ann.clone(), ben.clone(), user("nobody")]).await.unwrap();
    assert_eq!(seen, HashMap::from([(ann.clone(), a), (ben.clone(), b)]));

    // Call presence: ann (the caller) goes away, ben (who answered on a device) comes back,
    // which frees his device.
    let (room, _) = store.open_direct_room(&ann, &ben).await.unwrap();
    let (ann_device, ben_device) = (ConnectionId::new(), ConnectionId::new());
    let deadline = Timestamp::from_millis(Timestamp::now().millis() + 60_000);
    let call = store
        .start_call(room, &ann, ann_device, std::slice::from_ref(&ben), Media::Audio, deadline)
        .await
        .unwrap()
        .unwrap();
    store.accept_call(call, &ben, ben_device).await.unwrap().unwrap();
    let devices = store.call(call).await.unwrap().unwrap().devices;
    assert_eq!(devices, HashMap::from([(ann.clone(), ann_device), (ben.clone(), ben_device)]));
    let away = Timestamp::from_millis(Timestamp::now().millis() - 10_000);
    store.mark_call_presence_many(&[(ann.clone(), Some(away)), (ben.clone(), None)]).await.unwrap();
    let devices = store.call(call).await.unwrap().unwrap().devices;
    assert_eq!(devices, HashMap::from([(ann.clone(), ann_device)]));
    // A second away mark keeps the first time.
    store.mark_call_presence_many(&[(ann.clone(), Some(Timestamp::now()))]).await.unwrap();
    assert!(store.away_parties(Timestamp::from_millis(away.millis() - 1)).await.unwrap().is_empty());
    assert_eq!(store.away_parties(away).await.unwrap(), vec![(call, ann.clone())]);
    assert!(store.drop_away(call, &ann).await.unwrap());
    assert!(!store.drop_away(call, &ann).await.unwrap(), "once");
}

/// Pairs of users with a direct room each, then everyone reconnects at once: each connect
/// gets its own rooms (a message reaches the peer) and presence reaches the right peers.
async fn many_connects_at_once_each_get_their_rooms_and_presence(db: Db) {
    // Small batches, so that the connects span several.
    let app = spawn_with(db, |s| s.lifecycle_batch_max = 7).await;
    const PAIRS: usize = 24;
    let a_names: Vec<String> = (0..PAIRS).map(|p| format!("a{p}")).collect();
    let b_names: Vec<String> = (0..PAIRS).map(|p| format!("b{p}")).collect();
    let mut a_side = join_all(a_names.iter().map(|name| app.connect(name))).await;
    let b_side = join_all(b_names.iter().map(|name| app.connect(name))).await;
    let mut rooms = Vec::new();
    for (a, b) in a_side.iter_mut().zip(&b_side) {
        rooms.push(direct_room(a, b).await);
    }
    join_all(a_side.into_iter().chain(b_side).map(Client::close)).await;
    // The a's, each with a second device of one user among them (its two connects cannot
    // share a batch).
    let mut names = a_names.clone();
    names.push("a0".into());
    let mut a_side = join_all(names.iter().map(|name| app.connect(name))).await;
    let second_a0 = a_side.pop().unwrap();
    // Bring every b back at once. Each a may first hear its b go offline (the b's earlier
    // close, announced by a later batch), never anyone else.
    let mut b_side = join_all(b_names.iter().map(|name| app.connect(name))).await;
    for (p, a) in a_side.iter_mut().enumerate() {
        loop {
            let presence = a.event("presence").await;
            assert_eq!(presence["user_id"].as_str(), Some(format!("b{p}").as_str()));
            if presence["online"].as_bool() == Some(true) {
                break;
            }
        }
    }
    for (p, (a, b)) in a_side.iter_mut().zip(b_side.iter_mut()).enumerate() {
        let sent = send(b, &rooms[p], &format!("hello {p}")).await;
        let got = a.event("message.new").await;
        assert_eq!(got["message"]["id"], sent["id"]);
        assert_eq!(got["message"]["room_id"], rooms[p].as_str());
    }
    // a0's second device got the rooms too.
    let mut second_a0 = second_a0;
    assert_eq!(second_a0.event("message.new").await["message"]["room_id"], rooms[0].as_str());

    // Everyone on the b side drops at once: each a hears its own peer go offline, with the
    // time that presence.query then reports.
    join_all(b_side.into_iter().map(Client::close)).await;
    for (p, a) in a_side.iter_mut().enumerate() {
        let offline = a.event("presence").await;
        assert_eq!(offline["user_id"], format!("b{p}").as_str());
        assert_eq!(offline["online"], false);
        let users = a.ok("presence.query", json!({"user_ids": [format!("b{p}")]})).await["users"].clone();
        assert_eq!(users[0]["online"], false);
        assert_eq!(users[0]["last_seen"], offline["last_seen"]);
    }
}

/// A device that took a call and closes hands the call back to the party's other devices;
/// connections that never took a device change nothing when they close.
async fn a_closed_call_device_is_released(db: Db) {
    let app = spawn_app(db).await;
    let mut alice = app.connect("alice").await;
    let mut bob_phone = app.connect("bob").await;
    let bob_laptop = app.connect("bob").await;
    let bob_tablet = app.connect("bob").await;
    let room = direct_room(&mut alice, &bob_phone).await;
    let call = alice.ok("call.start", json!({"room_id": room, "media": "audio"})).await["call"]["id"].clone();
    bob_phone.event("call.incoming").await;
    bob_phone.ok("call.accept", json!({"call_id": call})).await;
    // The tablet never took the call: closing it leaves the phone the device.
    bob_tablet.close().await;
    alice.ok("call.signal", json!({"call_id": call, "signal": {"n": 1}})).await;
    assert_eq!(bob_phone.event("call.signal").await["signal"]["n"], 1);
    let mut bob_laptop = bob_laptop;
    bob_laptop.no_event("call.signal", Duration::from_millis(300)).await;
    // The phone goes: its device is released, so the laptop gets the party's signals.
    bob_phone.close().await;
    let mut delivered = false;
    for n in 2..20 {
        alice.ok("call.signal", json!({"call_id": call, "signal": {"n": n}})).await;
        let got = tokio::time::timeout(Duration::from_millis(250), bob_laptop.event("call.signal")).await;
        if got.is_ok() {
            delivered = true;
            break;
        }
    }
    assert!(delivered, "the laptop never got the call's signals after the phone closed");
}

/// A batch of joins counts each new viewer once: never the host, a user counted before, or
/// a user named twice; an ended session counts nobody, an unknown one answers `None`.
async fn a_batch_of_joins_counts_each_new_viewer_once(db: Db) {
    let store = store(db).await;
    let [host, old, ann, ben] = ["host", "old", "ann", "ben"].map(user);
    let session = store.create_live_session(&host, &LiveTitle::parse("crowd").unwrap(), 1).await.unwrap().unwrap().id;
    let first = store.join_live(session, &old).await.unwrap().unwrap();
    assert_eq!((first.session.viewers, first.joined), (1, HashSet::from([old.clone()])));

    let batch = [ann.clone(), host.clone(), old.clone(), ben.clone(), ann.clone()];
    let joins = store.join_live_many(session, &batch).await.unwrap().unwrap();
    assert_eq!(joins.joined, HashSet::from([ann.clone(), ben.clone()]));
    assert_eq!(joins.session.viewers, 3);
    assert_eq!(store.live_viewer_count(session).await.unwrap(), 3);
    for one in [&old, &ann, &ben] {
        assert!(store.is_live_viewer(session, one).await.unwrap(), "{one} is counted");
    }
    assert!(!store.is_live_viewer(session, &host).await.unwrap());
    // The same batch again counts nobody.
    let again = store.join_live_many(session, &batch).await.unwrap().unwrap();
    assert!(again.joined.is_empty());
    assert_eq!(again.session.viewers, 3);
    // A full batch (the session actor's most, 500).
    let crowd: Vec<UserId> = (0..500).map(|i| user(&format!("c{i}"))).collect();
    let joins = store.join_live_many(session, &crowd).await.unwrap().unwrap();
    assert_eq!(joins.joined.len(), 500);
    assert_eq!(joins.session.viewers, 503);
    assert!(store.join_live_many(session, &[]).await.unwrap().unwrap().joined.is_empty());

    store.end_live(session, switchboard::domain::LiveEndReason::HostEnded).await.unwrap();
    let late = store.join_live_many(session, &[user("late")]).await.unwrap().unwrap();
    assert!(late.joined.is_empty());
    assert_eq!(late.session.viewers, 503);
    assert!(!late.session.is_live());
    assert!(store.join_live_many(SessionId::new(), std::slice::from_ref(&ann)).await.unwrap().is_none());
}

both!(
    batched_reads_answer_what_single_reads_do,
    a_batch_of_joins_counts_each_new_viewer_once,
    batched_writes_store_what_single_writes_do,
    many_connects_at_once_each_get_their_rooms_and_presence,
    a_closed_call_device_is_released,
);
