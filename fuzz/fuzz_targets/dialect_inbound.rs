//! Seed dialects: each dialect's inbound translation (`dialect::handle`) runs on a real node,
//! the commands it makes executed by the node's actors against a real SQLite store, and any
//! event name and JSON payload ends in emits or an error, never a panic.
//!
//! Input: byte 0 picks the dialect (0 social, 1 messenger, 2 rooms, modulo 3), byte 1 the
//! acting user (modulo `USERS`), then the event name, a NUL, and the JSON payload (none:
//! `null`, as a Socket.IO event without data). A payload that is not JSON is skipped: the
//! framing refuses it before a dialect sees it. Rooms and sessions are UUIDs made at run
//! time, which no input can guess: every UUID a reply carried is remembered (the last
//! `RECENT_IDS`, most recently seen first), and `$0`…`$7` in a payload stand for them, newest first.
//!
//! The node is built once per process with `Application::build`, as `main` does, on a
//! temporary SQLite file. Its HTTP listener (port 0) is never connected to; the harness
//! stands in for connections the narrowest way the crate allows: each user's connection is
//! registered with the hub exactly as a socket's is (`hub::Connect` with a real outbox,
//! drained after each input), and the dialect runs through an `Edge` on `Application::node`
//! as the connection actor's translator does. The actix `System` lives in a thread-local
//! (its runner is not `Send`); libFuzzer calls the target on one thread.
#![no_main]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;

use actix_rt::{System, SystemRunner};
use clap::Parser;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use switchboard::auth::Identity;
use switchboard::dialect::{self, Dialect, Edge};
use switchboard::domain::{ConnectionId, RoomId, Timestamp, UserId};
use switchboard::runtime::hub::{Connect, Disconnect};
use switchboard::runtime::{self, Outbox};
use switchboard::service::Caller;
use switchboard::store::Profile;
use switchboard::{Application, Settings};

/// Acting users: numeric ids as the messenger and rooms seeds use them, and a Mongo-style id
/// as the social seed does.
const USERS: [&str; 4] = ["1", "2", "150", "62b92abb678ed5696f559c59"];
const DIALECTS: [Dialect; 3] = [Dialect::Social, Dialect::Messenger, Dialect::Rooms];
const RECENT_IDS: usize = 8;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
}

/// One user's stand-in connection: registered with the hub, its outbox drained.
struct Connection {
    user: UserId,
    outbox: Outbox,
    /// Empties the outbox's queue (its receiver's type is private to the crate).
    drain: Box<dyn FnMut()>,
}

struct Harness {
    runner: SystemRunner,
    node: Arc<runtime::Node>,
    connections: Vec<Connection>,
    recent: VecDeque<String>,
    /// `SWITCHBOARD_FUZZ_TRACE=1`: print each event and its outcome (to replay an artifact).
    trace: bool,
    _app: Application,
    _dir: tempfile::TempDir,
}

thread_local! {
    static NODE: RefCell<Option<Harness>> = const { RefCell::new(None) };
}

impl Harness {
    fn start() -> Harness {
        let dir = tempfile::tempdir().expect("a temporary directory for the fuzzing node");
        let url = format!("sqlite://{}/fuzz.db", dir.path().display());
        let settings = Cli::parse_from([
            "switchboard",
            "--bind",
            "127.0.0.1:0",
            "--database-url",
            &url,
            "--jwt-secret",
            "fuzzing-secret-0123456789abcdef",
            // No group-commit window: the harness waits for each command in turn.
            "--write-batch-window-ms",
            "0",
        ])
        .settings;
        let runner = System::new();
        let app = runner.block_on(Application::build(settings)).expect("the fuzzing node builds");
        let node = app.node();
        let mut node = Harness {
            runner,
            node,
            connections: Vec::new(),
            recent: VecDeque::new(),
            trace: std::env::var_os("SWITCHBOARD_FUZZ_TRACE").is_some(),
            _app: app,
            _dir: dir,
        };
        for user in USERS {
            let user = UserId::parse(user).expect("the harness's user ids are valid");
            let connection = node.connect(user);
            node.connections.push(connection);
        }
        node
    }

