//! Webhooks from the use cases: [`emit`] and [`message_sent`] hand an event to this node's
//! bounded queue and return at once; one task per node turns what is queued into outbox rows
//! in batches (`store::webhooks`), where delivery (`runtime::webhooks`) finds them. A full
//! queue drops the event, counted and logged: webhooks never slow a sender nor grow memory.
//! With webhooks off (no URL) or an event type not enabled, nothing is queued at all.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, oneshot};

use super::Services;
use crate::config::Settings;
use crate::domain::{CallId, Error, EventType, Media, Message, MessageKind, RequestKind, RoomId, Timestamp, UserId};
use crate::metrics::Metrics;
use crate::presence::PresenceDirectory;
use crate::store::{Collapse, NewWebhook, RoomMembers, Store, collapse_key};

/// Events waiting to be written; each sent message is one item, whatever its room's size.
const QUEUE: usize = 8192;
/// Most items written to the outbox together.
const BATCH: usize = 512;
/// Tries at writing a batch while the database is out of reach, a second apart.
const WRITE_TRIES: u32 = 3;

/// An event the use cases announce (`message.offline` has [`message_sent`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A follow or friend request was made.
    FollowRequest {
        from: UserId,
        to: UserId,
        kind: RequestKind,
    },
    /// Two users liked each other; their direct room.
    MatchCreated {
        users: [UserId; 2],
        room: RoomId,
    },
    /// A callee did not answer before the ring timeout.
    CallMissed {
        call: CallId,
        caller: UserId,
        callee: UserId,
        media: Media,
    },
    ReportCreated {
        reporter: UserId,
        reported: UserId,
        reason: String,
        room: Option<RoomId>,
        message: Option<String>,
    },
    /// First connection anywhere.
    UserOnline {
        user: UserId,
        at: Timestamp,
    },
    /// Last connection anywhere gone (or the node holding it died).
    UserOffline {
        user: UserId,
        at: Timestamp,
    },
}

impl Event {
    pub fn event_type(&self) -> EventType {
        match self {
            Event::FollowRequest { .. } => EventType::FollowRequest,
            Event::MatchCreated { .. } => EventType::MatchCreated,
            Event::CallMissed { .. } => EventType::CallMissed,
            Event::ReportCreated { .. } => EventType::ReportCreated,
            Event::UserOnline { .. } => EventType::UserOnline,
            Event::UserOffline { .. } => EventType::UserOffline,
        }
    }

    /// The body's `data`.
    pub fn data(&self) -> Value {
        match self {
            Event::FollowRequest { from, to, kind } => json!({"from": from, "to": to, "kind": kind.as_str()}),
            Event::MatchCreated { users, room } => json!({"user_ids": users, "room_id": room}),
            Event::CallMissed { call, caller, callee, media } => {
                json!({"call_id": call, "caller_id": caller, "callee_id": callee, "media": media})
            }
            Event::ReportCreated { reporter, reported, reason, room, message } => json!({
                "reporter_id": reporter, "reported_id": reported, "reason": reason,
                "room_id": room, "message_id": message,
            }),
            Event::UserOnline { user, at } | Event::UserOffline { user, at } => json!({"user_id": user, "at": at}),
        }
    }
}

/// A committed message, as much of it as `message.offline` needs.
#[derive(Debug, Clone)]
struct Sent {
    room: RoomId,
    id: String,
    seq: i64,
    sender: UserId,
    kind: MessageKind,
    preview: Option<String>,
}

enum Queued {
    Event(Event),
    Message(Sent),
    /// Answered once everything queued before it is written.
    Flush(oneshot::Sender<()>),
}

/// This node's webhook queue; inert when webhooks are off.
pub struct Webhooks {
    on: Option<On>,
}

struct On {
    queue: mpsc::Sender<Queued>,
    enabled: BTreeSet<EventType>,
    preview_chars: usize,
    metrics: Arc<Metrics>,
    /// Set while the queue is full, so a burst of drops logs once.
    overflowing: AtomicBool,
    /// Woken when an event due now was written.
    written: Arc<Notify>,
}

