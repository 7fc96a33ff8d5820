//! The wire client: one WebSocket per simulated user, in either framing (native JSON or
//! Socket.IO over Engine.IO 4), optionally bound to one of several 127.0.0.x source addresses
//! so a run can exceed one address's ~64k ephemeral ports. A `Connection` has a writer task
//! and a reader task so scenario code never blocks on the socket; every inbound frame is
//! timestamped the moment it is read, before it is parsed or queued, so measured latencies
//! exclude the generator's own queueing on the receive side.
//!
//! Framing lives in `encode_request`, `decode` and `handshake` only; everything above speaks
//! `Frame`s. Switchboard serves the same events over both (docs/protocol.md §12).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};

/// Lifetime of the tokens the generator mints: comfortably longer than any run.
const TOKEN_TTL_SECS: u64 = 6 * 3600;

/// How long `close` waits for the writer to send the close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

pub type Socket = WebSocketStream<TcpStream>;

/// How frames are wrapped on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Framing {
    /// `{"event":…,"id":…,"data":…}` on `/ws` (docs/protocol.md §2).
    Native,
    /// Engine.IO 4 / Socket.IO 4 packets on `/socket.io/` (`42["event",{…}]`, acks `43N[…]`).
    Socketio,
}

impl Framing {
    pub fn name(self) -> &'static str {
        match self {
            Framing::Native => "native",
            Framing::Socketio => "socketio",
        }
    }
}

/// Where to connect, how to frame, how to sign tokens and which source addresses to use.
#[derive(Clone)]
pub struct Target {
    /// `ws://host:port` plus the endpoint's path (and, for Socket.IO, its fixed query).
    endpoint: String,
    authority: String,
    framing: Framing,
    secret: String,
    /// Source addresses 127.0.0.1..=127.0.0.N, used round-robin (1: let the kernel choose).
    sources: u8,
    next_source: Arc<AtomicUsize>,
}

