//! The connection actor: one per WebSocket, native or Socket.IO. It owns the socket: reads frames, decodes them at the edge into typed commands through the connection's framing (or queues them for its seed dialect's translator), enforces the per-connection limits, and runs a writer that drains the connection's bounded outbox into the socket.

use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::dev::Payload;
use actix_ws::{CloseCode, MessageStream};
use governor::clock::QuantaClock;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

mod frames;

use super::hub::{Connect, Disconnect};
use super::registry::{Kick, Listing};
use super::writer::{Wire, Writer};
use super::{Node, Outbound, Outbox, RecoveryStart};
use crate::admission::{Seat, UserSeat};
use crate::auth::Identity;
use crate::dialect::{self, Api, Dialect, Edge, Lookup};
use crate::domain::{ConnectionId, Error, Timestamp, UserId};
use crate::service::recovery::{self, Claim, Recoverable};
use crate::service::{self, Caller};
use crate::wire::socketio::{self, EngineVersion};
use crate::wire::{AckId, Framing, Inbound, Reply, native};

/// How long before its token expires a connection is told (`auth.expiring`).
const EXPIRY_NOTICE: Duration = Duration::from_secs(60);
/// Longest single wait on a token's expiry; a longer one is waited in steps.
const EXPIRY_STEP: Duration = Duration::from_secs(24 * 3600);
/// Close code: the token expired and was not refreshed.
const TOKEN_EXPIRED: u16 = 4001;
/// Close code: the token was revoked; do not reconnect with it.
pub const TOKEN_REVOKED: u16 = 4003;

/// Who is connecting and how, as far as the upgrade request tells.
pub struct Handshake {
    pub framing: Framing,
    /// The API named at the upgrade (or the default); Socket.IO's connect packet may name another.
    pub api: Api,
    /// Known at the upgrade (native, Engine.IO 3), or after Socket.IO's connect packet.
    pub identity: Option<Identity>,
    /// A token from the query string, used when a Socket.IO connect packet carries none.
    pub query_token: Option<String>,
    /// Why the upgrade's credentials were refused (Engine.IO 3 answers with connect_error).
    pub refusal: Option<String>,
    /// The connection's place on this node.
    pub seat: Seat,
    /// Its place among its user's connections, when the user is known at the upgrade.
    pub user_seat: Option<UserSeat>,
}

pub struct Connection {
    id: ConnectionId,
    framing: Framing,
    api: Api,
    /// A dialect connection's requests, translated in order by its worker.
    dialect: Option<mpsc::Sender<DialectRequest>>,
    /// The API the writer translates pushes into, fixed at registration.
    wire_api: Arc<OnceLock<Api>>,
    identity: Option<Identity>,
    query_token: Option<String>,
    refusal: Option<String>,
    node: Arc<Node>,
    outbox: Outbox,
    /// The Socket.IO session's pid, once it may be recovered.
    pid: Option<String>,
    /// The session's start, handed to the writer at registration.
    recovery: Option<Box<RecoveryStart>>,
    /// Held for the connection's life: its places under the node's and the user's caps.
    _seat: Seat,
    user_seat: Option<UserSeat>,
    /// The token's one pending expiry timer (a step, the notice, then the close), replaced on
    /// a refresh.
    expiry: Option<SpawnHandle>,
    /// The socket's inbound stream; cancelled after a fatal protocol error, so that a client
    /// streaming past a refused frame is not read (and buffered) while its close goes out.
    reading: Option<SpawnHandle>,
    rate: DefaultDirectRateLimiter,
    /// Rate-limited frames tolerated per 10 s before the connection counts as a flood.
    strikes: DefaultDirectRateLimiter,
    last_heard: Instant,
}

