//! Presence: queries, pushes to direct peers, last_seen.

use serde_json::json;

use crate::both;
use crate::helpers::*;

async fn presence_follows_connections(db: Db) {
    let app = spawn_app(db).await;
    let mut alice = app.connect("alice").await;
    let bob = app.connect("bob").await;
    direct_room(&mut alice, &bob).await;

    let users = alice.ok("presence.query", json!({"user_ids": ["bob", "nobody"]})).await["users"].clone();
    assert_eq!(users[0]["user_id"], "bob");
    assert_eq!(users[0]["online"], true);
    assert!(users[0]["last_seen"].is_string());
    assert_eq!(users[1], json!({"user_id": "nobody", "online": false, "last_seen": null}));

    // Bob's own arrival may still be announced to alice: he connected just before their room
    // existed. Let it settle, so that what follows is only about his devices.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    alice.no_event("message.new", std::time::Duration::from_millis(10)).await;
    alice.drop_events("presence");

    // Bob's second device does not announce him again; his last disconnect does.
    let bob_phone = app.connect("bob").await;
    bob.close().await;
    bob_phone.close().await;
    let offline = alice.event("presence").await;
    assert_eq!(offline["user_id"], "bob");
    assert_eq!(offline["online"], false);
    let seen = offline["last_seen"].as_str().unwrap().to_owned();
    let users = alice.ok("presence.query", json!({"user_ids": ["bob"]})).await["users"].clone();
    assert_eq!(users[0]["online"], false);
    assert_eq!(users[0]["last_seen"], seen.as_str());

    let _bob = app.connect("bob").await;
    let online = alice.event("presence").await;
    assert_eq!(online["user_id"], "bob");
    assert_eq!(online["online"], true);
}

async fn presence_is_only_pushed_to_direct_peers(db: Db) {
    let app = spawn_app(db).await;
    let mut stranger = app.connect("stranger").await;
    let carol = app.connect("carol").await;
    carol.close().await;
    stranger.no_event("presence", std::time::Duration::from_millis(300)).await;
}

both!(presence_follows_connections, presence_is_only_pushed_to_direct_peers);
