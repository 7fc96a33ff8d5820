//! The connection actor: one per WebSocket. It owns the socket: reads frames, parses them at
//! the edge into typed commands, enforces the per-connection limits, and runs a writer that
//! drains the connection's bounded outbox into the socket.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, ProtocolError, Session};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::hub::{Connect, Disconnect};
use super::outbox::OutboxReceiver;
use super::{Caller, Outbound, Outbox, Services, commands};
use crate::auth::Identity;
use crate::domain::{ConnectionId, Error};
use crate::metrics::Metrics;
use crate::protocol::{Reply, native};

/// How long a closing connection may take to flush its queue and close frame to a client
/// that is not reading, before the socket is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Connection {
    id: ConnectionId,
    identity: Identity,
    services: Arc<Services>,
    outbox: Outbox,
    writer: Option<(Session, OutboxReceiver)>,
    rate: DefaultDirectRateLimiter,
    /// Rate-limited frames tolerated per 10 s before the connection counts as a flood.
    strikes: DefaultDirectRateLimiter,
    last_heard: Instant,
}

impl Connection {
    /// Starts the actor for an upgraded socket.
    pub fn start(identity: Identity, services: Arc<Services>, session: Session, stream: AggregatedMessageStream) {
        let settings = &services.settings;
        let id = ConnectionId::new();
        let (outbox, receiver) = Outbox::new(id, settings.outbound_queue, services.metrics.clone());
        let rate = RateLimiter::direct(
            Quota::per_second(nonzero(settings.rate_per_sec)).allow_burst(nonzero(settings.rate_burst)),
        );
        let strikes = RateLimiter::direct(
            Quota::with_period(Duration::from_secs(10) / settings.flood_strikes)
                .expect("flood_strikes is validated positive")
                .allow_burst(nonzero(settings.flood_strikes)),
        );
        Connection::create(move |ctx| {
            ctx.add_stream(stream);
            Connection {
                id,
                identity,
                services,
                outbox,
                writer: Some((session, receiver)),
                rate,
                strikes,
                last_heard: Instant::now(),
            }
        });
    }

    fn caller(&self) -> Caller {
        Caller { user: self.identity.user.clone(), connection: self.id }
    }

    fn on_text(&mut self, text: &str, ctx: &mut Context<Self>) {
        let metrics = self.services.metrics.clone();
        if !self.within_rate() {
            let id = native::decode(text, &self.identity.user).id;
            metrics.frames_in.with_label_values(&["rate_limited"]).inc();
            return self.answer(id, Err(Error::RateLimited));
        }
        let inbound = native::decode(text, &self.identity.user);
        let command = match inbound.command {
            Ok(command) => command,
            Err(err) => {
                metrics.frames_in.with_label_values(&["invalid"]).inc();
                return self.answer(inbound.id, Err(err));
            }
        };
        metrics.frames_in.with_label_values(&[command.event()]).inc();
        let id = inbound.id;
        // Started now, awaited later: a connection's commands reach their room in the order
        // they were sent, while their replies may come back in any order.
        let reply = commands::execute(self.services.clone(), self.caller(), command);
        ctx.spawn(reply.into_actor(self).map(move |result, connection, _| connection.answer(id, result)));
    }

    /// Counts a frame against the rate limit. A connection that keeps sending past it is
    /// closed with 1008; false if this frame is refused.
    fn within_rate(&mut self) -> bool {
        if self.rate.check().is_ok() {
            return true;
        }
        if self.strikes.check().is_err() {
            tracing::warn!(user = %self.identity.user, connection = %self.id, "closing a flooding connection");
            self.outbox.close(CloseCode::Policy, "rate limit exceeded");
        }
        false
    }

    /// Every frame with an id gets exactly one ack; a failed frame without one gets an
    /// `error` event.
    fn answer(&self, id: Option<serde_json::Number>, result: Result<Reply, Error>) {
        if let Err(err) = &result {
            self.services.metrics.errors.with_label_values(&[err.code().as_str()]).inc();
        }
        let frame = match (id, &result) {
            (Some(id), _) => Outbound::Text { text: native::encode_ack(&id, &result).into(), event: "ack" },
            (None, Err(err)) => Outbound::Text { text: native::encode_error(err).into(), event: "error" },
            (None, Ok(_)) => return,
        };
        self.outbox.push(frame);
    }
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

impl Actor for Connection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.services.metrics.connections.inc();
        let (session, receiver) = self.writer.take().expect("writer parts are set at creation");
        let metrics = self.services.metrics.clone();
        // The writer runs beside the actor; when it ends (closed, or the client is gone)
        // the actor stops.
        ctx.spawn(write_frames(session, receiver, metrics).into_actor(self).map(|_, _, ctx| ctx.stop()));

