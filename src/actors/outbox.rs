//! A connection's outbound queue: bounded, never waited on. A producer that finds it full
//! does not block or grow memory: the connection is closed with 1013 and counted.

use std::sync::Arc;

use actix_ws::{CloseCode, CloseReason};
use bytestring::ByteString;
use tokio::sync::{mpsc, watch};

use crate::domain::ConnectionId;
use crate::metrics::Metrics;
use crate::protocol::Delivery;

/// What a connection's writer sends.
#[derive(Debug)]
pub enum Outbound {
    Push(Arc<Delivery>),
    /// A frame already encoded for this connection (acks, errors, hello), with its event name
    /// for metrics.
    Text {
        text: ByteString,
        event: &'static str,
    },
    Ping,
    Pong(actix_web::web::Bytes),
}

/// The sending side of one connection's queue; cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    pub connection: ConnectionId,
    queue: mpsc::Sender<Outbound>,
    close: Arc<watch::Sender<Option<CloseReason>>>,
    metrics: Arc<Metrics>,
}

/// The receiving side, owned by the connection's writer.
pub struct OutboxReceiver {
    pub queue: mpsc::Receiver<Outbound>,
    pub close: watch::Receiver<Option<CloseReason>>,
}

impl Outbox {
    pub fn new(connection: ConnectionId, capacity: usize, metrics: Arc<Metrics>) -> (Self, OutboxReceiver) {
        let (queue, queue_rx) = mpsc::channel(capacity);
        let (close, close_rx) = watch::channel(None);
        (
            Self { connection, queue, close: Arc::new(close), metrics },
            OutboxReceiver { queue: queue_rx, close: close_rx },
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
        self.close.send_if_modified(|reason| {
            if reason.is_some() {
                return false;
            }
            *reason = Some(CloseReason { code, description: Some(description.to_owned()) });
            true
        })
    }

    pub fn is_closing(&self) -> bool {
        self.close.borrow().is_some()
    }
}