impl Connection {
    /// Starts the actor that reads an upgraded socket's `payload`; the writer it returns is
    /// the response's body. The actor stops when the client's frames end or the writer is
    /// dropped (the socket is done).
    pub fn start(handshake: Handshake, node: Arc<Node>, payload: Payload) -> Writer {
        let settings = &node.settings;
        let id = ConnectionId::new();
        let (outbox, receiver) = Outbox::new(id, settings.outbound_queue, node.metrics.clone());
        let (done, writer_gone) = oneshot::channel();
        let limit = settings.max_frame_bytes;
        let stream = MessageStream::new(payload)
            .with_connection_close_signal(writer_gone)
            .max_frame_size(limit)
            .aggregate_continuations()
            .max_continuation_size(limit);
        let wire_api = Arc::default();
        let services = node.services.clone();
        let wire = Wire {
            framing: handshake.framing,
            api: Arc::clone(&wire_api),
            lookup: Lookup::new(services.clone()),
            services,
        };
        let writer = Writer::new(receiver, wire, node.metrics.clone(), done);
        let rate = RateLimiter::direct_with_clock(
            Quota::per_second(nonzero(settings.rate_per_sec)).allow_burst(nonzero(settings.rate_burst)),
            clock(),
        );
        let strikes = RateLimiter::direct_with_clock(
            Quota::with_period(Duration::from_secs(10) / settings.flood_strikes)
                .expect("flood_strikes is validated positive")
                .allow_burst(nonzero(settings.flood_strikes)),
            clock(),
        );
        Connection::create(move |ctx| {
            let reading = Some(ctx.add_stream(stream));
            Connection {
                id,
                framing: handshake.framing,
                api: handshake.api,
                dialect: None,
                wire_api,
                identity: handshake.identity,
                query_token: handshake.query_token,
                refusal: handshake.refusal,
                node,
                outbox,
                pid: None,
                recovery: None,
                _seat: handshake.seat,
                user_seat: handshake.user_seat,
                expiry: None,
                reading,
                rate,
                strikes,
                last_heard: Instant::now(),
            }
        });
        writer
    }

    /// Hands the authenticated connection to the hub; no frame is read before it is
    /// registered and has had its first frame.
    fn register(&mut self, ctx: &mut Context<Self>) {
        let Some(identity) = self.identity.clone() else { return };
        let _ = self.wire_api.set(self.api);
        let listing = Listing {
            connection: self.id,
            user: identity.user.clone(),
            api: self.api,
            framing: self.framing,
            token_expires_at: identity.expires_at,
            issued_at: identity.issued_at,
        };
        self.node.connections.insert(listing, ctx.address().recipient());
        self.watch_expiry(ctx);
        if let Some(dialect) = self.api.dialect() {
            // Dialect requests run one at a time (a seed event may be several commands, and
            // the next must not overtake it); a burst the rate limit allows may wait.
            let (sender, requests) = mpsc::channel(self.node.settings.rate_burst.max(1) as usize);
            self.dialect = Some(sender);
            let edge =
                Edge::new(self.node.services.clone(), Caller { user: identity.user.clone(), connection: self.id });
            ctx.spawn(translate_requests(dialect, edge, requests, self.outbox.clone(), self.framing).into_actor(self));
        }
        let hello = self.framing.hello(&identity.user, &self.node.node, self.id, self.pid.as_deref());
        let recovery = self.recovery.take();
        let connect = self.node.hub.send(Connect { identity, outbox: self.outbox.clone(), hello, recovery });
        ctx.wait(connect.into_actor(self).map(|registered, connection, _| {
            if !matches!(registered, Ok(Ok(()))) {
                tracing::error!(connection = %connection.id, "could not register connection");
                connection.outbox.close(CloseCode::Error, "server error: please reconnect");
            }
        }));
    }

    fn push_text(&self, text: String, event: &'static str) {
        self.outbox.push(Outbound::text(text, event));
    }

    /// A text frame; `allowed` is false when it came over the rate limit.
    fn on_text(&mut self, text: &str, allowed: bool, ctx: &mut Context<Self>) {
        let metrics = self.node.metrics.clone();
        let acting = self.identity.as_ref().map(|i| i.user.clone());
        let inbound = self.framing.decode(text, acting.is_some());
        if !allowed {
            metrics.frames_in.with_label_values(&["rate_limited"]).inc();
            if let Inbound::Request { id, .. } = inbound {
                self.answer(id, Err(Error::RateLimited));
            }
            return;
        }
        match inbound {
            Inbound::Request { id, event, data } if event == AUTH_REFRESH => self.refresh(id, data, ctx),
            Inbound::Request { id, event, data } => {
                let Some(user) = acting else { return };
                match data {
                    Err(err) => {
                        metrics.frames_in.with_label_values(&["invalid"]).inc();
                        self.answer(id, Err(err));
                    }
                    Ok(data) if self.dialect.is_some() => self.translate(id, event, data),
                    Ok(data) => self.execute(user, id, &event, data, ctx),
                }
            }
            Inbound::Connect { auth } => self.connect_namespace(auth, ctx),
            Inbound::Answer(text) => self.push_text(text, "connect_error"),
            Inbound::Ping => self.push_text("3".into(), "pong"),
            Inbound::Pong | Inbound::Ignore => {}
            Inbound::Disconnect => {
                self.outbox.close(CloseCode::Normal, "goodbye");
            }
            Inbound::Protocol(reason) => {
                tracing::debug!(connection = %self.id, reason, "protocol error");
                self.outbox.close(CloseCode::Protocol, &reason);
            }
            Inbound::Binary => {
                self.outbox.close(CloseCode::Unsupported, "binary packets are not supported: send JSON");
            }
        }
    }

