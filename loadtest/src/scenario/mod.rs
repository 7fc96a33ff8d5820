//! Scenarios, one module each, and what they share: the common flags, the per-run user
//! naming (a random run id, so repeated runs never collide on a reused database), the set-up
//! steps (connect many users, open a direct room), the measured phase (tasks under the
//! progress line), the messages they send and the tallies and lines they print.

pub mod chaos;
pub mod chat_mix;
pub mod cluster_cost;
pub mod connect;
pub mod group_fanout;
pub mod latency;
pub mod live;
mod node_metrics;
pub mod reconnect_storm;
pub mod resync;
mod schedule;
pub mod throughput;

pub use schedule::{Cadence, Phases};

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use futures_util::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use crate::client::{Connection, Frame, Framing, Target};
use crate::stats::{ErrorCounts, Progress, Timeline};

/// The server's development secret (`switchboard` without `SWITCHBOARD_JWT_SECRET`).
pub const DEV_SECRET: &str = "switchboard-dev-secret-never-use-in-production";

/// Time allowed for one connect or one set-up request.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(15);

/// When `send_lag` p99 exceeds this, the generator warns that it could not keep the schedule.
pub const LAG_WARNING: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Server address: ws://HOST:PORT (the /ws path is added).
    #[arg(long, default_value = "ws://127.0.0.1:8080")]
    pub url: String,

    /// HS256 secret the server checks tokens with.
    #[arg(long, default_value = DEV_SECRET, hide_default_value = true)]
    pub jwt_secret: String,

    /// Write the JSON report here as well as printing it (and an HTML page with plots next
    /// to it, same name with .html).
    #[arg(long)]
    pub out: Option<PathBuf>,

    /// A name for this run in reports and comparisons (e.g. "switchboard", "socket.io").
    #[arg(long)]
    pub label: Option<String>,

    /// Connections opened at once during set-up.
    #[arg(long, default_value_t = 32)]
    pub connect_concurrency: usize,

    /// Message body size, in bytes.
    #[arg(long, default_value_t = 64)]
    pub body_bytes: usize,

    /// Wire framing: native JSON on /ws, or Socket.IO 4 (Engine.IO 4 over websocket) on
    /// /socket.io/ (Switchboard serves both; the Socket.IO peer only the latter).
    #[arg(long, value_enum, default_value = "native")]
    pub framing: Framing,

    /// Source addresses 127.0.0.1..=127.0.0.N to spread connections over (loopback servers
    /// only): each address has its own ~64k ephemeral ports.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=254))]
    pub source_ips: u8,
}

impl Common {
    pub fn target(&self) -> Result<Target> {
        self.target_for(&self.url)
    }

    /// Another server (a cluster node) with the same framing, secret and source addresses.
    pub fn target_for(&self, url: &str) -> Result<Target> {
        Target::new(url, &self.jwt_secret, self.framing, self.source_ips)
    }

    /// The nodes of a cluster: --url first, then `others` in order.
    pub fn targets(&self, others: &[String]) -> Result<Vec<Target>> {
        let mut nodes = vec![self.target()?];
        for url in others {
            nodes.push(self.target_for(url)?);
        }
        Ok(nodes)
    }

    pub fn params(&self, target: &Target) -> Value {
        json!({"url": target.endpoint(), "body_bytes": self.body_bytes, "framing": self.framing.name(),
               "source_ips": self.source_ips})
    }
}

/// Eight hex digits naming this run; every user id and client_id starts with it.
pub fn new_run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

/// A body of exactly `bytes` ASCII bytes (at least 1: the server refuses blank bodies).
pub fn body(bytes: usize) -> String {
    let mut body = String::from("load test ");
    while body.len() < bytes {
        body.push_str("lorem ipsum ");
    }
    body.truncate(bytes.max(1));
    body
}

/// Connects every user, `concurrency` at a time, in the order given.
pub async fn connect_all(target: &Target, users: Vec<String>, concurrency: usize) -> Result<Vec<Connection>> {
    let bar = crate::stats::setup_bar(users.len() as u64, "connections");
    let conns = futures_util::stream::iter(users)
        .map(|user| {
            let bar = &bar;
            async move {
                let conn = Connection::connect(target, &user, SETUP_TIMEOUT).await;
                bar.inc(1);
                conn
            }
        })
        .buffered(concurrency.max(1))
        .try_collect()
        .await;
    bar.finish_and_clear();
    conns
}

/// Opens (or finds) the direct room between `conn`'s user and `peer`; returns its id.
pub async fn open_direct_room(conn: &mut Connection, peer: &str) -> Result<String> {
    let data = conn.request("room.direct", json!({"user_id": peer}), SETUP_TIMEOUT).await?;
    data["room"]["id"].as_str().map(str::to_owned).with_context(|| format!("room.direct ack without room.id: {data}"))
}

