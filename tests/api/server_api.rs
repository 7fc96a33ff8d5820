//! The server API (`/api/v1/`): the app's back end creates rooms, posts messages as a member
//! or the system, reaches users' devices, lists and closes their connections, revokes tokens,
//! reads unread counts and deletes users; keys, idempotency and errors.

use std::time::Duration;

use serde_json::{Value, json};

use crate::both;
use crate::helpers::*;

both!(
    rooms_members_and_messages,
    app_events_reach_every_device,
    connections_are_listed_and_closed,
    revoking_closes_connections_and_refuses_the_old_token,
    a_repeated_idempotency_key_gets_the_first_answer,
    unread_counts_and_deleting_a_user,
    deleting_a_user_ends_what_they_host_and_uncounts_what_they_watch,
);

async fn post(port: u16, path: &str, body: Value) -> ApiAnswer {
    api(port, "POST", path, Some(body), &[]).await
}

async fn group(port: u16, created_by: &str, members: &[&str]) -> String {
    let created = post(
        port,
        "/api/v1/rooms",
        json!({"kind": "group", "name": "Team", "members": members, "created_by": created_by}),
    )
    .await;
    assert_eq!(created.status, 201, "{created:?}");
    created.body["room"]["id"].as_str().unwrap().to_owned()
}

