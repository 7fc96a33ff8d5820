//! Test harness: spawn a node, mint tokens, and a WebSocket client that speaks the native
//! protocol.

use std::collections::VecDeque;
use std::time::Duration;

use clap::Parser;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard::auth::Authenticator;
use switchboard::domain::UserId;
use switchboard::store::Profile;
use switchboard::{Application, Settings, ShutdownHandle};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

pub const SECRET: &str = "integration-test-secret-0123456789";
/// Generous: CI machines are small and run tests in parallel.
pub const WAIT: Duration = Duration::from_secs(15);

#[derive(Parser)]
struct TestCli {
    #[command(flatten)]
    settings: Settings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Runs one scenario on both backends: `both!(name)` makes `sqlite::name` and
/// `postgres::name` from `async fn name(db: Db)`.
#[macro_export]
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[actix_web::test] async fn $name() { super::$name($crate::helpers::Db::Sqlite).await } )*
        }
        mod postgres {
            $( #[actix_web::test] async fn $name() { super::$name($crate::helpers::Db::Postgres).await } )*
        }
    };
}

/// A fresh, empty database of the given kind; its URL.
pub async fn fresh_database(db: Db) -> String {
    match db {
        Db::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir").keep();
            format!("sqlite://{}/switchboard.db", dir.display())
        }
        Db::Postgres => {
            let admin = std::env::var("SWITCHBOARD_TEST_DATABASE_URL").expect(
                "SWITCHBOARD_TEST_DATABASE_URL is not set: run the tests with ./deploy/local/test.sh, \
                 which starts PostgreSQL",
            );
            let name = format!("sb_test_{}", uuid::Uuid::new_v4().simple());
            let mut conn = AsyncPgConnection::establish(&admin).await.expect("connect to test PostgreSQL");
            conn.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create test database");
            let base = admin.rsplit_once('/').expect("URL has a database").0;
            format!("{base}/{name}")
        }
    }
}

/// Runs SQL on a database behind its nodes' backs: what a node that died, or an operator,
/// leaves there.
pub async fn execute_sql(database_url: &str, statements: &str) {
    match database_url.strip_prefix("sqlite://") {
        Some(path) => {
            use diesel::connection::SimpleConnection;
            let mut conn = <diesel::SqliteConnection as diesel::Connection>::establish(path).expect("open SQLite");
            conn.batch_execute(statements).expect("SQL runs");
        }
        None => {
            let mut conn = AsyncPgConnection::establish(database_url).await.expect("connect to PostgreSQL");
            conn.batch_execute(statements).await.expect("SQL runs");
        }
    }
}

pub struct TestApp {
    pub port: u16,
    pub database_url: String,
    shutdown: ShutdownHandle,
    stopped: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    auth: Authenticator,
}

pub async fn spawn_app(db: Db) -> TestApp {
    spawn_with(db, |_| {}).await
}

pub async fn spawn_with(db: Db, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_on(fresh_database(db).await, tweak).await
}

/// Test settings: defaults, port 0, the test secret.
pub fn settings(database_url: &str) -> Settings {
    TestCli::parse_from([
        "switchboard",
        "--bind",
        "127.0.0.1:0",
        "--database-url",
        database_url,
        "--jwt-secret",
        SECRET,
    ])
    .settings
}

pub async fn spawn_on(database_url: String, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
    let mut settings = settings(&database_url);
    tweak(&mut settings);
    let app = Application::build(settings).await.expect("app builds");
    let port = app.port();
    let shutdown = app.shutdown_handle();
    let stopped = Some(actix_rt::spawn(app.run_until_stopped()));
    TestApp { port, database_url, shutdown, stopped, auth: Authenticator::new(SECRET) }
}

impl TestApp {
    pub fn token(&self, user: &str) -> String {
        self.auth.mint(&UserId::parse(user).unwrap(), &Profile::default(), 3600)
    }

