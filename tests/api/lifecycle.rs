//! Health endpoints, metrics, durability across restarts, graceful shutdown.

use std::time::Duration;

use serde_json::json;

use crate::both;
use crate::helpers::*;

async fn health_readiness_and_metrics(db: Db) {
    let app = spawn_app(db).await;
    assert_eq!(app.get("/healthz").await.0, 200);
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    let mut alice = app.connect("alice").await;
    let bob = app.connect("bob").await;
    let room = direct_room(&mut alice, &bob).await;
    send(&mut alice, &room, "counted").await;
    alice.fails("no.such", json!({})).await;
    let (status, metrics) = app.get("/metrics").await;
    assert_eq!(status, 200);
    for needle in [
        "switchboard_connections",
        "switchboard_frames_in_total{event=\"message.send\"",
        "switchboard_frames_out_total{event=\"ack\"",
        "switchboard_errors_total{code=\"unknown_event\"",
        "switchboard_write_batch_size_count",
        "switchboard_commit_seconds_bucket",
        "switchboard_outbound_dropped_total",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }
}

async fn messages_survive_a_restart(db: Db) {
    let app = spawn_app(db).await;
    let url = app.database_url.clone();
    let mut alice = app.connect("alice").await;
    let bob = app.connect("bob").await;
    let room = direct_room(&mut alice, &bob).await;
    for i in 0..20 {
        send(&mut alice, &room, &format!("durable {i}")).await;
    }
    drop((alice, bob));
    app.stop().await;

    let app = spawn_on(url, |_| {}).await;
    let mut bob = app.connect("bob").await;
    let history = bob.ok("message.history", json!({"room_id": room, "limit": 100})).await;
    let bodies: Vec<String> =
        history["messages"].as_array().unwrap().iter().map(|m| m["body"].as_str().unwrap().to_owned()).collect();
    assert_eq!(bodies, (0..20).map(|i| format!("durable {i}")).collect::<Vec<_>>());
    assert_eq!(bob.ok("room.list", json!({})).await["rooms"][0]["unread"], 20);
    // Seq continues without a gap.
    let mut alice = app.connect("alice").await;
    assert_eq!(send(&mut alice, &room, "after restart").await["seq"], 21);
}

/// A server process on `url`, and the WebSocket address that connects a user to it.
async fn process_on(url: &str) -> (tokio::process::Child, impl Fn(&str) -> String + use<>) {
    process_with(&[("SWITCHBOARD_DATABASE_URL", url)]).await
}

async fn process_with(env: &[(&str, &str)]) -> (tokio::process::Child, impl Fn(&str) -> String + use<>) {
    let (child, port) = spawn_process(env).await;
    let auth = switchboard::auth::Authenticator::new(SECRET);
    let ws = move |user: &str| {
        let token = auth.mint(&switchboard::domain::UserId::parse(user).unwrap(), &Default::default(), 600);
        format!("ws://127.0.0.1:{port}/ws?token={token}")
    };
    (child, ws)
}

/// SIGTERM, then: `client` is closed with 1012 and the process exits cleanly.
async fn terminate(mut child: tokio::process::Child, client: &mut Client) {
    let pid = child.id().unwrap() as i32;
    // kill(2) through the standard command, no libc binding needed.
    std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert_eq!(client.close_code().await, Some(1012));
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("exits").unwrap();
    assert!(status.success(), "clean exit: {status}");
}

async fn sigterm_closes_connections_with_1012_and_keeps_acked_messages(db: Db) {
    let url = fresh_database(db).await;
    let (child, ws) = process_on(&url).await;
    let mut alice = Client::connect_url(&ws("alice")).await;
    let bob = Client::connect_url(&ws("bob")).await;
    let room = direct_room(&mut alice, &bob).await;
    let acked = send(&mut alice, &room, "before shutdown").await;

    terminate(child, &mut alice).await;

    let app = spawn_on(url, |_| {}).await;
    let mut bob = app.connect("bob").await;
    let history = bob.ok("message.history", json!({"room_id": room})).await;
    assert_eq!(history["messages"][0], acked);
}

/// A node with one worker serves its port on its own thread; SIGTERM drains it the same way:
/// no new connections, the open ones closed with 1012, every acked message kept.
async fn sigterm_drains_a_node_with_one_worker(db: Db) {
    let url = fresh_database(db).await;
    let (child, ws) = process_with(&[("SWITCHBOARD_DATABASE_URL", &url), ("SWITCHBOARD_WORKERS", "1")]).await;
    let mut alice = Client::connect_url(&ws("alice")).await;
    let mut bob = Client::connect_url(&ws("bob")).await;
    let room = direct_room(&mut alice, &bob).await;
    let acked = send(&mut alice, &room, "before shutdown").await;
    assert_eq!(bob.event("message.new").await["message"], acked);

    terminate(child, &mut alice).await;
    assert!(tokio_tungstenite::connect_async(ws("carol")).await.is_err(), "a stopped node took a connection");

    let app = spawn_on(url, |_| {}).await;
    let mut bob = app.connect("bob").await;
    let history = bob.ok("message.history", json!({"room_id": room})).await;
    assert_eq!(history["messages"][0], acked);
}

/// An in-process node with one worker: its connections are served on the test's own thread,
/// and a graceful stop closes them with 1012.
async fn a_node_with_one_worker_serves_on_its_own_thread(db: Db) {
    let app = spawn_with(db, |settings| settings.workers = Some(1)).await;
    let mut alice = app.connect("alice").await;
    let mut bob = app.connect("bob").await;
    let room = direct_room(&mut alice, &bob).await;
    let sent = send(&mut alice, &room, "one thread").await;
    assert_eq!(bob.event("message.new").await["message"], sent);
    let (status, _) = http_get(app.port, "/readyz").await;
    assert_eq!(status, 200);
    app.stop().await;
    assert_eq!(alice.close_code().await, Some(1012));
    assert_eq!(bob.close_code().await, Some(1012));
}

/// Users still connected when their (single) node stops went offline then: their
/// `last_seen` is the shutdown, not the time they connected.
async fn sigterm_stores_last_seen_of_users_still_connected(db: Db) {
    let url = fresh_database(db).await;
    let (child, ws) = process_on(&url).await;
    let users: Vec<String> = (0..50).map(|i| format!("user{i}")).collect();
    let mut connected = Vec::new();
    for user in &users {
        connected.push(Client::connect_url(&ws(user)).await);
    }
    let query = json!({ "user_ids": users });
    let mut observer = Client::connect_url(&ws("observer")).await;
    let before = observer.ok("presence.query", query.clone()).await["users"].clone();
    observer.close().await;
    // last_seen has a resolution of a second at worst.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    terminate(child, &mut connected[0]).await;

    let app = spawn_on(url, |_| {}).await;
    let after = app.connect("observer").await.ok("presence.query", query).await["users"].clone();
    for (before, after) in before.as_array().unwrap().iter().zip(after.as_array().unwrap()) {
        assert_eq!(after["online"], false, "{after}");
        let (connect, leave) = (before["last_seen"].as_str().unwrap(), after["last_seen"].as_str().unwrap());
        assert!(
            leave > connect,
            "{}: last_seen {leave} should be the shutdown, after the connect at {connect}",
            after["user_id"]
        );
    }
}

both!(
    health_readiness_and_metrics,
    messages_survive_a_restart,
    sigterm_closes_connections_with_1012_and_keeps_acked_messages,
    sigterm_stores_last_seen_of_users_still_connected,
    sigterm_drains_a_node_with_one_worker,
    a_node_with_one_worker_serves_on_its_own_thread,
);
