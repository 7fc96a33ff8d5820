//! Webhooks against a real HTTP receiver on a loopback port: headers and signature, retries,
//! restarts, collapsing, presence, dead letters.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use switchboard::Settings;
use switchboard::domain::OutboxState;
use switchboard::store::{Backend, Store};
use tokio::sync::Notify;

use crate::both;
use crate::helpers::*;

const HOOK_SECRET: &str = "webhook-test-secret-0123456789abcdef";

/// One request the receiver got, and the status it answered.
#[derive(Debug, Clone)]
struct Received {
    headers: Vec<(String, String)>,
    raw: Vec<u8>,
    body: Value,
    answered: u16,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map_or("", |(_, v)| v.as_str())
    }

    fn is(&self, event_type: &str) -> bool {
        self.body["type"] == event_type
    }
}

#[derive(Default)]
struct Record {
    requests: Mutex<Vec<Received>>,
    status: AtomicU16,
    arrived: Notify,
}

/// The app's back end: records every request and answers the status it is set to.
struct Receiver {
    port: u16,
    record: Arc<Record>,
    server: Option<actix_web::dev::ServerHandle>,
}

async fn receive(request: HttpRequest, raw: web::Bytes, record: web::Data<Arc<Record>>) -> HttpResponse {
    let answered = record.status.load(Ordering::SeqCst);
    let headers =
        request.headers().iter().map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())).collect();
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    record.requests.lock().unwrap().push(Received { headers, raw: raw.to_vec(), body, answered });
    record.arrived.notify_waiters();
    HttpResponse::build(actix_web::http::StatusCode::from_u16(answered).unwrap()).finish()
}

impl Receiver {
    async fn start() -> Receiver {
        let record = Arc::new(Record::default());
        record.status.store(200, Ordering::SeqCst);
        let mut receiver = Receiver { port: 0, record, server: None };
        receiver.listen();
        receiver
    }

    /// Listens again (on the same port once it has one).
    fn listen(&mut self) {
        let data = web::Data::new(self.record.clone());
        let server =
            HttpServer::new(move || App::new().app_data(data.clone()).route("/hooks", web::post().to(receive)))
                .workers(1)
                .disable_signals()
                .shutdown_timeout(0)
                .bind(("127.0.0.1", self.port))
                .expect("receiver binds");
        self.port = server.addrs()[0].port();
        let server = server.run();
        self.server = Some(server.handle());
        actix_rt::spawn(server);
    }

    async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop(false).await;
        }
    }

    fn answer(&self, status: u16) {
        self.record.status.store(status, Ordering::SeqCst);
    }

    fn requests(&self) -> Vec<Received> {
        self.record.requests.lock().unwrap().clone()
    }

    /// Waits (at most [`WAIT`]) until `found` finds something in what arrived.
    async fn until<T>(&self, what: &str, found: impl Fn(&[Received]) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let arrived = self.record.arrived.notified();
            if let Some(found) = found(&self.record.requests.lock().unwrap()) {
                return found;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!("no {what} within {WAIT:?}; received: {:#?}", self.requests());
            }
        }
    }

    /// The first delivered (2xx) `event_type` matching `wanted`.
    async fn delivered(&self, event_type: &str, wanted: impl Fn(&Value) -> bool) -> Received {
        self.until(event_type, |all| {
            all.iter().find(|r| r.answered < 300 && r.is(event_type) && wanted(&r.body["data"])).cloned()
        })
        .await
    }

    /// Requests for each event id answered 2xx: at most one each.
    fn assert_once_each(&self) {
        let mut ids: Vec<String> =
            self.requests().iter().filter(|r| r.answered < 300).map(|r| r.body["id"].to_string()).collect();
        let total = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), total, "an event was delivered twice: {:#?}", self.requests());
    }
}

fn webhooks_to(port: u16, more: impl FnOnce(&mut Settings)) -> impl FnOnce(&mut Settings) {
    move |settings: &mut Settings| {
        settings.webhook_url = Some(format!("http://127.0.0.1:{port}/hooks"));
        settings.webhook_secret = Some(HOOK_SECRET.parse().unwrap());
        settings.webhook_backoff_ms = 100;
        settings.webhook_collapse_ms = 1500;
        more(settings);
    }
}

