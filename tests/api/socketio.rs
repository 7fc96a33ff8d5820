//! Socket.IO with stock clients from npm: socket.io-client 4 (Engine.IO 4) and 2.5
//! (Engine.IO 3), driven by tests/socketio/drive.mjs (deploy/local/test.sh installs them).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::*;

fn driver() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/socketio");
    assert!(
        dir.join("node_modules/socket.io-client").exists(),
        "stock Socket.IO clients are not installed: run the tests with ./deploy/local/test.sh \
         (it runs `npm ci` in tests/socketio)"
    );
    dir.join("drive.mjs")
}

fn node(app: &TestApp, scenario: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("node");
    command
        .arg(driver())
        .arg(scenario)
        .env("URL", format!("http://127.0.0.1:{}", app.port))
        .env("TOKEN_A", app.token("alice"))
        .env("TOKEN_B", app.token("bob"))
        .env("BAD_TOKEN", "not-a-token")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

async fn run(app: &TestApp, scenario: &str) -> String {
    let output = tokio::time::timeout(Duration::from_secs(60), node(app, scenario).output())
        .await
        .expect("the driver finishes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{scenario} failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

#[actix_web::test]
async fn socketio_v4_client_chats() {
    let app = spawn_app(Db::Sqlite).await;
    run(&app, "v4-chat").await;
}

#[actix_web::test]
async fn socketio_v2_client_chats_over_engine_io_3() {
    let app = spawn_app(Db::Sqlite).await;
    run(&app, "v3-chat").await;
}

#[actix_web::test]
async fn socketio_bad_tokens_get_connect_errors() {
    let app = spawn_app(Db::Sqlite).await;
    run(&app, "v4-refused").await;
    run(&app, "v3-refused").await;
}

#[actix_web::test]
async fn socketio_heartbeats_keep_both_versions_connected() {
    let app = spawn_with(Db::Sqlite, |s| {
        s.heartbeat_secs = 1;
        s.heartbeat_timeout_secs = 3;
    })
    .await;
    run(&app, "v4-heartbeat").await;
    run(&app, "v3-heartbeat").await;
}

#[actix_web::test]
async fn socketio_v4_client_recovers_missed_messages() {
    let app = spawn_app(Db::Sqlite).await;
    run(&app, "v4-recover").await;
    let app = spawn_app(Db::Postgres).await;
    run(&app, "v4-recover").await;
}

#[actix_web::test]
async fn socketio_forged_and_held_pids_recover_nothing() {
    let app = spawn_app(Db::Sqlite).await;
    run(&app, "v4-forged-pid").await;
    let app = spawn_app(Db::Postgres).await;
    run(&app, "v4-forged-pid").await;
}

#[actix_web::test]
async fn socketio_recovery_ends_with_its_window() {
    let app = spawn_with(Db::Sqlite, |s| s.socketio_recovery_secs = 1).await;
    run(&app, "v4-recover-expired").await;
}

#[actix_web::test]
async fn socketio_and_native_users_chat() {
    let app = spawn_app(Db::Postgres).await;
    let mut bob = app.connect("bob").await;
    let mut child = node(&app, "v4-send-to-native").spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let waiting: serde_json::Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    let room = waiting["room"].as_str().unwrap().to_owned();
    assert_eq!(bob.event("message.new").await["message"]["body"], "from socket.io");
    send(&mut bob, &room, "from native").await;
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.unwrap().unwrap();
    assert!(status.success());
}

#[actix_web::test]
async fn polling_and_unknown_sessions_get_400() {
    let app = spawn_app(Db::Sqlite).await;
    let (status, body) = app.get("/socket.io/?EIO=4&transport=polling").await;
    assert_eq!(status, 400);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["code"], 0);
    assert_eq!(body["message"], "Transport unknown");
    assert!(body["hint"].as_str().unwrap().contains("websocket"));
    assert_eq!(app.get("/socket.io/?EIO=4&transport=websocket&sid=abc").await.0, 400);
    assert_eq!(app.get("/socket.io/?EIO=2&transport=websocket").await.0, 400);
}
