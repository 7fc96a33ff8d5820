//! The abuse suite: clients that drop mid-request, send garbage, flood, never read or open
//! too many connections. Each scenario runs against the real binary, then checks that the
//! node is still up, ready, serves ordinary chat, and logged no panic.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

use crate::both;
use crate::helpers::*;

/// The binary under attack: this build, or the one `SWITCHBOARD_TEST_BINARY` names (to show
/// a defect on a build from before its fix).
fn binary_path() -> String {
    std::env::var("SWITCHBOARD_TEST_BINARY").unwrap_or_else(|_| env!("CARGO_BIN_EXE_switchboard").to_owned())
}

/// The real binary on a fresh database, with everything it logs kept.
struct Node {
    child: tokio::process::Child,
    binary: String,
    database_url: String,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
    auth: switchboard::auth::Authenticator,
}

tokio::task_local! {
    /// Set for the attacks on a node with one worker (`on_one_worker!`).
    static ONE_WORKER: bool;
}

impl Node {
    async fn start(db: Db, env: &[(&str, &str)]) -> Node {
        let url = fresh_database(db).await;
        let mut command = tokio::process::Command::new(binary_path());
        let one_worker = ONE_WORKER.try_with(|one| *one).unwrap_or(false);
        if one_worker {
            command.env("SWITCHBOARD_WORKERS", "1");
        }
        command
            .env("SWITCHBOARD_BIND", "127.0.0.1:0")
            .env("SWITCHBOARD_JWT_SECRET", SECRET)
            .env("SWITCHBOARD_DATABASE_URL", &url)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("binary starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, port_rx) = tokio::sync::oneshot::channel();
        let mut port_tx = Some(port_tx);
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let kept = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stdout.next_line().await {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let port: Option<u16> = rest
                        .chars()
                        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                        .collect::<String>()
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse().ok());
                    if let (Some(tx), Some(port)) = (port_tx.take(), port) {
                        let _ = tx.send((port, line.clone()));
                    }
                }
                kept.lock().unwrap().push(line);
            }
        });
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let kept = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                kept.lock().unwrap().push(line);
            }
        });
        let (port, listening) = tokio::time::timeout(Duration::from_secs(60), port_rx)
            .await
            .expect("the node logs its address")
            .expect("the node is running");
        assert!(!one_worker || listening.contains("workers=1"), "{listening}");
        let auth = switchboard::auth::Authenticator::new(SECRET);
        Node { child, binary: binary_path(), database_url: url, port, log, auth }
    }

    fn token(&self, user: &str) -> String {
        let user = switchboard::domain::UserId::parse(user).unwrap();
        self.auth.mint(&user, &Default::default(), 3600)
    }

    fn ws_url(&self, user: &str) -> String {
        format!("ws://127.0.0.1:{}/ws?token={}", self.port, self.token(user))
    }

    async fn connect(&self, user: &str) -> Client {
        Client::connect_url(&self.ws_url(user)).await
    }

    /// After an attack: the process runs, `/readyz` is 200, two new users chat, and
    /// nothing panicked.
    async fn assert_healthy(&mut self) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(self.child.try_wait().unwrap().is_none(), "the node died:\n{}", self.log_text());
        let (status, body) = http_get(self.port, "/readyz").await;
        assert_eq!(status, 200, "readyz: {body}");
        let first = format!("healthy-{}", uuid::Uuid::new_v4().simple());
        let second = format!("healthy-{}", uuid::Uuid::new_v4().simple());
        let mut a = self.connect(&first).await;
        let mut b = self.connect(&second).await;
        let room = direct_room(&mut a, &b).await;
        let sent = send(&mut a, &room, "still here").await;
        assert_eq!(b.event("message.new").await["message"], sent);
        a.close().await;
        b.close().await;
        let log = self.log_text();
        assert!(!log.contains("panicked"), "the node logged a panic:\n{log}");
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

/// A phone losing signal drops its socket while requests are in flight; on SQLite this
/// used to cancel a query in a way that aborted the process.
async fn clients_dropping_mid_request_leave_the_node_up(db: Db) {
    let mut node = Node::start(db, &[("SWITCHBOARD_RATE_BURST", "1000"), ("SWITCHBOARD_RATE_PER_SEC", "1000")]).await;
    for round in 0..10 {
        let mut drops = Vec::new();
        for i in 0..20 {
            let url = node.ws_url(&format!("dropper-{}", i % 4));
            drops.push(tokio::spawn(async move {
                let (mut socket, _) = connect_async(url).await.expect("connects");
                // Once registered (`hello`), requests run at once.
                let _hello = socket.next().await;
                for id in 0..4 {
                    let frame = json!({"event": "room.list", "id": id}).to_string();
                    let _ = socket.send(Message::text(frame)).await;
                }
                if (round + i) % 2 == 0 {
                    let _ = socket.close(None).await;
                }
                // Otherwise dropped: the TCP connection goes away without a close frame.
            }));
        }
        for drop in drops {
            drop.await.unwrap();
        }
    }
    node.assert_healthy().await;
}

