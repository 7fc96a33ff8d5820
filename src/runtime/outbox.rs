//! A connection's outbound queue: bounded, never waited on. A producer that finds it full
//! does not block or grow memory: the connection is closed with 1013 and counted.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};

use actix_ws::{CloseCode, CloseReason};
use bytestring::ByteString;
use futures_util::task::AtomicWaker;

use crate::domain::{ConnectionId, Message, UserId};
use crate::metrics::Metrics;
use crate::wire::Delivery;
use crate::wire::recovery::Positions;

/// Slots a drained queue keeps; a burst that grew it past this gives the rest back.
const KEPT_SLOTS: usize = 16;

/// What a connection's writer sends. Kept to two words: they are a queue's slots.
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

/// What both sides of a queue share. One lock for the queue and nothing preallocated: an idle
/// connection's queue is a few words, and a drained one keeps at most `KEPT_SLOTS`.
struct Shared {
    queue: Mutex<Queue>,
    capacity: usize,
    /// Why the writer should close the socket: set once, the first reason wins.
    close: OnceLock<CloseReason>,
    /// The writer, waiting for a frame or a close.
    writer: AtomicWaker,
}

struct Queue {
    items: VecDeque<Outbound>,
    /// Live `Outbox` handles; none left (and nothing queued) ends the writer.
    senders: usize,
    /// The writer is gone: nothing more is taken.
    receiver_gone: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The sending side of one connection's queue; cheap to clone.
pub struct Outbox {
    pub connection: ConnectionId,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
}

impl Clone for Outbox {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Self { connection: self.connection, shared: self.shared.clone(), metrics: self.metrics.clone() }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let last = {
            let mut queue = self.shared.lock();
            queue.senders -= 1;
            queue.senders == 0
        };
        if last {
            self.shared.writer.wake();
        }
    }
}

/// The receiving side, owned by the connection's writer.
pub struct OutboxReceiver(Arc<Shared>);

/// What the writer takes next.
pub enum Next {
    Frame(Outbound),
    /// A close was asked for; `OutboxReceiver::reason` says why.
    Close,
    /// Every sender is gone and the queue is drained.
    Ended,
}

impl OutboxReceiver {
    /// The next frame, a close (which comes first once asked for) or the end; the waker is
    /// woken when one of them comes.
    pub fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Next> {
        self.0.writer.register(cx.waker());
        if self.0.close.get().is_some() {
            return Poll::Ready(Next::Close);
        }
        let mut queue = self.0.lock();
        match queue.items.pop_front() {
            Some(item) => Poll::Ready(Next::Frame(item)),
            None if queue.senders == 0 => Poll::Ready(Next::Ended),
            None => {
                // Drained: a burst's slots are given back rather than kept for the
                // connection's life.
                if queue.items.capacity() > KEPT_SLOTS {
                    queue.items = VecDeque::new();
                }
                Poll::Pending
            }
        }
    }

    /// Waits for what `poll_next` gives.
    pub async fn next(&self) -> Next {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    /// A queued frame, without waiting (the flush before a close).
    pub fn try_next(&self) -> Option<Outbound> {
        self.0.lock().items.pop_front()
    }

    /// The reason a close was asked for, if it was.
    pub fn reason(&self) -> Option<CloseReason> {
        self.0.close.get().cloned()
    }

    /// Wakes `cx`'s task when a frame or a close comes, without taking anything.
    pub fn register(&self, cx: &Context<'_>) {
        self.0.writer.register(cx.waker());
    }

    /// Drops what is queued (a client too slow to read gets none of it).
    pub fn discard(&self) {
        self.0.lock().items = VecDeque::new();
    }

    /// The code of the close asked for, if one was.
    pub fn close_code(&self) -> Option<CloseCode> {
        self.0.close.get().map(|reason| reason.code)
    }
}

impl Drop for OutboxReceiver {
    fn drop(&mut self) {
        let mut queue = self.0.lock();
        queue.receiver_gone = true;
        queue.items = VecDeque::new();
    }
}

impl Outbox {
    pub fn new(connection: ConnectionId, capacity: usize, metrics: Arc<Metrics>) -> (Self, OutboxReceiver) {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue { items: VecDeque::new(), senders: 1, receiver_gone: false }),
            capacity,
            close: OnceLock::new(),
            writer: AtomicWaker::new(),
        });
        (Self { connection, shared: shared.clone(), metrics }, OutboxReceiver(shared))
    }

    /// Queues a frame; false if the connection is closing or was just found too slow.
    pub fn push(&self, item: Outbound) -> bool {
        if self.is_closing() {
            return false;
        }
        {
            let mut queue = self.shared.lock();
            if queue.receiver_gone {
                return false;
            }
            if queue.items.len() < self.shared.capacity {
                queue.items.push_back(item);
                drop(queue);
                self.shared.writer.wake();
                return true;
            }
        }
        self.metrics.outbound_dropped.inc();
        if self.close(CloseCode::Again, "outbound queue full: reading too slowly") {
            self.metrics.slow_closes.inc();
        }
        false
    }

    /// Asks the writer to close the socket; the first reason wins. True if this call set it.
    pub fn close(&self, code: CloseCode, description: &str) -> bool {
        let set = self.shared.close.set(CloseReason { code, description: Some(description.to_owned()) }).is_ok();
        if set {
            self.shared.writer.wake();
        }
        set
    }

    pub fn is_closing(&self) -> bool {
        self.shared.close.get().is_some()
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
        assert!(matches!(receiver.next().await, Next::Close));
        assert_eq!(receiver.reason().map(|r| r.code), Some(CloseCode::Away));
        assert!(!outbox.push(Outbound::Ping));
    }

    #[tokio::test]
    async fn a_full_queue_closes_as_too_slow_and_takes_nothing_more() {
        let (outbox, receiver) = Outbox::new(ConnectionId::new(), 2, Arc::new(Metrics::new("test")));
        assert!(outbox.push(Outbound::Ping));
        assert!(outbox.push(Outbound::Ping));
        assert!(!outbox.push(Outbound::Ping));
        assert_eq!(receiver.reason().map(|r| r.code), Some(CloseCode::Again));
        assert!(!outbox.push(Outbound::Ping));
        assert!(receiver.try_next().is_some());
        assert!(receiver.try_next().is_some());
        assert!(receiver.try_next().is_none());
    }

    #[tokio::test]
    async fn frames_come_in_order_and_the_last_sender_ends_the_queue() {
        let (outbox, receiver) = Outbox::new(ConnectionId::new(), 8, Arc::new(Metrics::new("test")));
        let other = outbox.clone();
        assert!(outbox.push(Outbound::Ping));
        assert!(other.push(Outbound::text("a", "test")));
        drop(outbox);
        drop(other);
        assert!(matches!(receiver.next().await, Next::Frame(Outbound::Ping)));
        assert!(matches!(receiver.next().await, Next::Frame(Outbound::Text(_))));
        assert!(matches!(receiver.next().await, Next::Ended));
    }

    #[tokio::test]
    async fn a_waiting_writer_is_woken_by_a_push_from_another_thread() {
        let (outbox, receiver) = Outbox::new(ConnectionId::new(), 8, Arc::new(Metrics::new("test")));
        let pusher = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            assert!(outbox.push(Outbound::Ping));
            outbox
        });
        assert!(matches!(receiver.next().await, Next::Frame(Outbound::Ping)));
        let outbox = pusher.join().expect("the pushing thread ran");
        drop(receiver);
        assert!(!outbox.push(Outbound::Ping));
    }
}