/// The contract's headers, checked as a receiver would.
fn assert_signed(received: &Received) {
    assert_eq!(received.header("content-type"), "application/json");
    assert_eq!(received.header("switchboard-event-id"), received.body["id"].as_str().unwrap());
    let timestamp = received.header("switchboard-timestamp");
    let sent: i64 = timestamp.parse().expect("unix seconds");
    assert!((chrono::Utc::now().timestamp() - sent).abs() < 120, "fresh timestamp");
    let mut mac = Hmac::<Sha256>::new_from_slice(HOOK_SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(&received.raw);
    let expected = format!("v1={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(received.header("switchboard-signature"), expected);
    let created = received.body["created_at"].as_str().expect("created_at");
    assert!(chrono::DateTime::parse_from_rfc3339(created).is_ok() && created.ends_with('Z'), "{created}");
    uuid::Uuid::parse_str(received.body["id"].as_str().unwrap()).expect("a uuid id");
}

async fn follow_requests_and_matches_arrive_signed(db: Db) {
    let receiver = Receiver::start().await;
    let app = spawn_with(db, webhooks_to(receiver.port, |_| {})).await;
    let mut alice = app.connect("alice").await;
    let mut bob = app.connect("bob").await;
    alice.ok("follow.request", json!({"user_id": "bob"})).await;
    let follow = receiver.delivered("follow.request", |_| true).await;
    assert_signed(&follow);
    assert_eq!(follow.body["data"], json!({"from": "alice", "to": "bob", "kind": "follow"}));

    alice.ok("like", json!({"user_id": "bob", "like": true})).await;
    let room = bob.ok("like", json!({"user_id": "alice", "like": true})).await["room"]["id"].clone();
    let matched = receiver.delivered("match.created", |_| true).await;
    assert_signed(&matched);
    let mut users: Vec<&str> =
        matched.body["data"]["user_ids"].as_array().unwrap().iter().flat_map(Value::as_str).collect();
    users.sort();
    assert_eq!(users, ["alice", "bob"]);
    assert_eq!(matched.body["data"]["room_id"], room);
    // Both were online: no message.offline, and presence is not sent unless asked for.
    let kinds: Vec<Value> = receiver.requests().iter().map(|r| r.body["type"].clone()).collect();
    assert_eq!(kinds, [json!("follow.request"), json!("match.created")]);
    receiver.assert_once_each();
}

async fn retries_until_the_receiver_takes_it(db: Db) {
    let mut receiver = Receiver::start().await;
    let app = spawn_with(db, webhooks_to(receiver.port, |_| {})).await;
    let mut alice = app.connect("alice").await;
    // Answering 500: attempted again and again.
    receiver.answer(500);
    alice.ok("follow.request", json!({"user_id": "bob"})).await;
    receiver
        .until("two failed attempts", |all| (all.iter().filter(|r| r.answered == 500).count() >= 2).then_some(()))
        .await;
    receiver.answer(200);
    let first = receiver.delivered("follow.request", |_| true).await;
    // Down altogether (connection refused): attempted until it is back.
    receiver.stop().await;
    alice.ok("follow.request", json!({"user_id": "carol"})).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    receiver.listen();
    let second = receiver.delivered("follow.request", |data| data["to"] == "carol").await;
    assert_ne!(first.body["id"], second.body["id"]);
    // Retries are not re-deliveries: a little later, still one delivery per event.
    tokio::time::sleep(Duration::from_millis(500)).await;
    receiver.assert_once_each();
    let failed = receiver.requests().iter().filter(|r| r.answered == 500 && r.body["id"] == first.body["id"]).count();
    assert!(failed >= 2, "the same event id is retried");
}

async fn nothing_is_lost_across_a_node_restart(db: Db) {
    let mut receiver = Receiver::start().await;
    receiver.stop().await;
    let app = spawn_with(db, webhooks_to(receiver.port, |_| {})).await;
    let database = app.database_url.clone();
    let mut alice = app.connect("alice").await;
    alice.ok("follow.request", json!({"user_id": "bob"})).await;
    // Carol never connected: the message reaches her offline, and its event is still
    // collapsing when the node stops.
    let room = alice.ok("room.direct", json!({"user_id": "carol"})).await["room"]["id"].as_str().unwrap().to_owned();
    send(&mut alice, &room, "are you there?").await;
    app.stop().await;

    receiver.listen();
    let port = receiver.port;
    let _again = spawn_on(database, webhooks_to(port, |_| {})).await;
    receiver.delivered("follow.request", |data| data["to"] == "bob").await;
    receiver.delivered("message.offline", |data| data["recipient_id"] == "carol").await;
    receiver.assert_once_each();
}

async fn offline_messages_collapse_per_window(db: Db) {
    let receiver = Receiver::start().await;
    let app = spawn_with(db, webhooks_to(receiver.port, |s| s.push_preview_chars = 5)).await;
    let mut alice = app.connect("alice").await;
    let bob = app.connect("bob").await;
    // A group: bob is connected, carol never was.
    let room = alice.ok("room.group.create", json!({"name": "g", "members": ["bob", "carol"]})).await["room"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for body in ["first one", "second one", "third one"] {
        send(&mut alice, &room, body).await;
    }
    let collapsed = receiver.delivered("message.offline", |_| true).await;
    assert_signed(&collapsed);
    let data = &collapsed.body["data"];
    assert_eq!(data["recipient_id"], "carol");
    assert_eq!((data["room_id"].as_str(), data["room_kind"].as_str()), (Some(room.as_str()), Some("group")));
    assert_eq!(data["count"], 3);
    assert_eq!(data["unread_total"], 3);
    let message = &data["message"];
    assert_eq!((message["seq"].as_i64(), message["sender_id"].as_str()), (Some(3), Some("alice")));
    assert_eq!((message["kind"].as_str(), message["preview"].as_str()), (Some("text"), Some("third")));

    // A message after the event was claimed starts a new one.
    send(&mut alice, &room, "https://cdn.example/p.png").await;
    let next = receiver.delivered("message.offline", |data| data["message"]["seq"] == 4).await;
    assert_eq!((next.body["data"]["count"].as_i64(), next.body["data"]["unread_total"].as_i64()), (Some(1), Some(4)));
    // Never for bob, who is connected.
    let offline: Vec<Received> = receiver.requests().into_iter().filter(|r| r.is("message.offline")).collect();
    assert!(offline.iter().all(|r| r.body["data"]["recipient_id"] == "carol"), "{offline:#?}");
    assert_eq!(offline.len(), 2);
    drop(bob);
}

async fn dead_letters_after_the_last_attempt(db: Db) {
    let receiver = Receiver::start().await;
    let app = spawn_with(
        db,
        webhooks_to(receiver.port, |s| {
            s.webhook_max_attempts = 3;
            with_api(s);
        }),
    )
    .await;
    let store = Store::connect(&Backend::from_url(&app.database_url).unwrap(), 2).await.unwrap();
    let mut alice = app.connect("alice").await;
    receiver.answer(503);
    alice.ok("report", json!({"user_id": "mallory", "reason": "spam"})).await;
    let attempts = receiver.until("three attempts", |all| (all.len() >= 3).then(|| all.to_vec())).await;
    assert!(attempts.iter().all(|r| r.is("report.created") && r.body["id"] == attempts[0].body["id"]));
    let failed = eventually(|| async { store.failed_webhooks(10, None).await.unwrap().into_iter().next() }).await;
    assert_eq!((failed.state, failed.attempts), (OutboxState::Failed, 3));
    assert_eq!(failed.id.to_string(), attempts[0].body["id"].as_str().unwrap());
    assert!(failed.last_error.as_deref().unwrap_or("").contains("503"), "{:?}", failed.last_error);
    assert_eq!(failed.data["reported_id"], "mallory");
    assert_eq!(store.webhook_counts().await.unwrap().failed, 1);

    // The server API lists it and puts it back; then it is delivered.
    let counts = api(app.port, "GET", "/api/v1/webhooks", None, &[]).await;
    assert_eq!(counts.body["failed"], 1, "{counts:?}");
    let listed = api(app.port, "GET", "/api/v1/webhooks/failed", None, &[]).await;
    assert_eq!(listed.body["events"][0]["id"], attempts[0].body["id"], "{listed:?}");
    assert_eq!(listed.body["events"][0]["type"], "report.created");
    assert_eq!(listed.body["events"][0]["attempts"], 3);
    receiver.answer(200);
    let retry = format!("/api/v1/webhooks/{}/retry", failed.id);
    assert_eq!(api(app.port, "POST", &retry, None, &[]).await.status, 202);
    assert_eq!(api(app.port, "POST", &retry, None, &[]).await.status, 404, "only a failed event is put back");
    receiver.delivered("report.created", |_| true).await;
    let delivered = eventually(|| async {
        store.webhook_event(failed.id).await.unwrap().filter(|e| e.state == OutboxState::Delivered)
    })
    .await;
    assert_eq!(delivered.attempts, 1);
    assert!(app.get("/metrics").await.1.contains("switchboard_webhook_deliveries_total"));
}

/// Failed events created at the same millisecond (one message's offline events are) page by
/// `before` and `before_id` without skipping any.
async fn failed_events_page_through_ties(db: Db) {
    let receiver = Receiver::start().await;
    let app = spawn_with(
        db,
        webhooks_to(receiver.port, |s| {
            s.webhook_max_attempts = 1;
            with_api(s);
        }),
    )
    .await;
    let store = Store::connect(&Backend::from_url(&app.database_url).unwrap(), 2).await.unwrap();
    let mut alice = app.connect("alice").await;
    receiver.answer(503);
    for reported in ["mallory", "trent", "eve"] {
        alice.ok("report", json!({"user_id": reported, "reason": "spam"})).await;
    }
    eventually(|| async { (store.webhook_counts().await.unwrap().failed == 3).then_some(()) }).await;
    execute_sql(&app.database_url, "UPDATE webhook_outbox SET created_at = 1764806400000").await;
    let first = api(app.port, "GET", "/api/v1/webhooks/failed?limit=2", None, &[]).await;
    assert_eq!(
        (first.body["events"].as_array().map(Vec::len), first.body["has_more"].as_bool()),
        (Some(2), Some(true))
    );
    let last = &first.body["events"][1];
    let next = format!(
        "/api/v1/webhooks/failed?limit=2&before={}&before_id={}",
        last["created_at"].as_str().unwrap(),
        last["id"].as_str().unwrap()
    );
    let second = api(app.port, "GET", &next, None, &[]).await;
    assert_eq!(second.status, 200, "{second:?}");
    assert_eq!(second.body["has_more"], false);
    let mut reported: Vec<&str> = [&first, &second]
        .iter()
        .flat_map(|page| page.body["events"].as_array().unwrap())
        .map(|event| event["data"]["reported_id"].as_str().unwrap())
        .collect();
    reported.sort();
    assert_eq!(reported, ["eve", "mallory", "trent"], "each once");
    // Alone it changes nothing: the first page.
    let alone = "/api/v1/webhooks/failed?limit=2&before_id=0192e6a0-0000-7000-8000-000000000000";
    assert_eq!(api(app.port, "GET", alone, None, &[]).await.body, first.body);
}

async fn presence_is_sent_when_asked_for(db: Db) {
    use switchboard::domain::EventType;
    let receiver = Receiver::start().await;
    let presence = [EventType::UserOnline, EventType::UserOffline].into_iter().collect();
    let app = spawn_with(db, webhooks_to(receiver.port, |s| s.webhook_events = presence)).await;
    let alice = app.connect("alice").await;
    receiver.delivered("user.online", |data| data["user_id"] == "alice").await;
    alice.close().await;
    let offline = receiver.delivered("user.offline", |data| data["user_id"] == "alice").await;
    assert!(chrono::DateTime::parse_from_rfc3339(offline.body["data"]["at"].as_str().unwrap()).is_ok());
}

async fn missed_calls_are_sent(db: Db) {
    let receiver = Receiver::start().await;
    let app = spawn_with(db, webhooks_to(receiver.port, |s| s.call_ring_secs = 1)).await;
    let mut alice = app.connect("alice").await;
    let bob = app.connect("bob").await;
    let room = direct_room(&mut alice, &bob).await;
    let call = alice.ok("call.start", json!({"room_id": room, "media": "audio"})).await["call"]["id"].clone();
    let missed = receiver.delivered("call.missed", |_| true).await;
    assert_eq!(
        missed.body["data"],
        json!({"call_id": call, "caller_id": "alice", "callee_id": "bob", "media": "audio"})
    );
}

/// Polls `probe` until it finds something, within [`WAIT`].
async fn eventually<T, F: Future<Output = Option<T>>>(probe: impl Fn() -> F) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

both!(
    follow_requests_and_matches_arrive_signed,
    retries_until_the_receiver_takes_it,
    nothing_is_lost_across_a_node_restart,
    offline_messages_collapse_per_window,
    dead_letters_after_the_last_attempt,
    failed_events_page_through_ties,
    presence_is_sent_when_asked_for,
    missed_calls_are_sent,
);
