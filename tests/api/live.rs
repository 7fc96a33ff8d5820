//! Live sessions on one node: every event and refusal, comment limits, the throttled viewer
//! count, and sessions ending when the host is gone past the grace period.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use futures_util::{StreamExt, stream};
use serde_json::json;

use crate::both;
use crate::helpers::*;

/// Creates a session hosted by `host`; its id.
async fn create(host: &mut Client, title: &str) -> String {
    let session = host.ok("live.create", json!({"title": title})).await["session"].clone();
    session["id"].as_str().unwrap().to_owned()
}

/// Reads `live.viewers` pushes until one says `count`; how many pushes that took.
async fn viewers_reach(host: &mut Client, session: &str, count: i64) -> usize {
    let mut pushes = 0;
    loop {
        let push = host.event("live.viewers").await;
        assert_eq!(push["session_id"], session);
        pushes += 1;
        if push["viewers"] == count {
            return pushes;
        }
    }
}

async fn live_session_flow(db: Db) {
    let app = spawn_with(db, |s| s.live_comment_rate = 50).await;
    let mut host = app.connect("host").await;
    let mut host_phone = app.connect("host").await;
    let mut ann = app.connect("ann").await;
    let mut ben = app.connect("ben").await;
    let mut ben_phone = app.connect("ben").await;

    let session = host.ok("live.create", json!({"title": "  Launch day  "})).await["session"].clone();
    assert_eq!(session["title"], "Launch day");
    assert_eq!(session["host_id"], "host");
    assert_eq!(session["state"], "live");
    assert_eq!(session["viewers"], 0);
    assert!(session["created_at"].is_string());
    let id = session["id"].as_str().unwrap().to_owned();

    let joined = ann.ok("live.join", json!({"session_id": id})).await["session"].clone();
    assert_eq!(joined["viewers"], 1);
    assert_eq!(joined["id"], id.as_str());
    assert_eq!(host.event("live.viewers").await, json!({"session_id": id, "viewers": 1}));
    // One user on two connections counts once.
    assert_eq!(ben.ok("live.join", json!({"session_id": id})).await["session"]["viewers"], 2);
    assert_eq!(ben_phone.ok("live.join", json!({"session_id": id})).await["session"]["viewers"], 2);
    viewers_reach(&mut host, &id, 2).await;
    viewers_reach(&mut host_phone, &id, 2).await;
    // The host joining their own session is not a viewer.
    assert_eq!(host.ok("live.join", json!({"session_id": id})).await["session"]["viewers"], 2);

    // A comment reaches everyone in it once, except the connection that sent it.
    let ack = ann.request("live.comment", json!({"session_id": id, "text": "hello!"})).await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert!(ack.get("data").is_none(), "a comment's ack has no data: {ack}");
    for client in [&mut host, &mut host_phone, &mut ben, &mut ben_phone] {
        let comment = client.event("live.comment").await;
        assert_eq!(comment["session_id"], id.as_str());
        assert_eq!(comment["user_id"], "ann");
        assert_eq!(comment["text"], "hello!");
        assert!(comment["at"].is_string() && comment["id"].is_string(), "{comment}");
        client.no_event("live.comment", Duration::from_millis(200)).await;
    }
    ann.no_event("live.comment", Duration::from_millis(200)).await;
    host.ok("live.comment", json!({"session_id": id, "text": "welcome"})).await;
    for client in [&mut ann, &mut ben, &mut ben_phone, &mut host_phone] {
        assert_eq!(client.event("live.comment").await["user_id"], "host");
    }

    // Hands go to the host only, in raise order.
    ann.ok("live.raise_hand", json!({"session_id": id})).await;
    ben.ok("live.raise_hand", json!({"session_id": id})).await;
    for client in [&mut host, &mut host_phone] {
        assert_eq!(client.event("live.hand_raised").await, json!({"session_id": id, "user_id": "ann"}));
        assert_eq!(client.event("live.hand_raised").await, json!({"session_id": id, "user_id": "ben"}));
    }
    ben_phone.no_event("live.hand_raised", Duration::from_millis(200)).await;
    let hands = host.ok("live.hands", json!({"session_id": id})).await;
    assert_eq!(hands["session_id"], id.as_str());
    let who: Vec<&str> = hands["hands"].as_array().unwrap().iter().map(|h| h["user_id"].as_str().unwrap()).collect();
    assert_eq!(who, ["ann", "ben"]);
    // A viewer lowers their own hand: the host and their other devices hear of it.
    ben.ok("live.lower_hand", json!({"session_id": id})).await;
    assert_eq!(host.event("live.hand_lowered").await, json!({"session_id": id, "user_id": "ben"}));
    assert_eq!(ben_phone.event("live.hand_lowered").await, json!({"session_id": id, "user_id": "ben"}));
    // Accepting a hand is announced to everyone in the session.
    host.ok("live.accept_hand", json!({"session_id": id, "user_id": "ann"})).await;
    for client in [&mut ann, &mut ben, &mut ben_phone, &mut host_phone] {
        assert_eq!(client.event("live.hand_accepted").await, json!({"session_id": id, "user_id": "ann"}));
    }
    assert_eq!(host.ok("live.hands", json!({"session_id": id})).await["hands"], json!([]));
    assert_eq!(host.fails("live.accept_hand", json!({"session_id": id, "user_id": "ann"})).await, "not_found");
    // The host may lower anyone's hand; that viewer is told.
    ann.ok("live.raise_hand", json!({"session_id": id})).await;
    assert_eq!(host.event("live.hand_raised").await["user_id"], "ann");
    host.ok("live.lower_hand", json!({"session_id": id, "user_id": "ann"})).await;
    assert_eq!(ann.event("live.hand_lowered").await, json!({"session_id": id, "user_id": "ann"}));

    // An invitation reaches the invited user's connections.
    let mut cat = app.connect("cat").await;
    host.ok("live.invite", json!({"session_id": id, "user_id": "cat"})).await;
    let invited = cat.event("live.invited").await["session"].clone();
    assert_eq!(invited["id"], id.as_str());
    assert_eq!(invited["viewers"], 2);

    // Late joiners read the persisted comments, newest page first, ascending.
    cat.ok("live.join", json!({"session_id": id})).await;
    let page = cat.ok("live.comments", json!({"session_id": id})).await;
    let texts: Vec<&str> = page["comments"].as_array().unwrap().iter().map(|c| c["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["hello!", "welcome"]);
    assert_eq!(page["has_more"], false);
    let last = cat.ok("live.comments", json!({"session_id": id, "limit": 1})).await;
    assert_eq!(last["comments"][0]["text"], "welcome");
    assert_eq!(last["has_more"], true);
    let before = cat.ok("live.comments", json!({"session_id": id, "before": last["comments"][0]["id"]})).await;
    assert_eq!(before["comments"][0]["text"], "hello!");
    assert_eq!(before["has_more"], false);

    // Leaving lowers the count (once the user has no connection in it left counted).
    viewers_reach(&mut host, &id, 3).await;
    assert_eq!(ann.ok("live.leave", json!({"session_id": id})).await["session"]["viewers"], 2);
    viewers_reach(&mut host, &id, 2).await;
    host.ok("live.comment", json!({"session_id": id, "text": "after ann left"})).await;
    assert_eq!(ben.event("live.comment").await["text"], "after ann left");
    ann.no_event("live.comment", Duration::from_millis(300)).await;

    // Ending tells everyone in it, with the reason; the session is then closed to joiners.
    let ended = host.ok("live.end", json!({"session_id": id})).await["session"].clone();
    assert_eq!(ended["state"], "ended");
    assert_eq!(ended["end_reason"], "host_ended");
    assert!(ended["ended_at"].is_string());
    for client in [&mut ben, &mut ben_phone, &mut cat, &mut host_phone] {
        let push = client.event("live.ended").await;
        assert_eq!(push["reason"], "host_ended");
        assert_eq!(push["session"]["id"], id.as_str());
        assert_eq!(push["session"]["state"], "ended");
        client.no_event("live.ended", Duration::from_millis(200)).await;
    }
    ann.no_event("live.ended", Duration::from_millis(200)).await;
    assert_eq!(ann.fails("live.join", json!({"session_id": id})).await, "conflict");
    assert_eq!(ben.fails("live.comment", json!({"session_id": id, "text": "too late"})).await, "conflict");
    // Ending again answers with the ended session.
    assert_eq!(host.ok("live.end", json!({"session_id": id})).await["session"]["state"], "ended");
}

async fn live_refusals(db: Db) {
    let app = spawn_with(db, |s| s.live_comment_max_chars = 10).await;
    let mut host = app.connect("host").await;
    let mut viewer = app.connect("viewer").await;
    let mut outsider = app.connect("outsider").await;
    let mut mallory = app.connect("mallory").await;
    let mut eve = app.connect("eve").await;

    assert_eq!(host.fails("live.create", json!({"title": "   "})).await, "bad_request");
    assert_eq!(host.fails("live.create", json!({})).await, "bad_request");
    let id = create(&mut host, "Q&A").await;
    let unknown = uuid::Uuid::now_v7().to_string();
    for event in ["live.join", "live.leave", "live.raise_hand", "live.end", "live.hands", "live.comments"] {
        assert_eq!(viewer.fails(event, json!({"session_id": unknown})).await, "not_found", "{event}");
    }
    assert_eq!(viewer.fails("live.comment", json!({"session_id": unknown, "text": "hi"})).await, "not_found");
    assert_eq!(viewer.fails("live.join", json!({"session_id": "not-a-uuid"})).await, "bad_request");
    assert_eq!(viewer.fails("live.join", json!({})).await, "bad_request");

    // Not joined: no comments, hands or history.
    assert_eq!(outsider.fails("live.comment", json!({"session_id": id, "text": "hi"})).await, "forbidden");
    assert_eq!(outsider.fails("live.raise_hand", json!({"session_id": id})).await, "forbidden");
    assert_eq!(outsider.fails("live.comments", json!({"session_id": id})).await, "forbidden");

    // Host rights.
    viewer.ok("live.join", json!({"session_id": id})).await;
    viewer.ok("live.raise_hand", json!({"session_id": id})).await;
    let host_only = [
        ("live.accept_hand", json!({"session_id": id, "user_id": "viewer"})),
        ("live.invite", json!({"session_id": id, "user_id": "outsider"})),
        ("live.end", json!({"session_id": id})),
        ("live.hands", json!({"session_id": id})),
        ("live.lower_hand", json!({"session_id": id, "user_id": "host"})),
    ];
    for (event, data) in host_only {
        assert_eq!(viewer.fails(event, data).await, "forbidden", "{event}");
    }
    assert_eq!(host.fails("live.leave", json!({"session_id": id})).await, "bad_request");
    assert_eq!(host.fails("live.invite", json!({"session_id": id, "user_id": "host"})).await, "bad_request");

    // Comment rules.
    assert_eq!(viewer.fails("live.comment", json!({"session_id": id, "text": "x".repeat(11)})).await, "too_large");
    assert_eq!(viewer.fails("live.comment", json!({"session_id": id, "text": " "})).await, "bad_request");
    viewer.ok("live.comment", json!({"session_id": id, "text": "é".repeat(10)})).await;

    // Blocks, in either direction, keep a user out and uninvited.
    host.ok("block", json!({"user_id": "mallory"})).await;
    eve.ok("block", json!({"user_id": "host"})).await;
    for (client, name) in [(&mut mallory, "mallory"), (&mut eve, "eve")] {
        assert_eq!(client.fails("live.join", json!({"session_id": id})).await, "forbidden");
        assert_eq!(host.fails("live.invite", json!({"session_id": id, "user_id": name})).await, "forbidden");
        client.no_event("live.invited", Duration::from_millis(100)).await;
    }

    // Joining, inviting to or accepting in an ended session is a conflict.
    host.ok("live.end", json!({"session_id": id})).await;
    assert_eq!(outsider.fails("live.join", json!({"session_id": id})).await, "conflict");
    assert_eq!(host.fails("live.invite", json!({"session_id": id, "user_id": "outsider"})).await, "conflict");
    assert_eq!(viewer.fails("live.raise_hand", json!({"session_id": id})).await, "conflict");
    // Viewers who were in it can still read its comments.
    assert_eq!(viewer.ok("live.comments", json!({"session_id": id})).await["comments"].as_array().unwrap().len(), 1);
}

async fn live_comment_rate_limit(db: Db) {
    // 1 comment per second with a burst of 2.
    let app = spawn_with(db, |s| s.live_comment_rate = 1).await;
    let mut host = app.connect("host").await;
    let mut chatty = app.connect("chatty").await;
    let id = create(&mut host, "rate").await;
    chatty.ok("live.join", json!({"session_id": id})).await;
    chatty.ok("live.comment", json!({"session_id": id, "text": "one"})).await;
    chatty.ok("live.comment", json!({"session_id": id, "text": "two"})).await;
    assert_eq!(chatty.fails("live.comment", json!({"session_id": id, "text": "three"})).await, "rate_limited");
    // Only that comment is refused: the connection and other commands go on.
    chatty.ok("live.raise_hand", json!({"session_id": id})).await;
    // The host is limited separately.
    host.ok("live.comment", json!({"session_id": id, "text": "host"})).await;
    for text in ["one", "two"] {
        assert_eq!(host.event("live.comment").await["text"], text);
    }
    host.no_event("live.comment", Duration::from_millis(200)).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    chatty.ok("live.comment", json!({"session_id": id, "text": "four"})).await;
    assert_eq!(host.event("live.comment").await["text"], "four");
}

async fn live_viewer_count_is_throttled(db: Db) {
    let app = spawn_app(db).await;
    let mut host = app.connect("host").await;
    let id = create(&mut host, "busy").await;
    // The host reads its pushes while the viewers join, so that arrival times are real.
    let joining = Instant::now();
    let join_all = async {
        let mut viewers = Vec::new();
        for i in 0..8 {
            let mut viewer = app.connect(&format!("v{i}")).await;
            viewer.ok("live.join", json!({"session_id": id})).await;
            viewers.push(viewer);
        }
        (viewers, joining.elapsed())
    };
    let watch = async {
        let mut pushes = Vec::new();
        loop {
            let push = host.event("live.viewers").await;
            pushes.push((Instant::now(), push["viewers"].as_i64().unwrap()));
            if push["viewers"] == 8 {
                return pushes;
            }
        }
    };
    let ((_viewers, joins), pushes) = futures_util::join!(join_all, watch);
    // One push at once, then at most one per second while joins go on (however many).
    assert!(pushes.len() as f64 <= joins.as_secs_f64() + 2.0, "{} pushes for {joins:?} of joins", pushes.len());
    for pair in pushes.windows(2) {
        assert!(pair[1].0 - pair[0].0 >= Duration::from_millis(800), "pushed too often: {pushes:?}");
        assert_ne!(pair[0].1, pair[1].1, "an unchanged count was pushed");
    }
    // Nothing changed, nothing more is pushed.
    host.no_event("live.viewers", Duration::from_millis(1500)).await;
    // Join and leave within one interval: the count ends where it was, so no push either.
    let mut flicker = app.connect("flicker").await;
    flicker.ok("live.join", json!({"session_id": id})).await;
    flicker.ok("live.leave", json!({"session_id": id})).await;
    let extra = tokio::time::timeout(Duration::from_millis(1500), host.event("live.viewers")).await;
    if let Ok(push) = extra {
        // The join may have been seen on its own before the leave committed.
        assert_eq!(push["viewers"], 9);
        assert_eq!(host.event("live.viewers").await["viewers"], 8);
    }
}

async fn live_host_left_ends_after_grace(db: Db) {
    let app = spawn_with(db, |s| s.live_host_grace_secs = 1).await;

    // A host who comes back within the grace period keeps the session.
    let mut host = app.connect("host").await;
    let mut viewer = app.connect("viewer").await;
    let id = create(&mut host, "stays").await;
    viewer.ok("live.join", json!({"session_id": id})).await;
    host.close().await;
    let mut host = app.connect("host").await;
    viewer.no_event("live.ended", Duration::from_millis(2000)).await;
    host.ok("live.comment", json!({"session_id": id, "text": "still here"})).await;
    assert_eq!(viewer.event("live.comment").await["text"], "still here");

    // A viewer gone past the grace period stops being counted.
    let mut brief = app.connect("brief").await;
    brief.ok("live.join", json!({"session_id": id})).await;
    viewers_reach(&mut host, &id, 2).await;
    brief.close().await;
    viewers_reach(&mut host, &id, 1).await;

    // A host gone past the grace period ends the session with host_left.
    let started = Instant::now();
    host.close().await;
    let ended = viewer.event("live.ended").await;
    assert!(started.elapsed() >= Duration::from_millis(900), "ended before the grace period");
    assert_eq!(ended["reason"], "host_left");
    assert_eq!(ended["session"]["end_reason"], "host_left");
    assert_eq!(ended["session"]["state"], "ended");
    let mut other = app.connect("other").await;
    assert_eq!(other.fails("live.join", json!({"session_id": id})).await, "conflict");
}

async fn live_sessions_of_hosts_gone_for_good_are_swept(db: Db) {
    // A session whose host is offline and whose departure check never ran (its node was
    // stopped or restarted first): here, one written by another node whose host never
    // connected to this one.
    let url = fresh_database(db).await;
    let store = switchboard::store::Store::connect(&switchboard::store::Backend::from_url(&url).unwrap(), 2)
        .await
        .expect("store");
    let host = switchboard::domain::UserId::parse("gone").unwrap();
    let title = switchboard::domain::LiveTitle::parse("orphan").unwrap();
    let id = store.create_live_session(&host, &title, 1).await.expect("session").expect("under the cap").id.to_string();
    let app = spawn_on(url, |s| s.live_host_grace_secs = 1).await;
    let mut viewer = app.connect("viewer").await;
    viewer.ok("live.join", json!({"session_id": id})).await;
    let ended = viewer.event("live.ended").await;
    assert_eq!(ended["reason"], "host_left");
    assert_eq!(ended["session"]["id"], id.as_str());
}

/// Many viewers joining at once (the session's actor batches them) are each counted once: the
/// count ends exact, a blocked user among them is refused, and joining again counts nobody twice.
async fn live_crowd_joining_at_once_is_counted_exactly(db: Db) {
    const VIEWERS: usize = 300;
    let app = spawn_app(db).await;
    let mut host = app.connect("host").await;
    let mut mallory = app.connect("mallory").await;
    host.ok("block", json!({"user_id": "mallory"})).await;
    let id = create(&mut host, "crowd").await;
    let app = &app;
    let mut viewers: Vec<Client> = stream::iter(0..VIEWERS)
        .map(|i| async move { app.connect(&format!("v{i}")).await })
        .buffer_unordered(50)
        .collect()
        .await;
    let join = json!({"session_id": id});

    // Every viewer and mallory send live.join at once.
    let joins = join_all(viewers.iter_mut().map(|viewer| viewer.ok("live.join", join.clone())));
    let (answers, refused) = futures_util::join!(joins, mallory.request("live.join", join.clone()));
    assert_eq!(refused["error"]["code"], "forbidden", "{refused}");
    let counts: Vec<i64> = answers.iter().map(|answer| answer["session"]["viewers"].as_i64().unwrap()).collect();
    assert!(counts.iter().all(|count| (1..=VIEWERS as i64).contains(count)), "{counts:?}");
    assert_eq!(counts.iter().max(), Some(&(VIEWERS as i64)));
    viewers_reach(&mut host, &id, VIEWERS as i64).await;
    let batches = counts.iter().collect::<std::collections::HashSet<_>>().len();
    // One count per batch: a crowd is joined in a few transactions, not one each.
    assert!(batches <= VIEWERS / 2, "{VIEWERS} joins at once took {batches} batches");

    // Again, with one newcomer and the host among them: only the newcomer is counted.
    let mut late = app.connect("late").await;
    let again =
        join_all(viewers.iter_mut().chain([&mut late, &mut host]).map(|client| client.ok("live.join", join.clone())));
    let (answers, refused) = futures_util::join!(again, mallory.request("live.join", join.clone()));
    assert_eq!(refused["error"]["code"], "forbidden", "{refused}");
    for answer in &answers {
        let count = answer["session"]["viewers"].as_i64().unwrap();
        assert!(count == VIEWERS as i64 || count == VIEWERS as i64 + 1, "{answer}");
    }
    viewers_reach(&mut host, &id, VIEWERS as i64 + 1).await;
    host.no_event("live.viewers", Duration::from_millis(1500)).await;
    assert_eq!(viewers[0].ok("live.join", join.clone()).await["session"]["viewers"], VIEWERS as i64 + 1);
}

async fn live_sessions_are_bounded_per_host(db: Db) {
    let app = spawn_with(db, |s| {
        s.user_limits.live_sessions_per_host = 2;
        s.user_limits.live_creates_per_min = 5;
    })
    .await;
    let mut host = app.connect("host").await;
    let mut phone = app.connect("host").await;
    let first = create(&mut host, "one").await;
    create(&mut phone, "two").await;
    // At the cap, from any connection; ending one makes room.
    assert_eq!(host.fails("live.create", json!({"title": "three"})).await, "conflict");
    assert_eq!(phone.fails("live.create", json!({"title": "three"})).await, "conflict");
    host.ok("live.end", json!({"session_id": first})).await;
    create(&mut host, "three").await;
    // The per-minute allowance counts every attempt with a valid title, refused ones too: five
    // made, the sixth refused.
    assert_eq!(host.fails("live.create", json!({"title": "four"})).await, "rate_limited");
    // Titles are one printable line; comments may break lines but carry no other control.
    let mut other = app.connect("other").await;
    for title in ["a\nb", "\u{1b}[2Jx", "a\u{85}b"] {
        assert_eq!(other.fails("live.create", json!({"title": title})).await, "bad_request", "{title:?}");
    }
    let session = create(&mut other, "fine").await;
    other.ok("live.comment", json!({"session_id": session, "text": "line one\nline two"})).await;
    let refused = other.fails("live.comment", json!({"session_id": session, "text": "\u{7}ring"})).await;
    assert_eq!(refused, "bad_request");
}

/// The store takes comments and hands only from those who watch (and comments from the
/// host), whatever a node's list of who watches says: a viewer removed (by leaving, or a
/// block) a moment ago may still be on it.
async fn live_comments_and_hands_are_for_those_who_watch(db: Db) {
    use switchboard::domain::{CommentText, LiveTitle, UserId};
    use switchboard::store::{Backend, Store};
    let url = fresh_database(db).await;
    let store = Store::connect(&Backend::from_url(&url).unwrap(), 2).await.unwrap();
    let [host, viewer] = ["host", "viewer"].map(|u| UserId::parse(u).unwrap());
    let title = LiveTitle::parse("t").unwrap();
    let session = store.create_live_session(&host, &title, 3).await.unwrap().unwrap().id;
    let text = CommentText::parse("hi".into(), 500).unwrap();
    assert!(store.add_live_comment(session, &host, &text).await.unwrap().is_some(), "the host comments");
    assert!(store.add_live_comment(session, &viewer, &text).await.unwrap().is_none(), "not joined");
    assert!(!store.raise_hand(session, &viewer).await.unwrap());
    store.join_live(session, &viewer).await.unwrap();
    assert!(store.add_live_comment(session, &viewer, &text).await.unwrap().is_some());
    assert!(store.raise_hand(session, &viewer).await.unwrap());
    assert!(store.take_hand(session, &viewer).await.unwrap());
    store.leave_live(session, &viewer).await.unwrap();
    assert!(store.add_live_comment(session, &viewer, &text).await.unwrap().is_none(), "left");
    assert!(!store.raise_hand(session, &viewer).await.unwrap());
}

both!(
    live_comments_and_hands_are_for_those_who_watch,
    live_sessions_are_bounded_per_host,
    live_session_flow,
    live_crowd_joining_at_once_is_counted_exactly,
    live_refusals,
    live_comment_rate_limit,
    live_viewer_count_is_throttled,
    live_host_left_ends_after_grace,
    live_sessions_of_hosts_gone_for_good_are_swept,
);