impl Webhooks {
    /// Starts the task that writes queued events to the outbox (none when webhooks are off).
    pub fn start(
        settings: &Settings,
        store: Store,
        presence: Arc<dyn PresenceDirectory>,
        metrics: Arc<Metrics>,
    ) -> Self {
        if !settings.webhooks_on() {
            return Self { on: None };
        }
        let (queue, queued) = mpsc::channel(QUEUE);
        let written = Arc::new(Notify::new());
        let writer = Writer {
            store,
            presence,
            metrics: metrics.clone(),
            window: Duration::from_millis(settings.webhook_collapse_ms),
            written: written.clone(),
        };
        tokio::spawn(writer.run(queued));
        let (enabled, preview_chars) = (settings.webhook_events.clone(), settings.push_preview_chars);
        let on = On { queue, enabled, preview_chars, metrics, overflowing: AtomicBool::new(false), written };
        Self { on: Some(on) }
    }

    /// Webhooks that never send anything.
    pub fn off() -> Self {
        Self { on: None }
    }

    /// Whether events of this type are sent.
    pub fn wants(&self, event_type: EventType) -> bool {
        self.on.as_ref().is_some_and(|on| on.enabled.contains(&event_type))
    }

    /// Notified when events due now reach the outbox; `None` when webhooks are off.
    pub fn written(&self) -> Option<Arc<Notify>> {
        self.on.as_ref().map(|on| on.written.clone())
    }

    /// Waits until everything queued so far is in the outbox (or given up on).
    pub async fn flush(&self) {
        let Some(on) = &self.on else { return };
        let (done, flushed) = oneshot::channel();
        if on.queue.send(Queued::Flush(done)).await.is_ok() {
            let _ = flushed.await;
        }
    }

    fn enqueue(&self, item: Queued) {
        let Some(on) = &self.on else { return };
        match on.queue.try_send(item) {
            Ok(()) => {
                if on.overflowing.swap(false, Ordering::Relaxed) {
                    tracing::info!("the webhook queue takes events again");
                }
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                on.metrics.webhooks.dropped.with_label_values(&["queue_full"]).inc();
                if !on.overflowing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(capacity = QUEUE, "the webhook queue is full: events are dropped until it drains");
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                on.metrics.webhooks.dropped.with_label_values(&["store"]).inc();
            }
        }
    }
}

/// Announces `event` to the app's back end, if its type is enabled. Returns at once.
pub fn emit(services: &Services, event: Event) {
    if services.webhooks.wants(event.event_type()) {
        services.webhooks.enqueue(Queued::Event(event));
    }
}

/// A message was committed (not a resend): its room's members with no live connection
/// anywhere, the sender aside, get a `message.offline`, collapsed per recipient and room.
/// Returns at once; members and presence are looked up by the writer task.
pub fn message_sent(services: &Services, message: &Message) {
    let webhooks = &services.webhooks;
    let Some(on) = webhooks.on.as_ref().filter(|_| webhooks.wants(EventType::MessageOffline)) else {
        return;
    };
    let sent = Sent {
        room: message.room_id,
        id: message.id.clone(),
        seq: message.seq,
        sender: message.sender_id.clone(),
        kind: message.kind,
        preview: preview(message.kind, &message.body, on.preview_chars),
    };
    webhooks.enqueue(Queued::Message(sent));
}

/// The first `chars` characters of a text body; none for media or when `chars` is 0.
fn preview(kind: MessageKind, body: &str, chars: usize) -> Option<String> {
    let text = matches!(kind, MessageKind::Text | MessageKind::System);
    (text && chars > 0).then(|| body.chars().take(chars).collect())
}

/// The task that writes queued events to the outbox.
struct Writer {
    store: Store,
    presence: Arc<dyn PresenceDirectory>,
    metrics: Arc<Metrics>,
    window: Duration,
    written: Arc<Notify>,
}

impl Writer {
    async fn run(self, mut queued: mpsc::Receiver<Queued>) {
        let mut batch = Vec::with_capacity(BATCH);
        while queued.recv_many(&mut batch, BATCH).await > 0 {
            let (mut rows, mut sent, mut flushed) = (Vec::new(), Vec::new(), Vec::new());
            for item in batch.drain(..) {
                match item {
                    Queued::Event(event) => {
                        rows.push(NewWebhook { event_type: event.event_type(), data: event.data(), collapse: None })
                    }
                    Queued::Message(message) => sent.push(message),
                    Queued::Flush(done) => flushed.push(done),
                }
            }
            let due_now = !rows.is_empty();
            match self.offline(&sent).await {
                Ok(offline) => rows.extend(offline),
                Err(e) => {
                    tracing::warn!(error = %e, messages = sent.len(), "message.offline recipients not found");
                    self.metrics.webhooks.dropped.with_label_values(&["store"]).inc_by(sent.len() as u64);
                }
            }
            self.write(&rows).await;
            if due_now {
                self.written.notify_one();
            }
            for done in flushed {
                let _ = done.send(());
            }
        }
    }

