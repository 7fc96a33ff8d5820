//! `SWITCHBOARD_LOG_FORMAT=json`: the real binary writes every log line, from start-up to the
//! end of a graceful shutdown, as one JSON object with timestamp, level, target and fields.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use switchboard::auth::Authenticator;
use switchboard::domain::UserId;
use switchboard::store::Profile;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::helpers::{Client, Db, SECRET, fresh_database};

const NODE: &str = "json-logs";
/// Start-up includes migrating a fresh database.
const START: Duration = Duration::from_secs(60);

/// A running binary with JSON logs: its stdout lines as they come, and all of its stderr once
/// it exits.
struct Process {
    child: Child,
    stdout: mpsc::UnboundedReceiver<String>,
    stderr: JoinHandle<String>,
}

fn start(database_url: &str) -> Process {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .env("SWITCHBOARD_BIND", "127.0.0.1:0")
        .env("SWITCHBOARD_DATABASE_URL", database_url)
        .env("SWITCHBOARD_JWT_SECRET", SECRET)
        .env("SWITCHBOARD_NODE_ID", NODE)
        .env("SWITCHBOARD_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("binary starts");
    let (lines, stdout) = mpsc::unbounded_channel();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = out.next_line().await {
            let _ = lines.send(line);
        }
    });
    let mut err = child.stderr.take().unwrap();
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text).await;
        text
    });
    Process { child, stdout, stderr }
}

/// Parses one log line; it must be a JSON object.
fn event(line: &str) -> Value {
    let event: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
    assert!(event.is_object(), "log line is not a JSON object: {line}");
    event
}

/// The first event whose message starts with `message`.
fn find<'a>(events: &'a [Value], message: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["fields"]["message"].as_str().is_some_and(|m| m.starts_with(message)))
        .unwrap_or_else(|| panic!("no `{message}` in the log: {events:#?}"))
}

#[actix_web::test]
async fn json_logs_are_one_object_a_line_from_start_up_to_shutdown() {
    let mut node = start(&fresh_database(Db::Sqlite).await);
    let mut lines = Vec::new();
    let port: u16 = loop {
        let line = tokio::time::timeout(START, node.stdout.recv())
            .await
            .expect("the node logs its address")
            .expect("the node is running");
        let message = event(&line)["fields"]["message"].as_str().unwrap_or_default().to_owned();
        lines.push(line);
        if let Some(address) = message.strip_prefix("listening on ") {
            break address.rsplit(':').next().unwrap().parse().expect("a port");
        }
    };
    let token = Authenticator::new(SECRET).mint(&UserId::parse("alice").unwrap(), &Profile::default(), 600);
    let mut alice = Client::connect_url(&format!("ws://127.0.0.1:{port}/ws?token={token}")).await;

    let pid = node.child.id().unwrap().to_string();
    std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert_eq!(alice.close_code().await, Some(1012));
    let status = tokio::time::timeout(Duration::from_secs(30), node.child.wait()).await.expect("exits").unwrap();
    assert!(status.success(), "clean exit: {status}");
    while let Some(line) = node.stdout.recv().await {
        lines.push(line);
    }
    let stderr = node.stderr.await.unwrap();

    let events: Vec<Value> = lines.iter().map(String::as_str).chain(stderr.lines()).map(event).collect();
    for event in &events {
        for key in ["timestamp", "level", "target"] {
            assert!(event[key].is_string(), "no {key} in {event}");
        }
        assert!(event["fields"]["message"].is_string(), "no fields.message in {event}");
    }
    // Event fields keep their JSON types.
    assert_eq!(find(&events, "listening on")["fields"]["node"], NODE);
    assert_eq!(find(&events, "listening on")["level"], "INFO");
    assert_eq!(find(&events, "asked connections to reconnect elsewhere")["fields"]["open"], 1);
    find(&events, "shutdown complete");
}
