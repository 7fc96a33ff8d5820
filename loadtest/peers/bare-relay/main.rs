//! The bare relay: a WebSocket server that speaks just enough of Switchboard's native framing
//! for the chat mix (hello, room.direct, room.group.create, message.send, typing) and does
//! nothing else: no storage, no ordering guarantees beyond one socket's, no limits, no
//! presence. Rooms and sequence numbers live in memory. It is the ceiling this machine puts on
//! any chat server driven by the same generator: tokio and tungstenite, one reader and one
//! writer task per socket, a push encoded once per message and shared by every recipient.
//!
//! `bare-relay [ADDR]` (default 127.0.0.1:8090). Tokens are checked with the development
//! secret (or `BARE_RELAY_JWT_SECRET`), at the upgrade only.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

const DEV_SECRET: &str = "switchboard-dev-secret-never-use-in-production";

struct Room {
    members: Vec<String>,
    last_seq: AtomicI64,
}

type Outbox = mpsc::UnboundedSender<Message>;

#[derive(Default)]
struct Relay {
    /// User → its open connections (id, outbox).
    users: Mutex<HashMap<String, Vec<(u64, Outbox)>>>,
    rooms: RwLock<HashMap<String, Arc<Room>>>,
    next_id: AtomicU64,
}

impl Relay {
    fn push(&self, members: &[String], except: &str, frame: &Message) {
        let users = self.users.lock().expect("no panics under the lock");
        for m in members.iter().filter(|m| m.as_str() != except) {
            for (_, outbox) in users.get(m).into_iter().flatten() {
                let _ = outbox.send(frame.clone());
            }
        }
    }

    fn room(&self, id: &str) -> Option<Arc<Room>> {
        self.rooms.read().expect("no panics under the lock").get(id).cloned()
    }

    fn add_room(&self, id: String, members: Vec<String>) {
        let mut rooms = self.rooms.write().expect("no panics under the lock");
        rooms.entry(id).or_insert_with(|| Arc::new(Room { members, last_seq: AtomicI64::new(0) }));
    }

    /// The reply to one request, and the push it causes (recipients, frame).
    fn handle(&self, user: &str, event: &str, data: &Value) -> (Value, Option<(Vec<String>, Value)>) {
        match event {
            "message.send" | "typing" => {
                let room_id = data["room_id"].as_str().unwrap_or_default();
                let Some(room) = self.room(room_id) else {
                    return (json!({"ok": false, "error": {"code": "not_found", "message": "no such room"}}), None);
                };
                if event == "typing" {
                    let push = json!({"event": "typing",
                        "data": {"room_id": room_id, "user_id": user, "typing": data["typing"]}});
                    return (json!({"ok": true}), Some((room.members.clone(), push)));
                }
                let seq = room.last_seq.fetch_add(1, Ordering::Relaxed) + 1;
                let message = json!({"room_id": room_id, "seq": seq, "sender_id": user,
                    "kind": data["kind"], "body": data["body"], "client_id": data["client_id"]});
                let push = json!({"event": "message.new", "data": {"message": message}});
                (json!({"ok": true, "data": {"message": message}}), Some((room.members.clone(), push)))
            }
            "room.direct" => {
                let peer = data["user_id"].as_str().unwrap_or_default().to_owned();
                let mut pair = [user.to_owned(), peer];
                pair.sort();
                let id = format!("d:{}:{}", pair[0], pair[1]);
                self.add_room(id.clone(), pair.to_vec());
                (json!({"ok": true, "data": {"room": {"id": id, "kind": "direct", "members": pair}}}), None)
            }
            "room.group.create" => {
                let mut members = vec![user.to_owned()];
                members.extend(
                    data["members"].as_array().into_iter().flatten().filter_map(|m| m.as_str().map(str::to_owned)),
                );
                let id = format!("g:{}", self.next_id.fetch_add(1, Ordering::Relaxed));
                self.add_room(id.clone(), members.clone());
                let room = json!({"id": id, "kind": "group", "members": members});
                let push = json!({"event": "room.created", "data": {"room": room}});
                (json!({"ok": true, "data": {"room": room}}), Some((members, push)))
            }
            "message.history" => (json!({"ok": true, "data": {"messages": [], "has_more": false}}), None),
            _ => (json!({"ok": true}), None),
        }
    }
}

fn user_of(query: &str, secret: &str) -> Option<String> {
    let token = query.split('&').find_map(|kv| kv.strip_prefix("token="))?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    let data = jsonwebtoken::decode::<Value>(token, &DecodingKey::from_secret(secret.as_bytes()), &validation).ok()?;
    data.claims["sub"].as_str().map(str::to_owned)
}

async fn serve(relay: Arc<Relay>, stream: TcpStream, secret: Arc<str>) {
    let _ = stream.set_nodelay(true);
    let mut user = None;
    #[allow(clippy::result_large_err)] // tungstenite's callback signature
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        user = req.uri().query().and_then(|q| user_of(q, &secret));
        if user.is_none() {
            let mut refused = ErrorResponse::new(Some("unauthorized".into()));
            *refused.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::UNAUTHORIZED;
            return Err(refused);
        }
        Ok(resp)
    };
    let Ok(socket) = tokio_tungstenite::accept_hdr_async(stream, callback).await else { return };
    let Some(user) = user else { return };
    let (mut sink, mut source) = socket.split();
    let (outbox, mut queue) = mpsc::unbounded_channel::<Message>();
    let id = relay.next_id.fetch_add(1, Ordering::Relaxed);
    relay.users.lock().expect("no panics under the lock").entry(user.clone()).or_default().push((id, outbox.clone()));
    let hello =
        json!({"event": "hello", "data": {"user_id": user, "node": "bare-relay", "connection_id": id.to_string()}});
    let _ = outbox.send(Message::Text(hello.to_string().into()));

    let writer = tokio::spawn(async move {
        // Feed everything queued, flush once: one write for a burst of frames.
        while let Some(first) = queue.recv().await {
            if sink.feed(first).await.is_err() {
                return;
            }
            while let Ok(next) = queue.try_recv() {
                if sink.feed(next).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    while let Some(Ok(message)) = source.next().await {
        let Message::Text(text) = message else { continue };
        let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else { continue };
        let event = frame["event"].as_str().unwrap_or_default();
        let (mut reply, push) = relay.handle(&user, event, &frame["data"]);
        if let Some(ack) = frame["id"].as_i64() {
            reply["ack"] = json!(ack);
            let _ = outbox.send(Message::Text(reply.to_string().into()));
        }
        if let Some((members, push)) = push {
            relay.push(&members, &user, &Message::Text(push.to_string().into()));
        }
    }
    {
        let mut users = relay.users.lock().expect("no panics under the lock");
        if let Some(conns) = users.get_mut(&user) {
            conns.retain(|(c, _)| *c != id);
            if conns.is_empty() {
                users.remove(&user);
            }
        }
    }
    drop(outbox);
    let _ = writer.await;
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8090".into());
    let secret: Arc<str> = std::env::var("BARE_RELAY_JWT_SECRET").unwrap_or_else(|_| DEV_SECRET.into()).into();
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("bare relay listening on {addr}");
    let relay = Arc::new(Relay::default());
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(serve(Arc::clone(&relay), stream, Arc::clone(&secret)));
    }
}
