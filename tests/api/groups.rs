//! Group membership: blocks checked at creation, leaving a group, the per-user creation
//! limit, and `room.list` cursors that must name one of the caller's rooms.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard::domain::RoomId;
use switchboard::store::{Backend, Store};

use crate::both;
use crate::helpers::*;

const QUIET: Duration = Duration::from_millis(300);

fn room_ids(listed: &Value) -> Vec<String> {
    listed["rooms"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect()
}

async fn blocks_keep_members_out_of_new_groups_both_ways(db: Db) {
    let app = spawn_app(db).await;
    let mut alice = app.connect("alice").await;
    let mut bob = app.connect("bob").await;
    let mut carol = app.connect("carol").await;
    alice.ok("block", json!({"user_id": "bob"})).await;

    // The creator's own block is theirs to know: the refusal names it.
    let refused = alice.request("room.group.create", json!({"name": "g", "members": ["carol", "bob"]})).await;
    assert_eq!(refused["error"]["code"], "forbidden", "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("you blocked bob"), "names the creator's own block: {message}");

    // A block the member made is not told beyond the refusal.
    let refused = bob.request("room.group.create", json!({"name": "g", "members": ["carol", "alice"]})).await;
    assert_eq!(refused["error"]["code"], "forbidden", "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("cannot add"), "{message}");
    assert!(!message.contains("alice") && !message.contains("block"), "does not say who blocked whom: {message}");

    // Nothing was created by either attempt.
    carol.no_event("room.created", QUIET).await;
    assert!(room_ids(&carol.ok("room.list", json!({})).await).is_empty());

    // A third user's group is not checked between its other members, and unblocking lifts it.
    carol.ok("room.group.create", json!({"name": "both", "members": ["alice", "bob"]})).await;
    alice.ok("block", json!({"user_id": "bob", "blocked": false})).await;
    alice.ok("room.group.create", json!({"name": "again", "members": ["bob"]})).await;
}

async fn members_leave_groups_and_stop_receiving_them(db: Db) {
    let app = spawn_app(db).await;
    let mut owner = app.connect("owner").await;
    let mut leaver = app.connect("leaver").await;
    let mut leaver_phone = app.connect("leaver").await;
    let mut stayer = app.connect("stayer").await;
    let room =
        owner.ok("room.group.create", json!({"name": "club", "members": ["leaver", "stayer"]})).await["room"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
    for client in [&mut leaver, &mut leaver_phone, &mut stayer] {
        assert_eq!(client.event("room.created").await["room"]["id"], room.as_str());
    }
    let before = send(&mut owner, &room, "before").await;
    for client in [&mut leaver, &mut leaver_phone, &mut stayer] {
        assert_eq!(client.event("message.new").await["message"], before);
    }

    assert_eq!(leaver.ok("room.leave", json!({"room_id": room})).await, json!({"room_id": room}));
    // The members who remain are told, and so are the leaver's other connections.
    let left = json!({"room_id": room, "user_id": "leaver"});
    for client in [&mut owner, &mut stayer, &mut leaver_phone] {
        assert_eq!(client.event("room.member_left").await, left);
    }

    // Nothing of the room reaches either of the leaver's connections any more.
    let after = send(&mut stayer, &room, "after").await;
    stayer.ok("typing", json!({"room_id": room, "typing": true})).await;
    assert_eq!(owner.event("message.new").await["message"], after);
    owner.event("typing").await;
    for client in [&mut leaver, &mut leaver_phone] {
        client.no_event("message.new", QUIET).await;
        client.no_event("typing", Duration::ZERO).await;
    }
    leaver.no_event("room.member_left", Duration::ZERO).await;

    // Nor can the leaver read or write it.
    assert_eq!(leaver.fails("message.send", json!({"room_id": room, "body": "still here?"})).await, "forbidden");
    assert_eq!(leaver_phone.fails("message.history", json!({"room_id": room})).await, "forbidden");
    assert_eq!(leaver.fails("room.read", json!({"room_id": room})).await, "forbidden");
    assert_eq!(leaver_phone.fails("typing", json!({"room_id": room, "typing": true})).await, "forbidden");
    assert_eq!(leaver.fails("call.start", json!({"room_id": room, "media": "audio"})).await, "forbidden");
    assert_eq!(leaver.fails("room.leave", json!({"room_id": room})).await, "forbidden");
    assert!(!room_ids(&leaver.ok("room.list", json!({})).await).contains(&room));
    // A connection opened later gets nothing of it either.
    let mut leaver_laptop = app.connect("leaver").await;
    let later = send(&mut owner, &room, "later").await;
    assert_eq!(stayer.event("message.new").await["message"], later);
    leaver_laptop.no_event("message.new", QUIET).await;

    // The rest keep the whole history, gapless, and a list without the leaver.
    let history = stayer.ok("message.history", json!({"room_id": room})).await;
    let seqs: Vec<i64> = history["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    assert_eq!(history["messages"][0], before);
    let listed = owner.ok("room.list", json!({})).await;
    assert_eq!(listed["rooms"][0]["members"], json!(["owner", "stayer"]));

    // The creator may leave too; a group nobody is left in keeps its messages.
    owner.ok("room.leave", json!({"room_id": room})).await;
    assert_eq!(stayer.event("room.member_left").await, json!({"room_id": room, "user_id": "owner"}));
    stayer.ok("room.leave", json!({"room_id": room})).await;
    let store = Store::connect(&Backend::from_url(&app.database_url).unwrap(), 1).await.unwrap();
    let kept = store.messages_between(RoomId::parse(&room).unwrap(), 0, 100).await.unwrap();
    assert_eq!(kept.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 2, 3]);

    // Direct rooms cannot be left; unknown rooms and other people's are refused.
    let mut other = app.connect("other").await;
    let direct = direct_room(&mut other, &stayer).await;
    assert_eq!(other.fails("room.leave", json!({"room_id": direct})).await, "bad_request");
    assert_eq!(owner.fails("room.leave", json!({"room_id": direct})).await, "forbidden");
    assert_eq!(other.fails("room.leave", json!({"room_id": RoomId::new().to_string()})).await, "not_found");
    assert_eq!(other.fails("room.leave", json!({})).await, "bad_request");
}

async fn group_creation_is_rate_limited_per_user(db: Db) {
    // The default allowance: 5 a minute.
    let app = spawn_app(db).await;
    let mut spammer = app.connect("spammer").await;
    let mut spammer_tablet = app.connect("spammer").await;
    let mut victim = app.connect("victim").await;
    for i in 0..5 {
        spammer.ok("room.group.create", json!({"name": format!("spam {i}"), "members": ["victim"]})).await;
    }
    assert_eq!(
        spammer.fails("room.group.create", json!({"name": "one more", "members": ["victim"]})).await,
        "rate_limited"
    );
    // The allowance is the user's, not the connection's.
    assert_eq!(
        spammer_tablet.fails("room.group.create", json!({"name": "and another", "members": ["victim"]})).await,
        "rate_limited"
    );
    assert_eq!(room_ids(&victim.ok("room.list", json!({})).await).len(), 5);
    // Others are not held back.
    victim.ok("room.group.create", json!({"name": "mine", "members": ["spammer"]})).await;
    // A name is one printable line: no breaks or terminal escapes pushed into members' lists.
    for name in ["two\nlines", "\u{1b}[2Jclear", "bell\u{7}"] {
        assert_eq!(victim.fails("room.group.create", json!({"name": name, "members": ["x"]})).await, "bad_request");
    }
}

async fn room_list_cursor_must_be_one_of_your_rooms(db: Db) {
    let app = spawn_app(db).await;
    let mut alice = app.connect("alice").await;
    let bob = app.connect("bob").await;
    let mut carol = app.connect("carol").await;
    let dave = app.connect("dave").await;
    let mine = direct_room(&mut alice, &bob).await;
    let theirs = direct_room(&mut carol, &dave).await;
    let group = alice.ok("room.group.create", json!({"name": "g", "members": ["bob"]})).await["room"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // One's own room is a cursor.
    let page = alice.ok("room.list", json!({"before": group})).await;
    assert_eq!(room_ids(&page), vec![mine.clone()]);
    // Someone else's room, an unknown id, or a room one has left is not.
    assert_eq!(alice.fails("room.list", json!({"before": theirs})).await, "bad_request");
    assert_eq!(alice.fails("room.list", json!({"before": RoomId::new().to_string()})).await, "bad_request");
    alice.ok("room.leave", json!({"room_id": group})).await;
    assert_eq!(alice.fails("room.list", json!({"before": group})).await, "bad_request");
    // Time cursors are unchanged.
    assert_eq!(room_ids(&alice.ok("room.list", json!({"before": 0})).await), Vec::<String>::new());
}

both!(
    blocks_keep_members_out_of_new_groups_both_ways,
    members_leave_groups_and_stop_receiving_them,
    group_creation_is_rate_limited_per_user,
    room_list_cursor_must_be_one_of_your_rooms,
);
