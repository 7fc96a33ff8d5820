//! A connection's writer: drains its outbox into the socket, encoding each push for the
//! connection's framing and API, and closes the socket when asked.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix_ws::{CloseCode, Session as WsSession};

use super::outbox::{Next, OutboxReceiver};
use super::{Outbound, RecoveryStart};
use crate::dialect::{self, Lookup};
use crate::domain::UserId;
use crate::metrics::Metrics;
use crate::service::{Services, recovery};
use crate::wire::recovery::{Positions, with_offset};
use crate::wire::{Api, Delivery, Framing, Push};

/// How long a closing connection may take to flush its queue and close frame to a client
/// that is not reading, before the socket is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Drains the outbox into the socket until a close is asked for, then (except for a slow
/// reader, whose queue is dropped) flushes what is queued and sends the close frame.
pub(super) async fn write_frames(mut session: WsSession, receiver: OutboxReceiver, metrics: Arc<Metrics>, wire: Wire) {
    let mut state = WriterState { recovery: None };
    while let Next::Frame(item) = receiver.next().await {
        tokio::select! {
            biased;
            () = receiver.closing() => break,
            // Boxed: held inline, its state machine would make every idle writer ~7 KB.
            sent = Box::pin(send(&mut session, item, &metrics, &wire, &mut state)) => if sent.is_err() { return },
        }
    }
    // Boxed: only a closing writer holds the close's timer and state.
    Box::pin(close(session, receiver, metrics, wire, state)).await;
}

/// Flushes what is queued (unless the client was too slow to read it) and sends the close
/// frame, giving up after `CLOSE_TIMEOUT`.
async fn close(
    mut session: WsSession,
    receiver: OutboxReceiver,
    metrics: Arc<Metrics>,
    wire: Wire,
    mut state: WriterState,
) {
    let reason = receiver.reason();
    let flush = async {
        if reason.as_ref().is_some_and(|r| r.code != CloseCode::Again) {
            while let Some(item) = receiver.try_next() {
                if Box::pin(send(&mut session, item, &metrics, &wire, &mut state)).await.is_err() {
                    return;
                }
            }
        }
        let _ = session.close(reason).await;
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, flush).await;
}

/// How a connection's pushes reach the wire: its framing and, once connected, its API.
pub(super) struct Wire {
    pub(super) framing: Framing,
    /// Set when the connection registers (a Socket.IO client names its API in the connect
    /// packet, after the writer has started); no push arrives before.
    pub(super) api: Arc<OnceLock<Api>>,
    pub(super) lookup: Lookup,
    pub(super) services: Arc<Services>,
}

/// A recoverable Socket.IO connection's session as its writer keeps it.
struct Session {
    user: UserId,
    positions: Positions,
}

/// What the writer keeps between frames.
pub(super) struct WriterState {
    recovery: Option<Session>,
}

async fn send(
    socket: &mut WsSession,
    item: Outbound,
    metrics: &Metrics,
    wire: &Wire,
    state: &mut WriterState,
) -> Result<(), actix_ws::Closed> {
    match item {
        Outbound::Push(delivery) => send_push(socket, &delivery, metrics, wire, state).await,
        Outbound::Text(frame) => {
            metrics.frames_out.with_label_values(&[frame.event]).inc();
            match &mut state.recovery {
                Some(session) if frame.text.starts_with("42[") => {
                    socket.text(with_offset(&frame.text, session.positions.offset())).await
                }
                _ => socket.text(frame.text).await,
            }
        }
        Outbound::Ping => socket.ping(b"").await,
        Outbound::Pong(bytes) => socket.pong(&bytes).await,
        Outbound::Recovery(start) => {
            let RecoveryStart { user, positions, missed } = *start;
            state.recovery = Some(Session { user, positions });
            for message in missed {
                metrics.socketio_replayed.inc();
                let delivery = Delivery::new(Push::MessageNew { message });
                send_push(socket, &delivery, metrics, wire, state).await?;
            }
            Ok(())
        }
        Outbound::Seen(delivery) => {
            if let (Some(session), Push::MessageNew { message }) = (&mut state.recovery, &delivery.push) {
                session.positions.advance(message.room_id, message.seq);
            }
            Ok(())
        }
    }
}

/// A push, unless the session already delivered it; a `message.new` past a gap in what the
/// session delivered in its room is preceded by the missing ones, read from the store.
async fn send_push(
    socket: &mut WsSession,
    delivery: &Delivery,
    metrics: &Metrics,
    wire: &Wire,
    state: &mut WriterState,
) -> Result<(), actix_ws::Closed> {
    let (Some(session), Push::MessageNew { message }) = (&mut state.recovery, &delivery.push) else {
        let offset = state.recovery.as_mut().map(|session| session.positions.offset());
        return write_push(socket, delivery, metrics, wire, offset).await;
    };
    let known = session.positions.known(&message.room_id);
    if known.is_some_and(|known| message.seq <= known) {
        return Ok(());
    }
    if let Some(known) = known.filter(|known| message.seq > known + 1) {
        for missing in recovery::gap(&wire.services, &session.user, message.room_id, known, message.seq).await {
            session.positions.advance(missing.room_id, missing.seq);
            let filled = Delivery::new(Push::MessageNew { message: missing });
            write_push(socket, &filled, metrics, wire, Some(session.positions.offset())).await?;
        }
    }
    session.positions.advance(message.room_id, message.seq);
    write_push(socket, delivery, metrics, wire, Some(session.positions.offset())).await
}

/// Writes a push in the connection's API, each event with `offset` when it has one.
async fn write_push(
    socket: &mut WsSession,
    delivery: &Delivery,
    metrics: &Metrics,
    wire: &Wire,
    offset: Option<&str>,
) -> Result<(), actix_ws::Closed> {
    let Some(dialect) = wire.api.get().copied().unwrap_or(Api::Native).dialect() else {
        metrics.frames_out.with_label_values(&[delivery.push.event()]).inc();
        let text = wire.framing.push(delivery);
        return match offset {
            Some(offset) => socket.text(with_offset(&text, offset)).await,
            None => socket.text(text).await,
        };
    };
    // Boxed: the translation's lookups would otherwise size every idle connection's writer
    // for them.
    let translation = dialect::push(dialect, &wire.lookup, &delivery.push);
    let emits = match Box::pin(delivery.translated(dialect, translation)).await {
        Ok(emits) => emits,
        Err(err) => {
            // The client recovers a lost push from history; the connection goes on.
            tracing::warn!(error = %err, event = delivery.push.event(), "could not translate a push");
            return Ok(());
        }
    };
    for emit in emits {
        metrics.frames_out.with_label_values(&[emit.label()]).inc();
        let text = wire.framing.event(&emit.event, &emit.data);
        match offset {
            Some(offset) => socket.text(with_offset(&text, offset)).await?,
            None => socket.text(text).await?,
        }
    }
    Ok(())
}