/// Opens one direct room per connection, `concurrency` at a time.
pub async fn open_direct_rooms(
    conns: Vec<Connection>,
    peers: Vec<String>,
    concurrency: usize,
) -> Result<Vec<(Connection, String)>> {
    futures_util::stream::iter(conns.into_iter().zip(peers))
        .map(|(mut conn, peer)| async move {
            let room = open_direct_room(&mut conn, &peer).await?;
            anyhow::Ok((conn, room))
        })
        .buffered(concurrency.max(1))
        .try_collect()
        .await
}

/// A `message.send` of a text message; `client_id` ties its ack and pushes to the sender's
/// ledger.
pub fn text_message(room: &str, body: &str, client_id: String) -> Value {
    json!({"room_id": room, "kind": "text", "body": body, "client_id": client_id})
}

/// The index N of a pushed message whose `client_id` is `prefix` + N (`None` for another
/// sender's message or a mangled id).
pub fn client_index(data: &Value, prefix: &str) -> Option<usize> {
    data["message"]["client_id"].as_str().and_then(|c| c.strip_prefix(prefix)).and_then(|n| n.parse::<usize>().ok())
}

/// Runs one task per item, all at once, under the once-a-second progress line counted from
/// `t0`; once every task has ended, returns their results in order and the timeline.
pub async fn drive_all<I, T, F, Fut>(t0: Instant, items: I, mut drive: F) -> Result<(Vec<T>, Timeline)>
where
    I: IntoIterator,
    F: FnMut(I::Item, Arc<Progress>) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let progress = Arc::new(Progress::default());
    let reporter = progress.spawn_reporter(t0);
    let tasks: Vec<_> = items.into_iter().map(|item| tokio::spawn(drive(item, Arc::clone(&progress)))).collect();
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await?);
    }
    progress.stop();
    Ok((results, reporter.await?))
}

/// A hint printed when the server refused frames for rate (`rate_limited` error acks, or
/// connections closed with 1008 for flooding): the defaults (20/s, burst 50) are far below
/// what a load test sends on one connection.
pub fn rate_limit_hint(errors: &ErrorCounts) {
    let (rate_limited, floods) = (errors.get("rate_limited"), errors.get("close:1008"));
    if rate_limited > 0 || floods > 0 {
        eprintln!(
            "note: the server rate-limited {rate_limited} frames and closed {floods} connections \
             for flooding; start it with SWITCHBOARD_RATE_PER_SEC and SWITCHBOARD_RATE_BURST \
             raised (e.g. 100000) to measure the server rather than its limiter"
        );
    }
}

/// Closes every connection, all at once.
pub async fn close_all(conns: Vec<Connection>) {
    futures_util::future::join_all(conns.into_iter().map(Connection::close)).await;
}

/// The line listing a report's errors by kind, when there are any.
pub fn print_errors_by_kind(errors: &Value) {
    if let Some(by_kind) = errors["by_kind"].as_object().filter(|m| !m.is_empty()) {
        println!("  errors by kind: {}", Value::Object(by_kind.clone()));
    }
}

/// Whether a `send_lag_ms` summary's p99 is over `LAG_WARNING`.
pub fn sent_late(send_lag_ms: &Value) -> bool {
    send_lag_ms["p99"].as_f64().is_some_and(|p99| p99 > LAG_WARNING.as_secs_f64() * 1000.0)
}

/// Counts a request the server refused (an error ack) under its error code.
pub fn note_refused(error_code: Option<String>, errors: &mut ErrorCounts, progress: &Progress) {
    errors.add(error_code.unwrap_or_else(|| "ack_error".into()));
    Progress::bump(&progress.errors);
}

/// Counts frames a scenario does not expect; returns true when the connection closed.
pub fn note_unexpected(frame: Frame, errors: &mut ErrorCounts, progress: &Progress) -> bool {
    match frame {
        Frame::Closed { code, reason } => {
            errors.add(match code {
                Some(code) => format!("close:{code}"),
                None => format!("disconnected: {reason}"),
            });
            Progress::bump(&progress.errors);
            true
        }
        Frame::Event { event, data } if event == "error" => {
            errors.add(format!("error_event:{}", data["code"].as_str().unwrap_or("?")));
            Progress::bump(&progress.errors);
            false
        }
        Frame::Malformed(text) => {
            eprintln!("malformed frame from the server: {text}");
            errors.add("malformed_frame");
            Progress::bump(&progress.errors);
            false
        }
        // Presence, room.created and other pushes are not what this scenario measures.
        Frame::Event { .. } | Frame::Ack(_) => false,
    }
}

/// `sleep_until` for std instants.
pub async fn sleep_until(at: std::time::Instant) {
    tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
}