    /// The `message.offline` rows for a batch of sent messages: one per recipient and room,
    /// counting that recipient's messages in the batch, with the newest one.
    async fn offline(&self, sent: &[Sent]) -> Result<Vec<NewWebhook>, Error> {
        if sent.is_empty() {
            return Ok(Vec::new());
        }
        let rooms: Vec<RoomId> = sent.iter().map(|m| m.room).collect::<HashSet<_>>().into_iter().collect();
        let members = self.store.room_members_many(&rooms).await?;
        let candidates: HashSet<UserId> = sent.iter().flat_map(|m| recipients(&members, m)).cloned().collect();
        let online = self.presence.online_among(candidates.into_iter().collect()).await?;
        let mut folded: HashMap<String, (i32, &Sent, UserId)> = HashMap::new();
        for message in sent {
            for user in recipients(&members, message).filter(|user| !online.contains(*user)) {
                let entry = folded.entry(collapse_key(user, message.room)).or_insert((0, message, user.clone()));
                entry.0 += 1;
                if message.seq >= entry.1.seq {
                    entry.1 = message;
                }
            }
        }
        let row = |(key, (count, message, recipient)): (String, (i32, &Sent, UserId))| {
            let kind = members.get(&message.room).map(|room| room.kind.as_str());
            let data = json!({
                "recipient_id": recipient, "room_id": message.room, "room_kind": kind,
                "message": {
                    "id": message.id, "seq": message.seq, "sender_id": message.sender,
                    "kind": message.kind.as_str(), "preview": message.preview,
                },
            });
            let collapse = Some(Collapse { key, count, window: self.window });
            NewWebhook { event_type: EventType::MessageOffline, data, collapse }
        };
        Ok(folded.into_iter().map(row).collect())
    }

    /// Writes rows to the outbox, trying again while the database is out of reach; rows it
    /// could not write are counted as dropped.
    async fn write(&self, rows: &[NewWebhook]) {
        for attempt in 1..=WRITE_TRIES {
            match self.store.enqueue_webhooks(rows).await {
                Ok(()) => return,
                Err(e) if e.out_of_reach() && attempt < WRITE_TRIES => {
                    tracing::warn!(error = %e, "webhook outbox unreachable; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, events = rows.len(), "webhook events dropped: the outbox refused them");
                    self.metrics.webhooks.dropped.with_label_values(&["store"]).inc_by(rows.len() as u64);
                    return;
                }
            }
        }
    }
}

/// The members of a message's room but its sender.
fn recipients<'a>(members: &'a HashMap<RoomId, RoomMembers>, message: &'a Sent) -> impl Iterator<Item = &'a UserId> {
    let room = members.get(&message.room);
    room.into_iter().flat_map(|room| room.members.iter()).filter(|user| **user != message.sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_are_text_only_and_cut_by_characters() {
        assert_eq!(preview(MessageKind::Text, "héllo wörld", 5).as_deref(), Some("héllo"));
        assert_eq!(preview(MessageKind::Text, "hi", 100).as_deref(), Some("hi"));
        assert_eq!(preview(MessageKind::Text, "hi", 0), None);
        assert_eq!(preview(MessageKind::Image, "https://x/y.png", 100), None);
    }

    #[test]
    fn event_data_follows_the_contract() {
        let user = |id: &str| UserId::parse(id).unwrap();
        let report = Event::ReportCreated {
            reporter: user("a"),
            reported: user("b"),
            reason: "spam".into(),
            room: None,
            message: Some("m1".into()),
        };
        assert_eq!(report.event_type().as_str(), "report.created");
        assert_eq!(
            report.data(),
            json!({"reporter_id": "a", "reported_id": "b", "reason": "spam", "room_id": null, "message_id": "m1"})
        );
        let follow = Event::FollowRequest { from: user("a"), to: user("b"), kind: RequestKind::Friend };
        assert_eq!(follow.data(), json!({"from": "a", "to": "b", "kind": "friend"}));
        let online = Event::UserOnline { user: user("a"), at: Timestamp::from_millis(0) };
        assert_eq!(online.data(), json!({"user_id": "a", "at": "1970-01-01T00:00:00.000Z"}));
    }
}