    fn connect(&self, user: UserId) -> Connection {
        let services = &self.node;
        let (outbox, receiver) =
            Outbox::new(ConnectionId::new(), services.settings.outbound_queue, services.metrics.clone());
        let identity = Identity {
            user: user.clone(),
            profile: Profile::default(),
            expires_at: Timestamp::from_millis(i64::MAX / 2),
            issued_at: None,
        };
        let connect = Connect { identity, outbox: outbox.clone(), hello: String::new(), recovery: None };
        let registered = self.runner.block_on(services.hub.send(connect));
        assert!(matches!(registered, Ok(Ok(()))), "the hub registers a connection: {registered:?}");
        let drain = Box::new(move || while receiver.try_next().is_some() {});
        Connection { user, outbox, drain }
    }

    fn run(&mut self, dialect: Dialect, who: usize, event: &str, data: Value) {
        let Some(connection) = self.connections.get(who) else { return };
        let caller = Caller { user: connection.user.clone(), connection: connection.outbox.connection };
        let edge = Edge::new(self.node.services.clone(), caller);
        let result = self.runner.block_on(dialect::handle(dialect, &edge, event, data.clone()));
        if self.trace {
            eprintln!("{dialect:?} {} {event} {data} -> {result:?}", connection.user);
        }
        if let Ok(emits) = result {
            for emit in &emits {
                remember_ids(&emit.data, &mut self.recent);
            }
        }
        self.drain();
    }

    /// Empties every outbox, as a socket's writer would; a connection the server asked to
    /// close is deregistered and replaced, as a client reconnecting.
    fn drain(&mut self) {
        for index in 0..self.connections.len() {
            let closed = match self.connections.get_mut(index) {
                Some(connection) => {
                    (connection.drain)();
                    connection.outbox.is_closing()
                }
                None => false,
            };
            if closed {
                let Some(old) = self.connections.get(index) else { continue };
                let user = old.user.clone();
                let gone = Disconnect { user: user.clone(), connection: old.outbox.connection };
                let _ = self.runner.block_on(self.node.hub.send(gone));
                let fresh = self.connect(user);
                if let Some(slot) = self.connections.get_mut(index) {
                    *slot = fresh;
                }
            }
        }
    }
}

fn remember_ids(value: &Value, recent: &mut VecDeque<String>) {
    match value {
        Value::String(s) if RoomId::parse(s).is_ok() => {
            recent.retain(|seen| seen != s);
            recent.push_front(s.clone());
            recent.truncate(RECENT_IDS);
        }
        Value::Array(items) => items.iter().for_each(|v| remember_ids(v, recent)),
        Value::Object(fields) => fields.values().for_each(|v| remember_ids(v, recent)),
        _ => {}
    }
}

/// `$0`…`$7` in the payload become the remembered ids.
fn substitute(payload: &str, recent: &VecDeque<String>) -> String {
    let mut out = payload.to_owned();
    for (index, id) in recent.iter().enumerate() {
        out = out.replace(&format!("${index}"), id);
    }
    out
}

fuzz_target!(|bytes: &[u8]| {
    let [dialect, who, rest @ ..] = bytes else { return };
    let Some(&dialect) = DIALECTS.get(usize::from(*dialect) % DIALECTS.len()) else { return };
    let who = usize::from(*who) % USERS.len();
    let (event, payload) = match rest.iter().position(|&b| b == 0) {
        Some(nul) => rest.split_at(nul),
        None => (rest, &[][..]),
    };
    let payload = payload.get(1..).unwrap_or(&[]);
    let (Ok(event), Ok(payload)) = (std::str::from_utf8(event), std::str::from_utf8(payload)) else { return };
    NODE.with(|node| {
        let mut node = node.borrow_mut();
        let node = node.get_or_insert_with(Harness::start);
        let payload = substitute(payload, &node.recent);
        let data = if payload.trim().is_empty() {
            Value::Null
        } else {
            match serde_json::from_str(&payload) {
                Ok(data) => data,
                Err(_) => return,
            }
        };
        node.run(dialect, who, event, data);
    });
});
