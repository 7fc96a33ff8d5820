//! A connection's writer: drains its outbox into the socket, encoding each push for the
//! connection's framing and API, and closes the socket when asked.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix_ws::{CloseCode, Session};

use super::Outbound;
use super::outbox::OutboxReceiver;
use crate::dialect::{self, Lookup};
use crate::metrics::Metrics;
use crate::wire::{Api, Framing};

/// How long a closing connection may take to flush its queue and close frame to a client
/// that is not reading, before the socket is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Drains the outbox into the socket until a close is asked for, then (except for a slow
/// reader, whose queue is dropped) flushes what is queued and sends the close frame.
pub(super) async fn write_frames(
    mut session: Session,
    mut receiver: OutboxReceiver,
    metrics: Arc<Metrics>,
    wire: Wire,
) {
    loop {
        let item = tokio::select! {
            biased;
            _ = receiver.close.closing() => break,
            item = receiver.queue.recv() => item,
        };
        let Some(item) = item else { break };
        tokio::select! {
            biased;
            _ = receiver.close.closing() => break,
            sent = send(&mut session, item, &metrics, &wire) => if sent.is_err() { return },
        }
    }
    let reason = receiver.close.reason();
    let flush = async {
        if reason.as_ref().is_some_and(|r| r.code != CloseCode::Again) {
            while let Ok(item) = receiver.queue.try_recv() {
                if send(&mut session, item, &metrics, &wire).await.is_err() {
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
}

async fn send(session: &mut Session, item: Outbound, metrics: &Metrics, wire: &Wire) -> Result<(), actix_ws::Closed> {
    match item {
        Outbound::Push(delivery) => match wire.api.get().copied().unwrap_or(Api::Native).dialect() {
            None => {
                metrics.frames_out.with_label_values(&[delivery.push.event()]).inc();
                session.text(wire.framing.push(&delivery)).await
            }
            Some(dialect) => {
                // Boxed: the translation's lookups would otherwise size every idle
                // connection's writer for them.
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
                    session.text(wire.framing.event(&emit.event, &emit.data)).await?;
                }
                Ok(())
            }
        },
        Outbound::Text(frame) => {
            metrics.frames_out.with_label_values(&[frame.event]).inc();
            session.text(frame.text).await
        }
        Outbound::Ping => session.ping(b"").await,
        Outbound::Pong(bytes) => session.pong(&bytes).await,
    }
}
