//! The three seed dialects with stock Socket.IO clients (v4 over Engine.IO 4 on PostgreSQL,
//! v2 over Engine.IO 3 on SQLite), driven by tests/socketio/dialects.mjs: every event of
//! every seed document, its field names and value types, and a messenger user chatting
//! with a native one.

use std::path::PathBuf;
use std::time::Duration;

use crate::helpers::*;

/// Users of the three seeds, with the names and avatars their apps show.
const USERS: [(&str, &str, &str); 9] = [
    ("150", "yash", "yash.png"),
    ("151", "Satvinder singh", "sat.png"),
    ("alice", "Alice", "alice.png"),
    ("1", "Sadegh", "#"),
    ("2", "Sajjad Rajabi", "#"),
    ("3", "Stranger", "#"),
    ("62b92abb678ed5696f559c59", "Asha", "asha.png"),
    ("62b936e74b8657af236232c1", "Ben", "ben.png"),
    ("62bbf8027f82978b8bfa970f", "Chen", "chen.png"),
];

async fn drive(db: Db, seed: &str, version: &str) {
    let app = spawn_app(db).await;
    let tokens: serde_json::Map<String, serde_json::Value> = USERS
        .iter()
        .map(|(user, name, avatar)| (user.to_string(), app.token_with_profile(user, name, avatar).into()))
        .collect();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/socketio");
    assert!(
        dir.join("node_modules/socket.io-client").exists(),
        "stock Socket.IO clients are not installed: run the tests with ./deploy/local/test.sh"
    );
    let output = tokio::process::Command::new("node")
        .arg(dir.join("dialects.mjs"))
        .args([seed, version])
        .env("URL", format!("http://127.0.0.1:{}", app.port))
        .env("TOKENS", serde_json::Value::Object(tokens).to_string())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output).await.expect("the driver finishes").unwrap();
    assert!(
        output.status.success(),
        "{seed} over {version} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[actix_web::test]
async fn messenger_seed_with_socketio_v4() {
    drive(Db::Postgres, "messenger", "v4").await;
}

#[actix_web::test]
async fn messenger_seed_with_socketio_v2() {
    drive(Db::Sqlite, "messenger", "v3").await;
}

#[actix_web::test]
async fn rooms_seed_with_socketio_v4() {
    drive(Db::Postgres, "rooms", "v4").await;
}

#[actix_web::test]
async fn rooms_seed_with_socketio_v2() {
    drive(Db::Sqlite, "rooms", "v3").await;
}

#[actix_web::test]
async fn social_seed_with_socketio_v4() {
    drive(Db::Postgres, "social", "v4").await;
}

#[actix_web::test]
async fn social_seed_with_socketio_v2() {
    drive(Db::Sqlite, "social", "v3").await;
}

/// A dialect over the plain WebSocket: native framing, the seed's events and listeners.
#[actix_web::test]
async fn messenger_seed_over_plain_websocket() {
    let app = spawn_app(Db::Sqlite).await;
    let url = |user: &str, name: &str| {
        format!("{}&api=messenger", app.ws_url(&app.token_with_profile(user, name, &format!("{user}.png"))))
    };
    let mut yash = Client::connect_url(&url("150", "yash")).await;
    let mut sat = Client::connect_url(&url("151", "sat")).await;
    let reply =
        yash.request("send_message", serde_json::json!({"senderId": "150", "receiverId": 151, "message": "hi"})).await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["data"]["senderId"], 150);
    assert_eq!(reply["data"]["recieverName"], "sat");
    assert_eq!(yash.event("new_message").await, reply["data"]);
    assert_eq!(sat.event("new_message").await, reply["data"]);
    let refused = yash.request("send_message", serde_json::json!({"senderId": "151", "receiverId": "150"})).await;
    assert_eq!(refused["ok"], false);
    assert_eq!(yash.request("message.send", serde_json::json!({})).await["error"]["code"], "unknown_event");

    let (status, body) = app.get(&format!("/ws?token={}&api=klingon", app.token("150"))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("unknown"), "{body}");
}