impl Target {
    /// `url` is `ws://host:port` (the framing's path is added) or a full `ws://host:port/ws`.
    pub fn new(url: &str, secret: &str, framing: Framing, sources: u8) -> Result<Self> {
        let url = url.trim_end_matches('/');
        // No TLS client is compiled in: put the generator next to the server or its proxy.
        let Some(rest) = url.strip_prefix("ws://") else {
            bail!("--url must start with ws:// (got {url}); wss:// is not supported");
        };
        if url.contains('?') {
            bail!("--url must not carry a query: the token is added by the generator");
        }
        let authority = rest.split('/').next().unwrap_or(rest).to_owned();
        let endpoint = match framing {
            Framing::Native if url.ends_with("/ws") => url.to_owned(),
            Framing::Native => format!("ws://{authority}/ws"),
            Framing::Socketio => format!("ws://{authority}/socket.io/?EIO=4&transport=websocket"),
        };
        Ok(Self {
            endpoint,
            authority,
            framing,
            secret: secret.to_owned(),
            sources: sources.max(1),
            next_source: Arc::new(AtomicUsize::new(0)),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// `host:port` of the endpoint (for plain HTTP requests such as `/metrics`).
    pub fn authority(&self) -> &str {
        &self.authority
    }

    pub fn token_for(&self, user: &str) -> Result<String> {
        mint_token(&self.secret, user, TOKEN_TTL_SECS)
    }

    /// The URL to upgrade for `user`: native carries the token in the query, Socket.IO in
    /// its connect packet.
    fn url_for(&self, user: &str) -> Result<String> {
        Ok(match self.framing {
            // A JWT is base64url segments joined by dots: safe in a query string as is.
            Framing::Native => format!("{}?token={}", self.endpoint, self.token_for(user)?),
            Framing::Socketio => self.endpoint.clone(),
        })
    }

    /// A TCP connection to the server, from the next source address when several are set.
    async fn open_tcp(&self) -> Result<TcpStream> {
        let addr: SocketAddr = match self.authority.parse() {
            Ok(addr) => addr,
            Err(_) => tokio::net::lookup_host(&self.authority)
                .await?
                .next()
                .ok_or_else(|| anyhow!("{} resolves to nothing", self.authority))?,
        };
        let stream = if self.sources > 1 && addr.ip().is_loopback() && addr.is_ipv4() {
            // Binding first limits each source address to its own ephemeral range, so N
            // addresses give N × the ports towards one server.
            let n = self.next_source.fetch_add(1, Ordering::Relaxed) % usize::from(self.sources);
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(Ipv4Addr::new(127, 0, 0, 1 + n as u8).into(), 0))?;
            socket.connect(addr).await?
        } else {
            TcpStream::connect(addr).await?
        };
        // Nagle off: small frames must leave at once or latency measures the kernel's timer.
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

/// An HS256 token with the claims the server requires (`sub`, `exp`).
pub fn mint_token(secret: &str, user: &str, ttl_secs: u64) -> Result<String> {
    let claims = json!({
        "sub": user,
        "exp": jsonwebtoken::get_current_timestamp() + ttl_secs,
    });
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))
        .context("signing a token")
}

/// Opens the WebSocket and completes the greeting (`hello`, or Socket.IO's open and connect
/// packets). Small buffers: runs hold tens of thousands of these.
pub async fn open(target: &Target, user: &str, timeout: Duration) -> Result<Socket> {
    Ok(open_greeted(target, user, timeout).await?.0)
}

/// `open`, also returning the greeting's `data` (native `hello` names the node reached).
pub async fn open_greeted(target: &Target, user: &str, timeout: Duration) -> Result<(Socket, Value)> {
    let deadline = tokio::time::Instant::now() + timeout;
    let url = target.url_for(user)?;
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let (mut socket, _response) = tokio::time::timeout_at(deadline, async {
        let tcp = target.open_tcp().await?;
        anyhow::Ok(tokio_tungstenite::client_async_with_config(url.as_str(), tcp, Some(config)).await?)
    })
    .await
    .map_err(|_| anyhow!("connecting as {user}: no upgrade within {timeout:?}"))?
    .with_context(|| format!("connecting as {user} to {}", target.endpoint()))?;
    let hello = handshake(&mut socket, target, user, deadline).await?;
    Ok((socket, hello))
}

/// Completes the greeting; returns the `hello` data.
async fn handshake(socket: &mut Socket, target: &Target, user: &str, deadline: tokio::time::Instant) -> Result<Value> {
    if target.framing == Framing::Socketio {
        // The Engine.IO open packet comes first; then the namespace connect carries the token.
        match next_text(socket, deadline, user).await? {
            text if text.starts_with('0') => {}
            other => bail!("{user}: expected the Engine.IO open packet, got {other}"),
        }
        let connect = format!("40{}", json!({"token": target.token_for(user)?}));
        socket.send(Message::Text(connect.into())).await.with_context(|| format!("{user}: sending connect"))?;
    }
    loop {
        let text = next_text(socket, deadline, user).await?;
        match decode(target.framing, &text) {
            Decoded::Frame(Frame::Event { event, data }) if event == "hello" => return Ok(data),
            Decoded::Ping => socket.send(Message::Text("3".into())).await?,
            Decoded::Frame(other) => bail!("{user}: expected hello first, got {other:?}"),
            Decoded::Ignore => {}
        }
    }
}

async fn next_text(socket: &mut Socket, deadline: tokio::time::Instant, user: &str) -> Result<String> {
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => bail!("{user}: greeting timed out"),
            Ok(None) => bail!("{user}: closed during the greeting"),
            Ok(Some(Err(e))) => bail!("{user}: greeting: {e}"),
            Ok(Some(Ok(Message::Text(text)))) => return Ok(text.as_str().to_owned()),
            Ok(Some(Ok(Message::Close(c)))) => bail!("{user}: closed during the greeting: {c:?}"),
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// The reply to one request.
#[derive(Debug)]
pub struct Ack {
    pub id: i64,
    pub ok: bool,
    /// `data` of a successful ack (`Null` when it had none).
    pub data: Value,
    /// `error.code` of a failed ack.
    pub error_code: Option<String>,
}

/// What the server said, as far as the scenarios care.
#[derive(Debug)]
pub enum Frame {
    Ack(Ack),
    /// A pushed event (`message.new`, `presence`, `error`, …). Socket.IO's connect reply is
    /// reported as `hello`, its `connect_error` as `connect_error`.
    Event {
        event: String,
        data: Value,
    },
    /// A text frame that is neither, or a binary frame.
    Malformed(String),
    /// The socket ended: a close frame (with its code) or a transport error. Always last.
    Closed {
        code: Option<u16>,
        reason: String,
    },
}

/// A decoded text frame.
#[derive(Debug)]
pub enum Decoded {
    Frame(Frame),
    /// An Engine.IO ping: answer `3`.
    Ping,
    /// Transport chatter (Engine.IO pong, noop, open).
    Ignore,
}

/// One inbound frame and the instant it was read off the socket.
#[derive(Debug)]
pub struct Inbound {
    pub at: Instant,
    pub frame: Frame,
}

/// An encoded request. `id: None` asks for no ack.
pub fn encode_request(framing: Framing, event: &str, id: Option<i64>, data: Value) -> String {
    match (framing, id) {
        (Framing::Native, Some(id)) => json!({"event": event, "id": id, "data": data}).to_string(),
        (Framing::Native, None) => json!({"event": event, "data": data}).to_string(),
        (Framing::Socketio, Some(id)) => format!("42{id}{}", json!([event, data])),
        (Framing::Socketio, None) => format!("42{}", json!([event, data])),
    }
}

pub fn decode(framing: Framing, text: &str) -> Decoded {
    match framing {
        Framing::Native => Decoded::Frame(decode_native(text)),
        Framing::Socketio => decode_socketio(text),
    }
}

fn malformed(text: &str) -> Frame {
    Frame::Malformed(text.chars().take(200).collect())
}

fn decode_native(text: &str) -> Frame {
    let Ok(Value::Object(mut frame)) = serde_json::from_str::<Value>(text) else {
        return malformed(text);
    };
    if let Some(id) = frame.get("ack").and_then(Value::as_i64) {
        return ack(id, Value::Object(frame));
    }
    if let Some(Value::String(event)) = frame.remove("event") {
        return Frame::Event { event, data: frame.remove("data").unwrap_or(Value::Null) };
    }
    malformed(text)
}

/// An ack from the native reply object (`ok`, `data`, `error`).
fn ack(id: i64, mut reply: Value) -> Frame {
    let ok = reply.get("ok").and_then(Value::as_bool).unwrap_or(false);
    let error_code = reply.get("error").and_then(|e| e.get("code")).and_then(Value::as_str).map(str::to_owned);
    Frame::Ack(Ack { id, ok, data: reply.get_mut("data").map(Value::take).unwrap_or(Value::Null), error_code })
}

/// Engine.IO 4 packet type, then Socket.IO packet type for messages (`4`).
fn decode_socketio(text: &str) -> Decoded {
    match text.as_bytes().first() {
        Some(b'2') => return Decoded::Ping,
        Some(b'0' | b'3' | b'6') => return Decoded::Ignore,
        Some(b'4') => {}
        _ => return Decoded::Frame(malformed(text)),
    }
    let packet = &text[1..];
    let (kind, rest) = packet.split_at(packet.len().min(1));
    match kind {
        "0" => {
            Decoded::Frame(Frame::Event { event: "hello".into(), data: serde_json::from_str(rest).unwrap_or_default() })
        }
        "4" => Decoded::Frame(Frame::Event {
            event: "connect_error".into(),
            data: serde_json::from_str(rest).unwrap_or_default(),
        }),
        "1" => Decoded::Frame(Frame::Closed { code: None, reason: "Socket.IO disconnect".into() }),
        "2" | "3" => {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let id = rest[..digits].parse::<i64>().ok();
            let Ok(Value::Array(mut args)) = serde_json::from_str::<Value>(&rest[digits..]) else {
                return Decoded::Frame(malformed(text));
            };
            if kind == "3" {
                let Some(id) = id else { return Decoded::Frame(malformed(text)) };
                let reply = if args.is_empty() { Value::Null } else { args.swap_remove(0) };
                return Decoded::Frame(ack(id, reply));
            }
            let mut args = args.into_iter();
            match (args.next(), args.next()) {
                (Some(Value::String(event)), data) => {
                    Decoded::Frame(Frame::Event { event, data: data.unwrap_or(Value::Null) })
                }
                _ => Decoded::Frame(malformed(text)),
            }
        }
        _ => Decoded::Frame(malformed(text)),
    }
}

/// Where a connection's reader delivers frames: its own queue, or a queue shared by several
/// connections (one task then drives them all, e.g. every member of a room) with a tag.
enum InboundSink {
    Own(mpsc::UnboundedSender<Inbound>),
    Shared(usize, mpsc::UnboundedSender<(usize, Inbound)>),
}

impl InboundSink {
    fn send(&self, inbound: Inbound) {
        // The scenario may have stopped listening; the reader keeps draining regardless.
        let _ = match self {
            InboundSink::Own(tx) => tx.send(inbound).map_err(drop),
            InboundSink::Shared(tag, tx) => tx.send((*tag, inbound)).map_err(drop),
        };
    }
}

/// An open, greeted connection for one user.
pub struct Connection {
    user: String,
    framing: Framing,
    outgoing: mpsc::UnboundedSender<Message>,
    /// `None` when the frames go to a shared queue (`connect_shared`).
    inbound: Option<mpsc::UnboundedReceiver<Inbound>>,
    writer: JoinHandle<()>,
    reader: JoinHandle<()>,
    next_id: i64,
    /// The node named in `hello` (native framing; `None` when the greeting names none).
    node: Option<String>,
}

impl Connection {
    /// Connects as `user` and waits for the greeting; frames arrive through `recv`.
    pub async fn connect(target: &Target, user: &str, timeout: Duration) -> Result<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut conn = Self::start(target, user, timeout, InboundSink::Own(tx)).await?;
        conn.inbound = Some(rx);
        Ok(conn)
    }

    /// Connects as `user`; its frames go to `queue`, tagged with `tag`.
    pub async fn connect_shared(
        target: &Target,
        user: &str,
        timeout: Duration,
        tag: usize,
        queue: mpsc::UnboundedSender<(usize, Inbound)>,
    ) -> Result<Self> {
        Self::start(target, user, timeout, InboundSink::Shared(tag, queue)).await
    }

    async fn start(target: &Target, user: &str, timeout: Duration, sink: InboundSink) -> Result<Self> {
        let (socket, hello) = open_greeted(target, user, timeout).await?;
        let node = hello["node"].as_str().map(str::to_owned);
        let (ws_sink, stream) = socket.split();
        let (outgoing, to_socket) = mpsc::unbounded_channel();
        let writer = tokio::spawn(write_loop(ws_sink, to_socket));
        let reader = tokio::spawn(read_loop(stream, sink, target.framing, outgoing.clone()));
        Ok(Self {
            user: user.to_owned(),
            framing: target.framing,
            outgoing,
            inbound: None,
            writer,
            reader,
            next_id: 1,
            node,
        })
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// The node this connection landed on, as its `hello` said.
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// Queues a request and returns its id; the ack arrives through `recv`.
    pub fn send(&mut self, event: &str, data: Value) -> Result<i64> {
        let id = self.next_id;
        self.next_id += 1;
        self.send_text(encode_request(self.framing, event, Some(id), data))?;
        Ok(id)
    }

    /// Queues an event that wants no ack.
    pub fn notify(&mut self, event: &str, data: Value) -> Result<()> {
        self.send_text(encode_request(self.framing, event, None, data))
    }

    fn send_text(&self, text: String) -> Result<()> {
        self.outgoing.send(Message::Text(text.into())).map_err(|_| anyhow!("{}: connection is closed", self.user))
    }

    /// The next inbound frame; `None` after `Frame::Closed` has been returned (and always for
    /// a connection made with `connect_shared`).
    pub async fn recv(&mut self) -> Option<Inbound> {
        match &mut self.inbound {
            Some(inbound) => inbound.recv().await,
            None => None,
        }
    }

    /// Sends a request and waits for its ack, discarding pushes that arrive meanwhile (for
    /// set-up steps, not for measured traffic). A failed ack is an error.
    pub async fn request(&mut self, event: &str, data: Value, timeout: Duration) -> Result<Value> {
        let id = self.send(event, data)?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let inbound = tokio::time::timeout_at(deadline, self.recv())
                .await
                .map_err(|_| anyhow!("{}: no ack to {event} within {timeout:?}", self.user))?
                .ok_or_else(|| anyhow!("{}: connection ended awaiting {event}", self.user))?;
            match inbound.frame {
                Frame::Ack(ack) if ack.id == id => {
                    if ack.ok {
                        return Ok(ack.data);
                    }
                    bail!("{}: {event} failed with {}", self.user, ack.error_code.as_deref().unwrap_or("?"));
                }
                Frame::Closed { code, reason } => {
                    bail!("{}: closed ({code:?} {reason}) awaiting {event}", self.user)
                }
                _ => {}
            }
        }
    }

    /// Sends a normal close frame and waits briefly for it to leave.
    pub async fn close(self) {
        let Self { outgoing, writer, .. } = self;
        drop(outgoing);
        let _ = tokio::time::timeout(CLOSE_WAIT, writer).await;
    }

    /// Drops the TCP connection without a close frame, as a lost network would. Resolves
    /// once the socket is closed (its file descriptor free again).
    pub async fn abort(self) {
        self.writer.abort();
        self.reader.abort();
        let _ = self.writer.await;
        let _ = self.reader.await;
    }
}

type Sink = futures_util::stream::SplitSink<Socket, Message>;
type Stream = futures_util::stream::SplitStream<Socket>;

/// Drains the queue into the socket, flushing once per batch rather than once per frame.
/// When every sender is gone it sends a normal close.
async fn write_loop(mut sink: Sink, mut queue: mpsc::UnboundedReceiver<Message>) {
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
    let _ =
        sink.send(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "load test done".into() }))).await;
    let _ = sink.close().await;
}