/// A raw WebSocket upgrade of `path` (no client library: the tests below write frames by hand).
async fn raw_upgrade(port: u16, path: &str) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.expect("response head");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "upgrade refused: {}", String::from_utf8_lossy(&head));
    stream
}

/// Reads the server's frames until its close frame: the close code (`None` if the socket
/// ends first).
async fn read_close_code(stream: &mut tokio::net::tcp::OwnedReadHalf) -> Option<u16> {
    use tokio::io::AsyncReadExt;
    loop {
        let mut head = [0u8; 2];
        stream.read_exact(&mut head).await.ok()?;
        let mut len = u64::from(head[1] & 0x7f);
        if len == 126 {
            let mut ext = [0u8; 2];
            stream.read_exact(&mut ext).await.ok()?;
            len = u64::from(u16::from_be_bytes(ext));
        } else if len == 127 {
            let mut ext = [0u8; 8];
            stream.read_exact(&mut ext).await.ok()?;
            len = u64::from_be_bytes(ext);
        }
        let mut payload = vec![0u8; len as usize];
        stream.read_exact(&mut payload).await.ok()?;
        if head[0] & 0x0f == 0x8 {
            return payload.get(..2).map(|code| u16::from_be_bytes([code[0], code[1]]));
        }
    }
}

/// The node's resident memory, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

/// A frame header declaring 2^40 bytes, then a stream of payload: the node must refuse the
/// declared length at the header (close 1009) instead of buffering what follows, on every
/// path, before and after authentication.
async fn oversized_frame_headers_are_refused_at_the_header(db: Db) {
    use tokio::io::AsyncWriteExt;
    let mut node = Node::start(db, &[]).await;
    let paths = [
        "/socket.io/?EIO=4&transport=websocket".to_owned(),
        format!("/socket.io/?EIO=3&transport=websocket&token={}", node.token("eio3-user")),
        format!("/ws?token={}", node.token("native-user")),
    ];
    let pid = node.child.id().unwrap();
    for path in paths {
        let before = rss(pid);
        let (mut reader, mut writer) = raw_upgrade(node.port, &path).await.into_split();
        let closed = tokio::spawn(async move { read_close_code(&mut reader).await });
        let mut header = vec![0x81u8, 0x80 | 127];
        header.extend_from_slice(&(1u64 << 40).to_be_bytes());
        header.extend_from_slice(&[0x11, 0x22, 0x33, 0x44]);
        let _ = writer.write_all(&header).await;
        // Up to 256 MiB of payload, for at most 10 s, or until the node stops reading.
        let chunk = vec![0u8; 64 * 1024];
        let started = std::time::Instant::now();
        let mut sent = 0usize;
        while sent < 256 << 20 && started.elapsed() < Duration::from_secs(10) {
            match tokio::time::timeout(Duration::from_secs(2), writer.write_all(&chunk)).await {
                Ok(Ok(())) => sent += chunk.len(),
                _ => break,
            }
        }
        let code = tokio::time::timeout(Duration::from_secs(15), closed).await.expect("the node closes").unwrap();
        assert_eq!(code, Some(1009), "{path}: close code after {sent} bytes");
        let grown = rss(pid).saturating_sub(before);
        assert!(grown < 32 << 20, "{path}: the node grew by {grown} bytes while {sent} bytes were streamed");
    }
    node.assert_healthy().await;
}