    /// A token whose claims carry a display profile.
    pub fn token_with_profile(&self, user: &str, name: &str, avatar: &str) -> String {
        let profile = Profile { name: Some(name.to_owned()), avatar: Some(avatar.to_owned()) };
        self.auth.mint(&UserId::parse(user).unwrap(), &profile, 3600)
    }

    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://127.0.0.1:{}/ws?token={token}", self.port)
    }

    pub async fn connect(&self, user: &str) -> Client {
        Client::connect_url(&self.ws_url(&self.token(user))).await
    }

    /// Graceful shutdown, as on SIGTERM; waits for it to finish.
    pub async fn stop(mut self) {
        self.shutdown.shutdown();
        if let Some(stopped) = self.stopped.take() {
            tokio::time::timeout(Duration::from_secs(30), stopped)
                .await
                .expect("shutdown finishes")
                .expect("server task")
                .expect("server ran cleanly");
        }
    }

    /// A plain HTTP GET: (status, body).
    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.port, path).await
    }
}

/// Runs the real `switchboard` binary (port 0, the test secret, plus `env`); the child
/// and the port it listens on. The child is killed when dropped.
#[allow(dead_code)]
pub async fn spawn_process(env: &[(&str, &str)]) -> (tokio::process::Child, u16) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command
        .env("SWITCHBOARD_BIND", "127.0.0.1:0")
        .env("SWITCHBOARD_JWT_SECRET", SECRET)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("binary starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port = loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("server logs its address")
            .unwrap()
            .expect("server is running");
        if let Some(rest) = line.split("listening on ").nth(1) {
            let address: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':').collect();
            break address.rsplit(':').next().unwrap().parse().expect("a port");
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, port)
}

/// Minimal HTTP/1.1 GET over a raw socket (keeps the test dependencies small).
pub async fn http_get(port: u16, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// The server API key the API tests set (`with_api`).
pub const API_KEY: &str = "integration-test-api-key-0123456789abcdef";

/// Turns the server API on with [`API_KEY`].
pub fn with_api(settings: &mut Settings) {
    settings.api_key = Some(API_KEY.parse().unwrap());
}

/// An answer of the server API: status, headers (lower-case names) and the JSON body.
#[derive(Debug)]
pub struct ApiAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl ApiAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// One server API call with the test key over a raw HTTP/1.1 socket; `headers` are added.
pub async fn api(port: u16, method: &str, path: &str, body: Option<Value>, headers: &[(&str, &str)]) -> ApiAnswer {
    let mut extra = format!("Authorization: Bearer {API_KEY}\r\n");
    for (name, value) in headers {
        extra.push_str(&format!("{name}: {value}\r\n"));
    }
    raw_http(port, method, path, body.map(|b| b.to_string()), &extra).await
}

/// An HTTP/1.1 request with `extra` header lines (each ending in CRLF) and a JSON body.
pub async fn raw_http(port: u16, method: &str, path: &str, body: Option<String>, extra: &str) -> ApiAnswer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let body = body.unwrap_or_default();
    let content = if body.is_empty() { String::new() } else { "Content-Type: application/json\r\n".to_owned() };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{extra}{content}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut response)).await.expect("the API answers").unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap_or(Value::String(body.to_owned()))
    };
    ApiAnswer { status, headers, body }
}

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// A native-protocol client that keeps pushed events it has not been asked for yet.
pub struct Client {
    socket: Socket,
    next_id: i64,
    inbox: VecDeque<Value>,
    pub hello: Value,
}

impl Client {
    pub async fn connect_url(url: &str) -> Client {
        let (socket, _) = connect_async(url).await.expect("websocket connects");
        let mut client = Client { socket, next_id: 1, inbox: VecDeque::new(), hello: Value::Null };
        client.hello = client.event("hello").await;
        client
    }

    pub fn user_id(&self) -> &str {
        self.hello["user_id"].as_str().unwrap()
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.socket.send(Message::text(text.into())).await.expect("send");
    }