        let connect = self.services.hub.send(Connect { identity: self.identity.clone(), outbox: self.outbox.clone() });
        // No frame is read before the connection is registered and has had its hello.
        ctx.wait(connect.into_actor(self).map(|registered, connection, _| {
            if !matches!(registered, Ok(Ok(()))) {
                tracing::error!(user = %connection.identity.user, "could not register connection");
                connection.outbox.close(CloseCode::Error, "server error: please reconnect");
            }
        }));

        let settings = &self.services.settings;
        let timeout = settings.heartbeat_timeout();
        ctx.run_interval(settings.heartbeat_interval(), move |connection, _| {
            if connection.last_heard.elapsed() > timeout {
                tracing::info!(user = %connection.identity.user, "heartbeat timeout");
                connection.outbox.close(CloseCode::Away, "heartbeat timeout");
            } else {
                connection.outbox.push(Outbound::Ping);
            }
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.services.metrics.connections.dec();
        self.services.hub.do_send(Disconnect { user: self.identity.user.clone(), connection: self.id });
    }
}

impl StreamHandler<Result<AggregatedMessage, ProtocolError>> for Connection {
    fn handle(&mut self, item: Result<AggregatedMessage, ProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        match item {
            Ok(AggregatedMessage::Text(text)) => self.on_text(&text, ctx),
            Ok(AggregatedMessage::Binary(_)) => {
                let refusal = if self.within_rate() {
                    Error::bad_request("binary frames are not supported: send JSON text frames")
                } else {
                    Error::RateLimited
                };
                self.answer(None, Err(refusal))
            }
            Ok(AggregatedMessage::Ping(bytes)) => {
                self.outbox.push(Outbound::Pong(bytes));
            }
            Ok(AggregatedMessage::Pong(_)) => {}
            Ok(AggregatedMessage::Close(_)) => {
                self.outbox.close(CloseCode::Normal, "goodbye");
            }
            Err(ProtocolError::Io(e)) if e.to_string().contains("maximum continuation size") => {
                let limit = self.services.settings.max_frame_bytes;
                self.outbox.close(CloseCode::Size, &format!("message over {limit} bytes"));
            }
            Err(ProtocolError::Overflow) => {
                let limit = self.services.settings.max_frame_bytes;
                self.outbox.close(CloseCode::Size, &format!("frame over {limit} bytes"));
            }
            Err(err) => {
                tracing::debug!(error = %err, "websocket protocol error");
                self.outbox.close(CloseCode::Protocol, "websocket protocol error");
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        // A closing connection stops when its writer has sent the close frame.
        if !self.outbox.is_closing() {
            ctx.stop();
        }
    }
}

/// Drains the outbox into the socket until a close is asked for, then (except for a slow
/// reader, whose queue is dropped) flushes what is queued and sends the close frame.
async fn write_frames(mut session: Session, mut receiver: OutboxReceiver, metrics: Arc<Metrics>) {
    loop {
        let item = tokio::select! {
            biased;
            _ = receiver.close.changed() => break,
            item = receiver.queue.recv() => item,
        };
        let Some(item) = item else { break };
        tokio::select! {
            biased;
            _ = receiver.close.changed() => break,
            sent = send(&mut session, item, &metrics) => if sent.is_err() { return },
        }
    }
    let reason = receiver.close.borrow().clone();
    let flush = async {
        if reason.as_ref().is_some_and(|r| r.code != CloseCode::Again) {
            while let Ok(item) = receiver.queue.try_recv() {
                if send(&mut session, item, &metrics).await.is_err() {
                    return;
                }
            }
        }
        let _ = session.close(reason).await;
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, flush).await;
}

async fn send(session: &mut Session, item: Outbound, metrics: &Metrics) -> Result<(), actix_ws::Closed> {
    match item {
        Outbound::Push(delivery) => {
            metrics.frames_out.with_label_values(&[delivery.push.event()]).inc();
            session.text(delivery.native_text()).await
        }
        Outbound::Text { text, event } => {
            metrics.frames_out.with_label_values(&[event]).inc();
            session.text(text).await
        }
        Outbound::Ping => session.ping(b"").await,
        Outbound::Pong(bytes) => session.pong(&bytes).await,
    }
}