/// NUL (U+0000) in any text field is refused at the edge, to its sender alone, while
/// bystanders chat: none of their messages or connects fail with it. Other unusual text
/// (controls, zero-width and direction marks, emoji) is stored and echoed exactly.
async fn nul_in_any_text_field_harms_nobody_else(db: Db) {
    let mut node = Node::start(db, &[]).await;
    let mut attacker = node.connect("mallory").await;
    let mut victim = node.connect("victim").await;
    let room = direct_room(&mut attacker, &victim).await;
    let session = attacker.ok("live.create", json!({"title": "stream"})).await["session"]["id"].clone();

    // Bystanders send while the attacker sends NUL everywhere.
    let mut bystanders = Vec::new();
    for i in 0..15 {
        let (a, b) = (format!("bystander-a{i}"), format!("bystander-b{i}"));
        let (mut sender, receiver) = (node.connect(&a).await, node.connect(&b).await);
        let room = direct_room(&mut sender, &receiver).await;
        bystanders.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for n in 0..10 {
                let ack = sender
                    .request("message.send", json!({"room_id": room, "kind": "text", "body": format!("hello {n}")}))
                    .await;
                acks.push(ack);
            }
            (acks, receiver)
        }));
    }
    let attacks = [
        ("message.send", json!({"room_id": room, "kind": "text", "body": "a\u{0}b"})),
        ("message.send", json!({"room_id": room, "kind": "text", "body": "ok", "client_id": "c\u{0}"})),
        ("live.comment", json!({"session_id": session, "text": "\u{0}"})),
        ("report", json!({"user_id": "victim", "reason": "spam\u{0}"})),
        ("room.group.create", json!({"name": "g\u{0}", "members": ["victim"]})),
        ("room.direct", json!({"user_id": "vic\u{0}tim"})),
    ];
    for _ in 0..5 {
        for (event, data) in &attacks {
            assert_eq!(attacker.fails(event, data.clone()).await, "bad_request", "{event} {data}");
        }
    }
    for bystander in bystanders {
        let (acks, _receiver) = bystander.await.unwrap();
        for ack in acks {
            assert_eq!(ack["ok"], true, "a bystander's send failed: {ack}");
        }
    }

    // A NUL in the token's profile is refused at the upgrade; bystanders connecting at the
    // same time are not.
    let profile = switchboard::store::Profile { name: Some("Mal\u{0}lory".into()), avatar: None };
    let bad = node.auth.mint(&switchboard::domain::UserId::parse("mallory2").unwrap(), &profile, 600);
    let mut connects = Vec::new();
    for i in 0..30 {
        let url = node.ws_url(&format!("connecting-{i}"));
        connects.push(tokio::spawn(async move { connect_async(url).await.map(|_| ()).map_err(|e| e.to_string()) }));
    }
    let refused = connect_async(format!("ws://127.0.0.1:{}/ws?token={bad}", node.port)).await;
    assert!(
        matches!(refused, Err(tokio_tungstenite::tungstenite::Error::Http(ref r)) if r.status() == 401),
        "a NUL in the token's name is refused with 401: {refused:?}"
    );
    for connect in connects {
        connect.await.unwrap().expect("a bystander connects");
    }

    // Unusual but legal text goes through untouched.
    let odd = "\u{1}ctl \u{200b}zero\u{200d}width \u{202e}rtl \u{feff}bom \u{1f600} \u{10ffff}";
    let sent = send(&mut attacker, &room, odd).await;
    assert_eq!(sent["body"], odd);
    assert_eq!(victim.event("message.new").await["message"]["body"], odd);
    node.assert_healthy().await;
}

/// `switchboard revoke USER` refuses the user's tokens issued before it and closes their
/// connections; a token issued after it works, and other users are untouched.
async fn revoking_a_user_closes_their_connections(db: Db) {
    let mut node = Node::start(db, &[]).await;
    let old_token = node.token("alice");
    let mut alice = Client::connect_url(&format!("ws://127.0.0.1:{}/ws?token={old_token}", node.port)).await;
    let mut bob = node.connect("bob").await;
    let status = tokio::process::Command::new(&node.binary)
        .args(["revoke", "alice"])
        .env("SWITCHBOARD_DATABASE_URL", &node.database_url)
        .env("SWITCHBOARD_JWT_SECRET", SECRET)
        .stdout(std::process::Stdio::null())
        .status()
        .await
        .unwrap();
    assert!(status.success());
    assert_eq!(alice.close_code().await, Some(4003));
    let refused = connect_async(format!("ws://127.0.0.1:{}/ws?token={old_token}", node.port)).await;
    assert!(
        matches!(refused, Err(tokio_tungstenite::tungstenite::Error::Http(ref r)) if r.status() == 401),
        "the revoked token is refused: {refused:?}"
    );
    // Tokens carry whole seconds: one issued a second later is after the revocation.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    node.connect("alice").await;
    bob.ok("presence.query", json!({"user_ids": ["alice"]})).await;
    node.assert_healthy().await;
}