    /// Next JSON frame from the socket (pings are answered by tungstenite itself).
    async fn read_frame(&mut self) -> Option<Value> {
        loop {
            match tokio::time::timeout(WAIT, self.socket.next()).await.expect("a frame within the wait")? {
                Ok(Message::Text(text)) => {
                    return Some(serde_json::from_str(&text).expect("frames are JSON"));
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// Sends a request and returns its ack frame.
    pub async fn request(&mut self, event: &str, data: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send_text(json!({"event": event, "id": id, "data": data}).to_string()).await;
        self.ack(id).await
    }

    pub async fn ack(&mut self, id: i64) -> Value {
        if let Some(index) = self.inbox.iter().position(|f| f.get("ack").and_then(Value::as_i64) == Some(id)) {
            return self.inbox.remove(index).unwrap();
        }
        loop {
            let frame = self.read_frame().await.expect("connection open while waiting for an ack");
            if frame.get("ack").and_then(Value::as_i64) == Some(id) {
                return frame;
            }
            self.inbox.push_back(frame);
        }
    }

    /// Sends a request that must succeed; returns its reply data.
    pub async fn ok(&mut self, event: &str, data: Value) -> Value {
        let ack = self.request(event, data).await;
        assert_eq!(ack["ok"], true, "{event} failed: {ack}");
        ack.get("data").cloned().unwrap_or(Value::Null)
    }

    /// Sends a request that must fail; returns its error code.
    pub async fn fails(&mut self, event: &str, data: Value) -> String {
        let ack = self.request(event, data).await;
        assert_eq!(ack["ok"], false, "{event} should have failed: {ack}");
        ack["error"]["code"].as_str().expect("error code").to_owned()
    }

    /// The next pushed `event`'s data (earlier frames of other kinds are kept).
    pub async fn event(&mut self, event: &str) -> Value {
        if let Some(index) = self.inbox.iter().position(|f| f["event"] == event) {
            return self.inbox.remove(index).unwrap()["data"].clone();
        }
        loop {
            let frame = self.read_frame().await.unwrap_or_else(|| panic!("connection closed waiting for {event}"));
            if frame["event"] == event {
                return frame["data"].clone();
            }
            self.inbox.push_back(frame);
        }
    }

    /// The next frame (pushed or ack) that satisfies `wanted`.
    pub async fn event_matching(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        if let Some(index) = self.inbox.iter().position(&wanted) {
            return self.inbox.remove(index).unwrap();
        }
        loop {
            let frame = self.read_frame().await.expect("connection open");
            if wanted(&frame) {
                return frame;
            }
            self.inbox.push_back(frame);
        }
    }

    /// Whether a frame satisfying `wanted` was received and kept (not yet consumed).
    #[allow(dead_code)] // used by the cluster tests, which share these helpers
    pub fn has_event(&self, wanted: impl Fn(&Value) -> bool) -> bool {
        self.inbox.iter().any(wanted)
    }

    /// Forgets pushed `event`s received so far.
    pub fn drop_events(&mut self, event: &str) {
        self.inbox.retain(|f| f["event"] != event);
    }

    /// Asserts no `event` arrives within `wait`.
    pub async fn no_event(&mut self, event: &str, wait: Duration) {
        assert!(!self.inbox.iter().any(|f| f["event"] == event), "unexpected {event} already received");
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(frame) = tokio::time::timeout_at(deadline, self.socket.next()).await {
            if let Some(Ok(Message::Text(text))) = frame {
                let frame: Value = serde_json::from_str(&text).unwrap();
                assert_ne!(frame["event"], event, "unexpected {event}: {frame}");
                self.inbox.push_back(frame);
            } else if frame.is_none() {
                return;
            }
        }
    }

    /// Reads until the server closes; the close code, if any.
    pub async fn close_code(&mut self) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match tokio::time::timeout_at(deadline, self.socket.next()).await.expect("server closes in time") {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self
            .socket
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            }))
            .await;
        // Drain until the server's close arrives so the disconnect is processed.
        while let Ok(Some(Ok(_))) = tokio::time::timeout(WAIT, self.socket.next()).await {}
    }
}

/// Opens the direct room of `a` and `b`; its id.
pub async fn direct_room(a: &mut Client, b: &Client) -> String {
    let reply = a.ok("room.direct", json!({"user_id": b.user_id()})).await;
    reply["room"]["id"].as_str().unwrap().to_owned()
}

pub async fn send(client: &mut Client, room: &str, body: &str) -> Value {
    client.ok("message.send", json!({"room_id": room, "kind": "text", "body": body})).await["message"].clone()
}