    /// A native event: parsed into its command and started now, awaited later, so that a
    /// connection's commands reach their room in the order they were sent while their
    /// replies may come back in any order.
    fn execute(&mut self, user: UserId, id: Option<AckId>, event: &str, data: Value, ctx: &mut Context<Self>) {
        let metrics = &self.node.metrics;
        let request = match native::request(event, data, &user) {
            Ok(request) => request,
            Err(err) => {
                metrics.frames_in.with_label_values(&["invalid"]).inc();
                return self.answer(id, Err(err));
            }
        };
        metrics.frames_in.with_label_values(&[request.event.as_str()]).inc();
        let caller = Caller { user, connection: self.id };
        let reply = service::execute(self.node.services.clone(), caller, request.command);
        ctx.spawn(reply.into_actor(self).map(move |result, connection, _| connection.answer(id, result)));
    }

    /// A dialect event: queued for the connection's translator, which runs them in order.
    fn translate(&mut self, id: Option<AckId>, event: String, data: Value) {
        let Some(dialect) = &self.dialect else { return };
        self.node.metrics.frames_in.with_label_values(&[self.api.as_str()]).inc();
        if let Err(mpsc::error::TrySendError::Full(request)) = dialect.try_send(DialectRequest { id, event, data }) {
            self.answer(request.id, Err(Error::RateLimited));
        }
    }

    /// Socket.IO's namespace connect: authenticates from the auth payload (or the query).
    fn connect_namespace(&mut self, auth: Option<Value>, ctx: &mut Context<Self>) {
        let Framing::SocketIo(version) = self.framing else { return };
        if self.identity.is_some() {
            self.outbox.close(CloseCode::Protocol, "second connect");
            return;
        }
        let field = |name: &str| auth.as_ref().and_then(|a| a.get(name)).and_then(Value::as_str).map(str::to_owned);
        if let Some(api) = field("api") {
            match Api::parse(&api) {
                Ok(api) => self.api = api,
                Err(e) => {
                    return self.push_text(
                        socketio::connect_error(version, "not authorized", &e.to_string()),
                        "connect_error",
                    );
                }
            }
        }
        let Some(token) = field("token").or_else(|| self.query_token.clone()) else {
            let refusal = socketio::connect_error(version, "not authorized", "missing token");
            return self.push_text(refusal, "connect_error");
        };
        let identity = match self.node.auth.verify(&token) {
            Ok(identity) => identity,
            Err(e) => {
                return self
                    .push_text(socketio::connect_error(version, "not authorized", &e.to_string()), "connect_error");
            }
        };
        // The per-user cap, now that the user is known; nothing else is read meanwhile.
        let admission = self.node.admission.clone();
        let user = identity.user.clone();
        let seat = async move { admission.user_seat(&user).await };
        let claim = recovery_claim(auth.as_ref());
        ctx.wait(seat.into_actor(self).map(move |seat, connection, ctx| match seat {
            Ok(seat) => {
                connection.user_seat = Some(seat);
                connection.start_session(identity, claim, ctx);
            }
            Err(refusal) => {
                let refused = socketio::connect_error(version, "too many connections", refusal.message());
                connection.push_text(refused, "connect_error");
                connection.outbox.close(CloseCode::Policy, refusal.message());
            }
        }));
    }

    /// A Socket.IO v4 connection (when recovery is on) resumes the session its client claims
    /// or opens one, then registers; nothing else is read meanwhile.
    fn start_session(&mut self, identity: Identity, claim: Option<Claim>, ctx: &mut Context<Self>) {
        if self.framing != Framing::SocketIo(EngineVersion::V4) || self.node.settings.socketio_recovery_secs == 0 {
            self.identity = Some(identity);
            return self.register(ctx);
        }
        let services = self.node.services.clone();
        let user = identity.user.clone();
        let session = async move { recovery::resume_or_open(&services, &user, claim).await };
        ctx.wait(session.into_actor(self).map(move |session, connection, ctx| {
            if let Some(Recoverable { pid, positions, missed }) = session {
                tracing::debug!(connection = %connection.id, missed = missed.len(), "Socket.IO session started");
                connection.recovery = Some(Box::new(RecoveryStart { user: identity.user.clone(), positions, missed }));
                connection.pid = Some(pid);
            }
            connection.identity = Some(identity);
            connection.register(ctx);
        }));
    }