#[actix_web::test]
async fn the_api_is_off_without_a_key_and_refuses_a_wrong_one() {
    let off = spawn_app(Db::Sqlite).await;
    assert_eq!(api(off.port, "GET", "/api/v1/users/alice/unread", None, &[]).await.status, 404);
    assert_eq!(off.get("/api/v1/openapi.json").await.0, 404);
    let on = spawn_with(Db::Sqlite, with_api).await;
    for extra in ["", "Authorization: Bearer wrong\r\n", "Authorization: integration-test-api-key-0123456789abcdef\r\n"]
    {
        let refused = raw_http(on.port, "GET", "/api/v1/users/alice/unread", None, extra).await;
        assert_eq!(refused.status, 401, "{extra:?}: {refused:?}");
        assert_eq!(refused.body["error"]["code"], "unauthorized");
    }
    assert_eq!(api(on.port, "GET", "/api/v1/users/alice/unread", None, &[]).await.status, 200);
    // The document is public (it holds no data) and describes every endpoint.
    let (status, document) = on.get("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    let document: Value = serde_json::from_str(&document).unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    assert!(document["paths"]["/api/v1/rooms/{room_id}/messages"]["post"].is_object());
}

async fn rooms_members_and_messages(db: Db) {
    let app = spawn_with(db, with_api).await;
    let mut alice = app.connect("alice").await;
    let mut carol = app.connect("carol").await;
    let room = group(app.port, "alice", &["bob"]).await;
    assert_eq!(alice.event("room.created").await["room"]["id"], room);

    let system = post(app.port, &format!("/api/v1/rooms/{room}/messages"), json!({"body": "Welcome!"})).await;
    assert_eq!(system.status, 201, "{system:?}");
    assert_eq!(system.body["message"]["kind"], "system");
    assert_eq!(system.body["message"]["sender_id"], "system");
    let pushed = alice.event("message.new").await;
    assert_eq!(pushed["message"]["body"], "Welcome!");

    let from_bob =
        post(app.port, &format!("/api/v1/rooms/{room}/messages"), json!({"sender_id": "bob", "body": "hi"})).await;
    assert_eq!(from_bob.status, 201);
    assert_eq!(alice.event("message.new").await["message"]["sender_id"], "bob");
    let stranger =
        post(app.port, &format!("/api/v1/rooms/{room}/messages"), json!({"sender_id": "mallory", "body": "x"})).await;
    assert_eq!(stranger.status, 403);
    let faked = post(
        app.port,
        &format!("/api/v1/rooms/{room}/messages"),
        json!({"sender_id": "bob", "kind": "system", "body": "x"}),
    )
    .await;
    assert_eq!(faked.status, 400, "a member cannot post a system message");

    let added = post(app.port, &format!("/api/v1/rooms/{room}/members"), json!({"user_id": "carol"})).await;
    assert_eq!(added.status, 200, "{added:?}");
    assert_eq!(added.body["room"]["members"], json!(["alice", "bob", "carol"]));
    assert_eq!(carol.event("room.created").await["room"]["id"], room);
    assert_eq!(alice.event("room.member_joined").await["user_id"], "carol");
    // Carol now hears the room's messages.
    post(app.port, &format!("/api/v1/rooms/{room}/messages"), json!({"sender_id": "alice", "body": "hello carol"}))
        .await;
    assert_eq!(carol.event("message.new").await["message"]["body"], "hello carol");

    let removed = api(app.port, "DELETE", &format!("/api/v1/rooms/{room}/members/bob"), None, &[]).await;
    assert_eq!(removed.status, 200);
    assert_eq!(removed.body["room"]["members"], json!(["alice", "carol"]));
    assert_eq!(alice.event("room.member_left").await["user_id"], "bob");
    let gone = api(app.port, "DELETE", &format!("/api/v1/rooms/{room}/members/bob"), None, &[]).await;
    assert_eq!(gone.status, 404);

    let page = api(app.port, "GET", &format!("/api/v1/rooms/{room}/messages?limit=2"), None, &[]).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.body["has_more"], true);
    let seqs: Vec<i64> = page.body["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, vec![2, 3]);
    let between =
        api(app.port, "GET", &format!("/api/v1/rooms/{room}/messages?after_seq=1&before_seq=3"), None, &[]).await;
    assert_eq!(between.body["messages"].as_array().unwrap().len(), 1);
    assert_eq!(between.body["messages"][0]["seq"], 2);

    // A direct room is created once; a second call finds it.
    let direct = json!({"kind": "direct", "members": ["dave"], "created_by": "alice"});
    assert_eq!(post(app.port, "/api/v1/rooms", direct.clone()).await.status, 201);
    let again = post(app.port, "/api/v1/rooms", direct).await;
    assert_eq!(again.status, 200);
    let direct_id = again.body["room"]["id"].as_str().unwrap().to_owned();
    let member = post(app.port, &format!("/api/v1/rooms/{direct_id}/members"), json!({"user_id": "erin"})).await;
    assert_eq!(member.status, 409, "a direct room's members do not change");
}

async fn app_events_reach_every_device(db: Db) {
    let app = spawn_with(db, with_api).await;
    let mut phone = app.connect("alice").await;
    let mut laptop = app.connect("alice").await;
    let sent =
        post(app.port, "/api/v1/users/alice/events", json!({"event": "order.shipped", "data": {"order": 7}})).await;
    assert_eq!(sent.status, 202, "{sent:?}");
    assert_eq!(sent.body["connections"], 2);
    for device in [&mut phone, &mut laptop] {
        assert_eq!(device.event("order.shipped").await, json!({"order": 7}));
    }
    let offline = post(app.port, "/api/v1/users/bob/events", json!({"event": "order.shipped", "data": null})).await;
    assert_eq!(offline.body["connections"], 0);
    for native in ["message.new", "message.send", "hello", "connect"] {
        let refused = post(app.port, "/api/v1/users/alice/events", json!({"event": native, "data": {}})).await;
        assert_eq!(refused.status, 400, "{native}");
    }
}

async fn connections_are_listed_and_closed(db: Db) {
    let app = spawn_with(db, with_api).await;
    let mut first = app.connect("alice").await;
    let mut second = app.connect("alice").await;
    let listed = api(app.port, "GET", "/api/v1/users/alice/connections", None, &[]).await;
    assert_eq!(listed.status, 200);
    let connections = listed.body["connections"].as_array().unwrap().clone();
    assert_eq!(connections.len(), 2, "{listed:?}");
    assert_eq!(connections[0]["connection_id"], first.hello["connection_id"]);
    assert_eq!(connections[0]["api"], "native");
    assert_eq!(connections[0]["framing"], "native");
    assert!(connections[0]["token_expires_at"].is_string());

    let kicked = api(app.port, "DELETE", "/api/v1/users/alice/connections?reconnect=true", None, &[]).await;
    assert_eq!(kicked.body["closed"], 2);
    assert_eq!(first.close_code().await, Some(4000));
    assert_eq!(second.close_code().await, Some(4000));
    // Kicked for good: 4003.
    let mut third = app.connect("alice").await;
    let closed = api(app.port, "DELETE", "/api/v1/users/alice/connections", None, &[]).await;
    assert_eq!(closed.body["closed"], 1);
    assert_eq!(third.close_code().await, Some(4003));
}

async fn revoking_closes_connections_and_refuses_the_old_token(db: Db) {
    let app = spawn_with(db, with_api).await;
    let token = app.token("alice");
    let mut client = Client::connect_url(&app.ws_url(&token)).await;
    let revoked = post(app.port, "/api/v1/users/alice/revoke", json!({})).await;
    assert_eq!(revoked.status, 200, "{revoked:?}");
    assert_eq!(revoked.body["closed"], 1);
    assert_eq!(client.close_code().await, Some(4003));
    let (status, _) = app.get(&format!("/ws?token={token}")).await;
    assert_eq!(status, 401, "the revoked token is refused at the upgrade");
    let future = post(app.port, "/api/v1/users/alice/revoke", json!({"before": "2999-01-01T00:00:00Z"})).await;
    assert_eq!(future.status, 400);
    // A token issued after the revocation works (token times are whole seconds).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    app.connect("alice").await;
}

async fn a_repeated_idempotency_key_gets_the_first_answer(db: Db) {
    let app = spawn_with(db, with_api).await;
    let room = group(app.port, "alice", &["bob"]).await;
    let path = format!("/api/v1/rooms/{room}/messages");
    let key = [("Idempotency-Key", "order-7-shipped")];
    let first = api(app.port, "POST", &path, Some(json!({"body": "Shipped"})), &key).await;
    assert_eq!(first.status, 201);
    assert_eq!(first.header("idempotent-replayed"), None);
    let again = api(app.port, "POST", &path, Some(json!({"body": "Shipped"})), &key).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body, first.body, "the first answer, not a second message");
    // A retry that runs afresh (here: the first try's node died before keeping its answer, a
    // minute ago) finds the message the first try stored: the key is its client_id.
    execute_sql(&app.database_url, "UPDATE idempotency_keys SET status = NULL, body = NULL, created_at = 0").await;
    let retried = api(app.port, "POST", &path, Some(json!({"body": "Shipped"})), &key).await;
    assert_eq!((retried.status, retried.header("idempotent-replayed")), (201, None));
    assert_eq!(retried.body["message"]["id"], first.body["message"]["id"], "no second message");
    let other = api(app.port, "POST", &path, Some(json!({"body": "Delivered"})), &key).await;
    assert_eq!(other.status, 409);
    let page = api(app.port, "GET", &path, None, &[]).await;
    assert_eq!(page.body["messages"].as_array().unwrap().len(), 1);
    // A refusal is kept too: the same request with the key is refused the same way.
    let bad = [("Idempotency-Key", "bad-one")];
    let refused = api(app.port, "POST", &path, Some(json!({"sender_id": "mallory", "body": "x"})), &bad).await;
    assert_eq!(refused.status, 403);
    let replayed = api(app.port, "POST", &path, Some(json!({"sender_id": "mallory", "body": "x"})), &bad).await;
    assert_eq!((replayed.status, replayed.header("idempotent-replayed")), (403, Some("true")));
    let long = "k".repeat(129);
    let too_long = api(app.port, "POST", &path, Some(json!({"body": "x"})), &[("Idempotency-Key", &long)]).await;
    assert_eq!(too_long.status, 400);
    // A body over the bound is refused in the API's own form, with a key as without.
    let huge = json!({"body": "x".repeat(300 * 1024)});
    for headers in [&key[..], &[]] {
        let refused = api(app.port, "POST", &path, Some(huge.clone()), headers).await;
        assert_eq!((refused.status, refused.body["error"]["code"].as_str()), (413, Some("too_large")), "{refused:?}");
    }
}

