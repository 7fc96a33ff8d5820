//! The native-protocol client: one WebSocket per simulated user, driven by a writer task and
//! a reader task so scenario code never blocks on the socket. Every inbound frame is
//! timestamped the moment it is read, before it is parsed or queued, so measured latencies
//! exclude the generator's own queueing on the receive side.
//!
//! Framing lives in `encode_request` and `decode_frame` only; a Socket.IO client can reuse
//! `Connection`'s shape with its own pair of functions.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// Lifetime of the tokens the generator mints: comfortably longer than any run.
const TOKEN_TTL_SECS: u64 = 6 * 3600;

/// How long `close` waits for the writer to send the close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Where to connect and how to sign tokens.
#[derive(Clone)]
pub struct Target {
    /// `ws://host:port` with the path of the WebSocket endpoint, without a query.
    endpoint: String,
    secret: String,
}

impl Target {
    /// `url` is `ws://host:port` (the `/ws` path is added) or a full `ws://host:port/ws`.
    pub fn new(url: &str, secret: &str) -> Result<Self> {
        let url = url.trim_end_matches('/');
        // No TLS client is compiled in: put the generator next to the server or its proxy.
        if !url.starts_with("ws://") {
            bail!("--url must start with ws:// (got {url}); wss:// is not supported");
        }
        if url.contains('?') {
            bail!("--url must not carry a query: the token is added by the generator");
        }
        let endpoint = if url.ends_with("/ws") { url.to_owned() } else { format!("{url}/ws") };
        Ok(Self { endpoint, secret: secret.to_owned() })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// `host:port` of the endpoint (for plain HTTP requests such as `/metrics`).
    pub fn authority(&self) -> &str {
        let rest = self.endpoint.strip_prefix("ws://").unwrap_or(&self.endpoint);
        rest.split('/').next().unwrap_or(rest)
    }

    pub fn url_for(&self, user: &str) -> Result<String> {
        let token = mint_token(&self.secret, user, TOKEN_TTL_SECS)?;
        // A JWT is base64url segments joined by dots: safe in a query string as is.
        Ok(format!("{}?token={token}", self.endpoint))
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
    /// A pushed event (`message.new`, `presence`, `error`, …).
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

/// One inbound frame and the instant it was read off the socket.
#[derive(Debug)]
pub struct Inbound {
    pub at: Instant,
    pub frame: Frame,
}

/// An open, greeted connection for one user.
pub struct Connection {
    user: String,
    outgoing: mpsc::UnboundedSender<Message>,
    inbound: mpsc::UnboundedReceiver<Inbound>,
    writer: JoinHandle<()>,
    next_id: i64,
}

impl Connection {
    /// Connects as `user` and waits for `hello`.
    pub async fn connect(target: &Target, user: &str, timeout: Duration) -> Result<Self> {
        let url = target.url_for(user)?;
        // Nagle off: small frames must leave at once or latency measures the kernel's timer.
        let (socket, _response) =
            tokio::time::timeout(timeout, tokio_tungstenite::connect_async_with_config(url.as_str(), None, true))
                .await
                .map_err(|_| anyhow!("connecting as {user}: no upgrade within {timeout:?}"))?
                .with_context(|| format!("connecting as {user} to {}", target.endpoint()))?;
        let (sink, stream) = socket.split();

        let (outgoing, to_socket) = mpsc::unbounded_channel();
        let (from_socket, mut inbound) = mpsc::unbounded_channel();
        let writer = tokio::spawn(write_loop(sink, to_socket));
        tokio::spawn(read_loop(stream, from_socket));

        let first = tokio::time::timeout(timeout, inbound.recv())
            .await
            .map_err(|_| anyhow!("{user}: no hello within {timeout:?}"))?
            .ok_or_else(|| anyhow!("{user}: connection ended before hello"))?;
        match first.frame {
            Frame::Event { event, .. } if event == "hello" => {}
            other => bail!("{user}: expected hello first, got {other:?}"),
        }
        Ok(Self { user: user.to_owned(), outgoing, inbound, writer, next_id: 1 })
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// Queues a request and returns its id; the ack arrives through `recv`.
    pub fn send(&mut self, event: &str, data: Value) -> Result<i64> {
        let id = self.next_id;
        self.next_id += 1;
        self.outgoing
            .send(Message::Text(encode_request(event, id, data).into()))
            .map_err(|_| anyhow!("{}: connection is closed", self.user))?;
        Ok(id)
    }

    /// The next inbound frame; `None` after `Frame::Closed` has been returned.
    pub async fn recv(&mut self) -> Option<Inbound> {
        self.inbound.recv().await
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
}

pub fn encode_request(event: &str, id: i64, data: Value) -> String {
    json!({"event": event, "id": id, "data": data}).to_string()
}

pub fn decode_frame(text: &str) -> Frame {
    let Ok(Value::Object(mut frame)) = serde_json::from_str::<Value>(text) else {
        return Frame::Malformed(text.chars().take(200).collect());
    };
    if let Some(id) = frame.get("ack").and_then(Value::as_i64) {
        let ok = frame.get("ok").and_then(Value::as_bool).unwrap_or(false);
        let error_code = frame.get("error").and_then(|e| e.get("code")).and_then(Value::as_str).map(str::to_owned);
        return Frame::Ack(Ack { id, ok, data: frame.remove("data").unwrap_or(Value::Null), error_code });
    }
    if let Some(Value::String(event)) = frame.remove("event") {
        return Frame::Event { event, data: frame.remove("data").unwrap_or(Value::Null) };
    }
    Frame::Malformed(text.chars().take(200).collect())
}

type Sink = futures_util::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    Message,
>;
type Stream = futures_util::stream::SplitStream<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
>;

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
async fn read_loop(mut stream: Stream, out: mpsc::UnboundedSender<Inbound>) {
    let closed = loop {
        let Some(next) = stream.next().await else {
            break Frame::Closed { code: None, reason: "stream ended".into() };
        };
        let at = Instant::now();
        let frame = match next {
            Ok(Message::Text(text)) => decode_frame(text.as_str()),
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
        // The scenario may have stopped listening; keep draining regardless.
        let _ = out.send(Inbound { at, frame });
    };
    let _ = out.send(Inbound { at: Instant::now(), frame: closed });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_acks_and_events() {
        match decode_frame(r#"{"ack":3,"ok":false,"error":{"code":"rate_limited","message":"x"}}"#) {
            Frame::Ack(ack) => {
                assert_eq!(ack.id, 3);
                assert!(!ack.ok);
                assert_eq!(ack.error_code.as_deref(), Some("rate_limited"));
            }
            other => panic!("{other:?}"),
        }
        match decode_frame(r#"{"event":"message.new","data":{"message":{"body":"hi"}}}"#) {
            Frame::Event { event, data } => {
                assert_eq!(event, "message.new");
                assert_eq!(data["message"]["body"], "hi");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(decode_frame("[1]"), Frame::Malformed(_)));
    }

    #[test]
    fn builds_the_endpoint() {
        let secret = "a-secret-of-enough-length";
        assert_eq!(Target::new("ws://h:1/", secret).unwrap().endpoint(), "ws://h:1/ws");
        assert_eq!(Target::new("ws://h:1/ws", secret).unwrap().endpoint(), "ws://h:1/ws");
        assert!(Target::new("http://h:1", secret).is_err());
        assert_eq!(Target::new("ws://h:1", secret).unwrap().authority(), "h:1");
    }
}