/// A flooding connection is refused, then closed with 1008, and logged once.
async fn a_flood_is_logged_once(db: Db) {
    let mut node = Node::start(
        db,
        &[("SWITCHBOARD_RATE_PER_SEC", "5"), ("SWITCHBOARD_RATE_BURST", "5"), ("SWITCHBOARD_FLOOD_STRIKES", "10")],
    )
    .await;
    let (mut socket, _) = connect_async(node.ws_url("flooder")).await.unwrap();
    for id in 0..500 {
        let frame = json!({"event": "presence.query", "id": id, "data": {"user_ids": []}}).to_string();
        if socket.send(Message::text(frame)).await.is_err() {
            break;
        }
    }
    let mut code = None;
    while let Ok(Some(frame)) = tokio::time::timeout(WAIT, socket.next()).await {
        if let Ok(Message::Close(frame)) = frame {
            code = frame.map(|f| u16::from(f.code));
            break;
        }
    }
    assert_eq!(code, Some(1008));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let warnings = node.log_text().matches("closing a flooding connection").count();
    assert_eq!(warnings, 1, "{}", node.log_text());
    node.assert_healthy().await;
}

/// Garbage of every kind on every framing (malformed JSON, wrong types, deep nesting, huge
/// numbers, broken Socket.IO packets, binary frames, invalid UTF-8) while bystanders chat:
/// each garbage sender gets errors or a clean close, and the bystanders lose nothing.
async fn garbage_on_every_path_harms_nobody_else(db: Db) {
    let mut node = Node::start(db, &[("SWITCHBOARD_RATE_PER_SEC", "1000"), ("SWITCHBOARD_RATE_BURST", "1000")]).await;
    let (mut sender, mut receiver) = (node.connect("steady-a").await, node.connect("steady-b").await);
    let room = direct_room(&mut sender, &receiver).await;
    let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    let native: Vec<String> = vec![
        "".into(),
        "not json".into(),
        "[]".into(),
        "null".into(),
        r#"{"event":42}"#.into(),
        r#"{"event":"message.send","id":"x"}"#.into(),
        r#"{"event":"message.send","id":1e400,"data":{}}"#.into(),
        r#"{"event":"message.send","id":18446744073709551616,"data":{}}"#.into(),
        r#"{"event":"message.send","id":2,"data":{"room_id":[],"kind":{},"body":null}}"#.into(),
        r#"{"event":"message.history","id":3,"data":{"room_id":"x","limit":-99999999999999}}"#.into(),
        r#"{"event":"location.update","id":4,"data":{"lat":1e308,"lng":-1e308}}"#.into(),
        r#"{"event":"\u0000","id":5}"#.into(),
        format!(r#"{{"event":"message.send","id":6,"data":{deep}}}"#),
        "\u{feff}{}".into(),
        format!(r#"{{"event":"typing","data":{{"room_id":"{}"}}}}"#, "9".repeat(60_000)),
    ];
    let socketio: Vec<String> = vec![
        "".into(),
        "4".into(),
        "4é".into(),
        "42".into(),
        "42[".into(),
        r#"4299999999999999999999999["x"]"#.into(),
        "42/".into(),
        "42/,".into(),
        r#"451-["x",{"_placeholder":true,"num":0}]"#.into(),
        r#"40{"token":42}"#.into(),
        "40/admin,{}".into(),
        "9".into(),
        format!("42{deep}"),
        "\u{0}".into(),
    ];
    let mut attackers = Vec::new();
    for round in 0..3 {
        let url = node.ws_url(&format!("garbage-native-{round}"));
        let frames = native.clone();
        attackers.push(tokio::spawn(async move {
            let (mut socket, _) = connect_async(url).await.expect("connects");
            for frame in frames {
                let _ = socket.send(Message::text(frame)).await;
            }
            let _ = socket.send(Message::binary(vec![0xff, 0xfe, 0x00, 0x80])).await;
            let _ = socket.close(None).await;
        }));
        let url = format!("ws://127.0.0.1:{}/socket.io/?EIO=4&transport=websocket", node.port);
        let token = node.token(&format!("garbage-sio-{round}"));
        let frames = socketio.clone();
        attackers.push(tokio::spawn(async move {
            // Each packet on a fresh socket and login, since most of them close it.
            for frame in frames {
                let (mut socket, _) = connect_async(url.as_str()).await.expect("connects");
                let _ = socket.send(Message::text(format!("40{}", json!({"token": token})))).await;
                // Logged in (the connect reply) before the garbage goes in.
                while let Ok(Some(Ok(reply))) = tokio::time::timeout(WAIT, socket.next()).await {
                    if reply.to_text().is_ok_and(|text| text.starts_with("40")) {
                        break;
                    }
                }
                let _ = socket.send(Message::text(frame)).await;
                let _ = socket.send(Message::binary(vec![0x04, 0xff])).await;
                // Until the server answers or closes.
                let _ = tokio::time::timeout(Duration::from_millis(500), socket.next()).await;
            }
        }));
    }
    let mut sent = Vec::new();
    for n in 0..30 {
        sent.push(send(&mut sender, &room, &format!("steady {n}")).await["seq"].clone());
    }
    for attacker in attackers {
        attacker.await.unwrap();
    }
    for seq in sent {
        assert_eq!(receiver.event("message.new").await["message"]["seq"], seq);
    }
    node.assert_healthy().await;
}

/// A client that never reads while pushes pile up is let go once it has taken nothing for the
/// send timeout: its socket is freed, not held for ever; the node stays well.
async fn a_client_that_never_reads_is_cut_off(db: Db) {
    let mut node = Node::start(
        db,
        &[
            ("SWITCHBOARD_OUTBOUND_QUEUE", "16"),
            ("SWITCHBOARD_RATE_PER_SEC", "10000"),
            ("SWITCHBOARD_RATE_BURST", "10000"),
            ("SWITCHBOARD_SEND_TIMEOUT_SECS", "2"),
        ],
    )
    .await;
    // A small receive buffer: the client's window shuts after a few frames.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(([127, 0, 0, 1], node.port).into()).await.unwrap();
    let (_silent, _) = tokio_tungstenite::client_async(node.ws_url("silent"), stream).await.unwrap();
    let mut talker = node.connect("talker").await;
    let room = talker.ok("room.direct", json!({"user_id": "silent"})).await["room"]["id"].as_str().unwrap().to_owned();
    let body = "z".repeat(8000);
    // The talker reads all it is sent: only the silent client falls behind.
    for n in 0..400 {
        talker.ok("message.send", json!({"room_id": room, "body": body, "client_id": format!("c{n}")})).await;
    }
    // Whether its queue overflowed first (1013) or not, the socket is dropped once it has taken
    // nothing for the send timeout, and the connection with it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, metrics) = http_get(node.port, "/metrics").await;
        let open =
            metrics.lines().find(|l| l.starts_with("switchboard_connections{")).and_then(|l| l.rsplit(' ').next());
        if open == Some("1") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the silent client's socket was kept: {open:?} open");
        // The talker reads what it is sent meanwhile.
        talker.no_event("none", Duration::from_millis(200)).await;
    }
    talker.ok("message.send", json!({"room_id": room, "body": "still here", "client_id": "last"})).await;
    node.assert_healthy().await;
}

/// Connections past the caps are refused before the upgrade, and the node goes on serving.
async fn connections_past_the_caps_are_refused(db: Db) {
    let mut node =
        Node::start(db, &[("SWITCHBOARD_MAX_CONNECTIONS_PER_USER", "5"), ("SWITCHBOARD_MAX_CONNECTIONS_PER_IP", "60")])
            .await;
    let mut held = Vec::new();
    let mut refused = std::collections::BTreeMap::new();
    for i in 0..100 {
        let user = if i < 20 { "greedy".to_owned() } else { format!("many-{i}") };
        match connect_async(node.ws_url(&user)).await {
            Ok((socket, _)) => held.push(socket),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                *refused.entry(response.status().as_u16()).or_insert(0) += 1;
            }
            Err(e) => panic!("unexpected failure: {e}"),
        }
    }
    assert_eq!(held.len(), 60, "{refused:?}");
    assert_eq!(refused.get(&429), Some(&40), "{refused:?}");
    drop(held);
    node.assert_healthy().await;
}

/// The attacks again on a node with one worker, which serves its port itself, on its own thread
/// (SQLite: the database is not what differs).
macro_rules! on_one_worker {
    ($($name:ident),* $(,)?) => {
        mod one_worker {
            $( #[actix_web::test] async fn $name() {
                super::ONE_WORKER.scope(true, super::$name($crate::helpers::Db::Sqlite)).await
            } )*
        }
    };
}

on_one_worker!(
    garbage_on_every_path_harms_nobody_else,
    a_client_that_never_reads_is_cut_off,
    connections_past_the_caps_are_refused,
    clients_dropping_mid_request_leave_the_node_up,
    oversized_frame_headers_are_refused_at_the_header,
);

both!(
    garbage_on_every_path_harms_nobody_else,
    a_client_that_never_reads_is_cut_off,
    connections_past_the_caps_are_refused,
    revoking_a_user_closes_their_connections,
    a_flood_is_logged_once,
    clients_dropping_mid_request_leave_the_node_up,
    oversized_frame_headers_are_refused_at_the_header,
    nul_in_any_text_field_harms_nobody_else,
);