async fn unread_counts_and_deleting_a_user(db: Db) {
    let app = spawn_with(db, with_api).await;
    let direct =
        post(app.port, "/api/v1/rooms", json!({"kind": "direct", "members": ["bob"], "created_by": "alice"})).await;
    let room = direct.body["room"]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/rooms/{room}/messages");
    for body in ["one", "two", "three"] {
        assert_eq!(post(app.port, &path, json!({"sender_id": "bob", "body": body})).await.status, 201);
    }
    // The system's id is nobody's: not a sender, a member, nor a user to delete (which would
    // blank every system message).
    let system = api(app.port, "POST", &path, Some(json!({"sender_id": "system", "body": "hi"})), &[]).await;
    assert_eq!(system.status, 400, "{system:?}");
    let members = format!("/api/v1/rooms/{room}/members");
    assert_eq!(api(app.port, "POST", &members, Some(json!({"user_id": "system"})), &[]).await.status, 400);
    assert_eq!(api(app.port, "DELETE", "/api/v1/users/system", None, &[]).await.status, 400);
    let unread = api(app.port, "GET", "/api/v1/users/alice/unread", None, &[]).await;
    assert_eq!(unread.body, json!({"total": 3, "rooms": [{"room_id": room, "unread": 3}]}));
    assert_eq!(api(app.port, "GET", "/api/v1/users/bob/unread", None, &[]).await.body["total"], 0);

    let mut bob = app.connect("bob").await;
    let deleted = api(app.port, "DELETE", "/api/v1/users/bob", None, &[]).await;
    assert_eq!(deleted.status, 200, "{deleted:?}");
    assert_eq!(deleted.body["closed"], 1);
    assert_eq!(bob.close_code().await, Some(4003));
    let page = api(app.port, "GET", &path, None, &[]).await;
    let messages = page.body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "seqs stay gapless");
    assert!(messages.iter().all(|m| m["kind"] == "deleted" && m["body"] == ""), "{messages:?}");
    let mut alice = app.connect("alice").await;
    let rooms = alice.ok("room.list", json!({})).await;
    assert_eq!(rooms["rooms"][0]["members"], json!(["alice"]));
}