    /// `auth.refresh {token}`: a fresh token for the same user moves the connection's expiry.
    fn refresh(&mut self, id: Option<AckId>, data: Result<Value, Error>, ctx: &mut Context<Self>) {
        let Some(current) = self.identity.as_ref().map(|i| i.user.clone()) else { return };
        let refreshed = data
            .and_then(|data| match data.get("token") {
                Some(Value::String(token)) => Ok(token.clone()),
                _ => Err(Error::bad_request("auth.refresh needs a string `token`")),
            })
            .and_then(|token| self.node.auth.verify(&token))
            .and_then(|identity| {
                if identity.user == current {
                    Ok(identity)
                } else {
                    Err(Error::forbidden("a refreshed token must be for the same user"))
                }
            });
        match refreshed {
            Ok(identity) => {
                let expires_at = identity.expires_at;
                self.node.connections.refreshed(&identity.user, self.id, expires_at, identity.issued_at);
                self.identity = Some(identity);
                self.watch_expiry(ctx);
                self.answer(id, Ok(Reply::Refreshed { expires_at }));
            }
            Err(err) => self.answer(id, Err(err)),
        }
    }

    /// Tells the client ahead of its token's expiry, and closes with 4001 at it.
    fn watch_expiry(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.expiry.take() {
            ctx.cancel_future(timer);
        }
        let Some(identity) = &self.identity else { return };
        let expires_at = identity.expires_at;
        let left = Duration::from_millis(u64::try_from(expires_at.millis() - Timestamp::now().millis()).unwrap_or(0));
        if left > EXPIRY_STEP {
            self.expiry = Some(ctx.run_later(EXPIRY_STEP, |connection, ctx| connection.watch_expiry(ctx)));
            return;
        }
        // One timer at a time: the notice's arms the close.
        let close_in = left.min(EXPIRY_NOTICE);
        self.expiry = Some(ctx.run_later(left - close_in, move |connection, ctx| {
            let notice = connection.framing.event(AUTH_EXPIRING, &serde_json::json!({"expires_at": expires_at}));
            connection.push_text(notice, AUTH_EXPIRING);
            connection.expiry = Some(ctx.run_later(close_in, |connection, _| {
                connection.node.metrics.refused.with_label_values(&["token_expired"]).inc();
                connection.outbox.close(CloseCode::Other(TOKEN_EXPIRED), "token expired");
            }));
        }));
    }

    /// Counts a frame against the rate limit. A connection that keeps sending past it is
    /// closed with 1008; false if this frame is refused.
    fn within_rate(&mut self) -> bool {
        if self.rate.check().is_ok() {
            return true;
        }
        if self.strikes.check().is_err() && !self.outbox.is_closing() {
            tracing::warn!(connection = %self.id, "closing a flooding connection");
            self.outbox.close(CloseCode::Policy, "rate limit exceeded");
        }
        false
    }

    /// Every frame with an id gets exactly one ack; a failed frame without one gets an
    /// `error` event.
    fn answer(&self, id: Option<AckId>, result: Result<Reply, Error>) {
        if let Err(err) = &result {
            self.node.metrics.errors.with_label_values(&[err.code().as_str()]).inc();
        }
        match (id, &result) {
            (Some(id), _) => self.push_text(self.framing.ack(&id, &result), "ack"),
            (None, Err(err)) => self.push_text(self.framing.error(err), "error"),
            (None, Ok(_)) => {}
        }
    }

    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        let settings = &self.node.settings;
        if self.last_heard.elapsed() > settings.heartbeat_timeout() {
            // The client is gone: it leaves now, while the writer tries the close frame.
            tracing::info!(connection = %self.id, "heartbeat timeout");
            self.outbox.close(CloseCode::Away, "heartbeat timeout");
            ctx.stop();
            return;
        }
        match self.framing {
            Framing::Native => {
                self.outbox.push(Outbound::Ping);
            }
            // Engine.IO 4 servers ping at the application level, whatever else is sent.
            Framing::SocketIo(EngineVersion::V4) => self.push_text("2".into(), "ping"),
            // Engine.IO 3 clients ping; the server only watches.
            Framing::SocketIo(EngineVersion::V3) => {}
        }
    }
}

