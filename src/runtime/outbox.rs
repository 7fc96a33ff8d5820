//! A connection's outbound queue: bounded, never waited on. A producer that finds it full
//! does not block or grow memory: the connection is closed with 1013 and counted.

use std::sync::{Arc, OnceLock};

use actix_ws::{CloseCode, CloseReason};
use bytestring::ByteString;
use tokio::sync::{Notify, mpsc};

use crate::domain::{ConnectionId, Message, UserId};
use crate::metrics::Metrics;
use crate::wire::Delivery;
use crate::wire::recovery::Positions;

/// What a connection's writer sends. Kept to two words: the queue preallocates its slots
/// (tokio allocates 32 at a time) for every connection, idle ones included.
#[derive(Debug)]
pub enum Outbound {
    Push(Arc<Delivery>),
    /// A frame already encoded for this connection (acks, errors, hello).
    Text(Box<Encoded>),
    Ping,
    Pong(Box<actix_web::web::Bytes>),
    /// A Socket.IO session's start: where the client stands and what it missed; from then on
    /// every event carries the session's offset.
    Recovery(Box<RecoveryStart>),
    /// A `message.new` this connection is not sent (it sent the message and gets the ack),
    /// counted as delivered for its session's offset.
    Seen(Arc<Delivery>),
}

/// The state a recoverable Socket.IO connection's writer starts from.
#[derive(Debug)]
pub struct RecoveryStart {
    pub user: UserId,
    pub positions: Positions,
    /// Replayed first, each room's in seq order.
    pub missed: Vec<Message>,
}

/// A frame encoded for one connection, with its event name for metrics.
#[derive(Debug)]
pub struct Encoded {
    pub text: ByteString,
    pub event: &'static str,
}

impl Outbound {
    pub fn text(text: impl Into<ByteString>, event: &'static str) -> Self {
        Self::Text(Box::new(Encoded { text: text.into(), event }))
    }
}

/// Why and when the writer should close the socket: set once, the first reason wins.
#[derive(Default)]
struct CloseSignal {
    reason: OnceLock<CloseReason>,
    /// One waiter (the writer); a notification sent while it is busy is kept for it.
    notify: Notify,
}

/// The sending side of one connection's queue; cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    pub connection: ConnectionId,
    queue: mpsc::Sender<Outbound>,
    close: Arc<CloseSignal>,
    metrics: Arc<Metrics>,
}

/// The receiving side, owned by the connection's writer.
pub struct OutboxReceiver {
    pub queue: mpsc::Receiver<Outbound>,
    pub close: CloseWatch,
}

/// The writer's view of the close signal.
pub struct CloseWatch(Arc<CloseSignal>);

impl CloseWatch {
    /// Resolves once a close is asked for (at once if it already was).
    pub async fn closing(&self) {
        while self.0.reason.get().is_none() {
            self.0.notify.notified().await;
        }
    }

    /// The reason a close was asked for, if it was.
    pub fn reason(&self) -> Option<CloseReason> {
        self.0.reason.get().cloned()
    }
}

impl Outbox {
    pub fn new(connection: ConnectionId, capacity: usize, metrics: Arc<Metrics>) -> (Self, OutboxReceiver) {
        let (queue, queue_rx) = mpsc::channel(capacity);
        let close = Arc::new(CloseSignal::default());
        (
            Self { connection, queue, close: close.clone(), metrics },
            OutboxReceiver { queue: queue_rx, close: CloseWatch(close) },
        )
    }

    /// Queues a frame; false if the connection is closing or was just found too slow.
    pub fn push(&self, item: Outbound) -> bool {
        if self.is_closing() {
            return false;
        }
        match self.queue.try_send(item) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics.outbound_dropped.inc();
                if self.close(CloseCode::Again, "outbound queue full: reading too slowly") {
                    self.metrics.slow_closes.inc();
                }
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Asks the writer to close the socket; the first reason wins. True if this call set it.
    pub fn close(&self, code: CloseCode, description: &str) -> bool {
        let set = self.close.reason.set(CloseReason { code, description: Some(description.to_owned()) }).is_ok();
        if set {
            self.close.notify.notify_one();
        }
        set
    }

    pub fn is_closing(&self) -> bool {
        self.close.reason.get().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queued_frame_stays_two_words() {
        assert_eq!(std::mem::size_of::<Outbound>(), 16);
    }

    #[tokio::test]
    async fn a_close_asked_before_the_writer_waits_is_not_missed() {
        let (outbox, receiver) = Outbox::new(ConnectionId::new(), 4, Arc::new(Metrics::new("test")));
        assert!(outbox.close(CloseCode::Away, "first"));
        assert!(!outbox.close(CloseCode::Normal, "second"));
        receiver.close.closing().await;
        assert_eq!(receiver.close.reason().map(|r| r.code), Some(CloseCode::Away));
        assert!(!outbox.push(Outbound::Ping));
    }
}