/// Reads frames until the socket ends. Keeps reading after the scenario stops listening so
/// the close handshake (and pongs, which tungstenite sends while reading) still happen.
/// Engine.IO pings are answered through the writer. The writer's queue is held weakly, so
/// dropping the `Connection` still closes the socket.
async fn read_loop(mut stream: Stream, out: InboundSink, framing: Framing, pongs: mpsc::UnboundedSender<Message>) {
    let pongs = pongs.downgrade();
    let closed = loop {
        let Some(next) = stream.next().await else {
            break Frame::Closed { code: None, reason: "stream ended".into() };
        };
        let at = Instant::now();
        let frame = match next {
            Ok(Message::Text(text)) => match decode(framing, text.as_str()) {
                Decoded::Frame(frame) => frame,
                Decoded::Ping => {
                    if let Some(tx) = pongs.upgrade() {
                        let _ = tx.send(Message::Text("3".into()));
                    }
                    continue;
                }
                Decoded::Ignore => continue,
            },
            Ok(Message::Binary(_)) => Frame::Malformed("binary frame".into()),
            Ok(Message::Close(close)) => {
                break Frame::Closed {
                    code: close.as_ref().map(|c| u16::from(c.code)),
                    reason: close.map(|c| c.reason.to_string()).unwrap_or_default(),
                };
            }
            Ok(_) => continue,
            Err(e) => {
                break Frame::Closed { code: None, reason: e.to_string() };
            }
        };
        out.send(Inbound { at, frame });
    };
    out.send(Inbound { at: Instant::now(), frame: closed });
}

#[cfg(test)]
mod tests;