/// The rate limiters' clock, made once: making a quanta clock probes the CPU (CPUID), which was
/// 3–4 % of a node's CPU in a reconnect storm when every connection made two.
fn clock() -> QuantaClock {
    static CLOCK: OnceLock<QuantaClock> = OnceLock::new();
    CLOCK.get_or_init(QuantaClock::default).clone()
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

impl Actor for Connection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.node.metrics.connections.inc();
        let node = self.node.clone();
        let settings = &node.settings;
        if let Framing::SocketIo(version) = self.framing {
            let interval = settings.heartbeat_interval().as_millis() as u64;
            let timeout = (settings.heartbeat_timeout() - settings.heartbeat_interval()).as_millis() as u64;
            self.push_text(socketio::open(&self.id.to_string(), interval, timeout, settings.max_frame_bytes), "open");
            if let Some(refusal) = self.refusal.take() {
                // Engine.IO 3 authenticates from the query: refuse the namespace.
                self.push_text(socketio::connect_error(version, "not authorized", &refusal), "connect_error");
            }
            // Unauthenticated, a socket only costs: it gets a short time to log in.
            if self.identity.is_none() {
                ctx.run_later(settings.login_timeout(), |connection, _| {
                    if connection.identity.is_none() {
                        connection.node.metrics.refused.with_label_values(&["login_timeout"]).inc();
                        connection.outbox.close(CloseCode::Policy, "not authenticated in time");
                    }
                });
            }
        }
        self.register(ctx);
        ctx.run_interval(settings.heartbeat_interval(), |connection, ctx| connection.heartbeat(ctx));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.node.metrics.connections.dec();
        if let Some(pid) = self.pid.take() {
            // A task of its own: the store call must finish whatever happens to this actor.
            let services = self.node.services.clone();
            actix::spawn(async move { recovery::release(&services, &pid).await });
        }
        if let Some(identity) = &self.identity {
            self.node.connections.remove(&identity.user, self.id);
            self.node.hub.do_send(Disconnect { user: identity.user.clone(), connection: self.id });
        }
    }
}

/// The session a Socket.IO client asks to recover: `pid` and `offset` in its auth payload.
fn recovery_claim(auth: Option<&Value>) -> Option<Claim> {
    let auth = auth?;
    let pid = auth.get("pid")?.as_str()?.to_owned();
    let offset = auth.get("offset").and_then(Value::as_str).unwrap_or_default().to_owned();
    Some(Claim { pid, offset })
}

/// Connection-level events, answered by the connection itself in every API.
const AUTH_REFRESH: &str = "auth.refresh";
const AUTH_EXPIRING: &str = "auth.expiring";

impl Handler<Kick> for Connection {
    type Result = ();

    fn handle(&mut self, kick: Kick, _: &mut Self::Context) {
        let issued = self.identity.as_ref().and_then(|identity| identity.issued_at);
        // A connection that refreshed to a token issued since keeps going.
        if let (Some(before), Some(issued)) = (kick.issued_before, issued) {
            if issued >= before {
                return;
            }
        }
        self.outbox.close(kick.code, kick.reason);
    }
}

/// A dialect event waiting for its turn.
struct DialectRequest {
    id: Option<AckId>,
    event: String,
    data: Value,
}

/// Runs a dialect connection's requests one at a time, in the order they came: the reply
/// events go out as they are, and an ack (when asked for) carries the first one's payload.
async fn translate_requests(
    dialect: Dialect,
    edge: Edge,
    mut requests: mpsc::Receiver<DialectRequest>,
    outbox: Outbox,
    framing: Framing,
) {
    while let Some(DialectRequest { id, event, data }) = requests.recv().await {
        match dialect::handle(dialect, &edge, &event, data).await {
            Ok(emits) => {
                if let Some(id) = &id {
                    let reply = emits.first().map(|e| e.data.clone()).unwrap_or(Value::Null);
                    outbox.push(Outbound::text(framing.ack_data(id, &reply), "ack"));
                }
                for emit in emits {
                    outbox.push(Outbound::text(framing.event(&emit.event, &emit.data), emit.label()));
                }
            }
            Err(err) => {
                let text = match &id {
                    Some(id) => framing.ack(id, &Err(err)),
                    None => framing.error(&err),
                };
                outbox.push(Outbound::text(text, "error"));
            }
        }
    }
}