async fn deleting_a_user_ends_what_they_host_and_uncounts_what_they_watch(db: Db) {
    let app = spawn_with(db, with_api).await;
    let mut host = app.connect("host").await;
    let mut viewer = app.connect("viewer").await;
    let mut leaving = app.connect("leaving").await;
    let watched = host.ok("live.create", json!({"title": "watched"})).await["session"]["id"].clone();
    viewer.ok("live.join", json!({"session_id": watched})).await;
    assert_eq!(leaving.ok("live.join", json!({"session_id": watched})).await["session"]["viewers"], 2);
    let hosted = leaving.ok("live.create", json!({"title": "hosted"})).await["session"]["id"].clone();
    viewer.ok("live.join", json!({"session_id": hosted})).await;

    let deleted = api(app.port, "DELETE", "/api/v1/users/leaving", None, &[]).await;
    assert_eq!(deleted.status, 200, "{deleted:?}");
    let ended = viewer.event("live.ended").await;
    assert_eq!(ended["session"]["id"], hosted);
    assert_eq!(ended["reason"], "host_left");
    // The watched session counts the viewer and the newcomer, not the deleted user.
    let mut late = app.connect("late").await;
    assert_eq!(late.ok("live.join", json!({"session_id": watched})).await["session"]["viewers"], 2);
}
