//! The Redis bus: nodes bridged by Redis pub/sub with targeted delivery. A node subscribes
//! only to the channels of the users and rooms it holds, so an event costs only the nodes
//! that hold a recipient. Local sinks get the event at once (same-node delivery goes on
//! while Redis is down); copies coming back from Redis with this node's origin are dropped.
//!
//! Subscriptions survive reconnects: the manager resubscribes by itself, and on every
//! disconnection this bus re-sends its whole subscription set as well, retrying until Redis
//! answers; then its room actors read what their members missed from the store, and its hub
//! each local user's rooms and live sessions (`BusEvent::Resumed`). A node that failed to
//! publish a room's or user's event, or dropped it because its publish queue was full, sends
//! that topic a `Resumed` once Redis takes its publishes again. On a Redis Cluster every
//! liveness check also audits the subscriptions each master holds for this node, and sends
//! again those it lost (a failover, the client's own recovery), whose topics catch up the
//! same way. Clients fill any other gap from the store by
//! `seq`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::Recipient;
use redis::{PushInfo, PushKind};
use tokio::sync::mpsc;

use super::{Bus, BusEvent, Delivered, ENVELOPE_VERSION, Envelope, LocalBus, Topic};
use crate::config::RedisTarget;
use crate::domain::{NodeId, RoomId, SessionId, UserId};
use crate::metrics::Metrics;
use crate::redis_link::{self, Commands, Subscriber};

/// Most publishes sent to Redis in one pipeline.
const PUBLISH_BATCH: usize = 512;

pub struct RedisBus {
    local: LocalBus,
    node: NodeId,
    prefix: String,
    publishes: mpsc::Sender<(String, Vec<u8>)>,
    overflow: Arc<Overflow>,
    /// Subscription changes for the subscriber task. Unbounded but small: at most one
    /// entry per change of the set of users and rooms held here.
    changes: mpsc::UnboundedSender<Change>,
    metrics: Arc<Metrics>,
}

enum Change {
    Subscribe(String),
    Unsubscribe(String),
    /// Re-send every subscription (after a reconnect).
    Resync,
    /// A channel's subscription ended: the confirmation of this node's own `SUNSUBSCRIBE`, or
    /// Redis dropping it by itself (on a cluster, when its slot moved to another shard), in
    /// which case it is subscribed again if still held and its room catches up.
    Dropped(String),
}

impl RedisBus {
    /// Connects both Redis connections (commands and subscriptions) and starts the tasks.
    pub async fn connect(
        target: &RedisTarget,
        prefix: &str,
        node: NodeId,
        queue: usize,
        metrics: Arc<Metrics>,
    ) -> redis::RedisResult<(Arc<Self>, Commands)> {
        let (pushes_tx, pushes) = mpsc::unbounded_channel::<PushInfo>();
        let (commands, subscriber) = redis_link::connect(target, pushes_tx).await?;
        let (publishes, publish_queue) = mpsc::channel(queue);
        let (changes, change_queue) = mpsc::unbounded_channel();
        let bus = Arc::new(Self {
            local: LocalBus::new(node.clone(), metrics.clone()),
            node,
            prefix: prefix.to_owned(),
            publishes,
            overflow: Arc::default(),
            changes,
            metrics,
        });
        let notices = ResumeNotices {
            metrics: bus.metrics.clone(),
            recoverable: [format!("{prefix}:r:"), format!("{prefix}:u:")],
            overflow: bus.overflow.clone(),
            most: queue,
            resumed: serde_json::to_vec(&bus.local.envelope(BusEvent::Resumed)).expect("envelopes serialize"),
        };
        tokio::spawn(publish_loop(commands.clone(), publish_queue, notices));
        tokio::spawn(subscription_loop(subscriber, change_queue, Arc::downgrade(&bus)));
        tokio::spawn(receive_loop(pushes, Arc::downgrade(&bus)));
        Ok((bus, commands))
    }

    fn channel(&self, topic: &Topic) -> String {
        match topic {
            Topic::User(user) => format!("{}:u:{user}", self.prefix),
            // Rooms' and users' channels each start alike: the publisher tells them apart
            // (`ResumeNotices`).
            Topic::Room(room) => format!("{}:r:{room}", self.prefix),
            Topic::Live(session) => format!("{}:l:{session}", self.prefix),
            Topic::Node(node) => format!("{}:n:{node}", self.prefix),
        }
    }

    fn topic(&self, channel: &str) -> Option<Topic> {
        let rest = channel.strip_prefix(&self.prefix)?.strip_prefix(':')?;
        if let Some(user) = rest.strip_prefix("u:") {
            UserId::parse(user).ok().map(Topic::User)
        } else if let Some(session) = rest.strip_prefix("l:") {
            SessionId::parse(session).ok().map(Topic::Live)
        } else if let Some(node) = rest.strip_prefix("n:") {
            Some(Topic::Node(NodeId::new(node)))
        } else {
            RoomId::parse(rest.strip_prefix("r:")?).ok().map(Topic::Room)
        }
    }

    /// An envelope from Redis: delivered locally unless this node sent it.
    fn received(&self, channel: &str, payload: &[u8]) {
        self.metrics.redis.received.inc();
        self.metrics.redis.received_bytes.inc_by(payload.len() as u64);
        let Some(topic) = self.topic(channel) else { return };
        let envelope: Envelope = match serde_json::from_slice(payload) {
            Ok(envelope) => envelope,
            Err(e) => return tracing::warn!(channel, error = %e, "undecodable bus envelope"),
        };
        if envelope.v != ENVELOPE_VERSION {
            return tracing::warn!(channel, version = envelope.v, "bus envelope of another version");
        }
        if envelope.origin == self.node {
            return;
        }
        self.local.deliver(topic, Arc::new(envelope));
    }
}

impl Bus for RedisBus {
    fn publish(&self, topic: Topic, event: BusEvent) {
        self.metrics.bus_published.inc();
        let envelope = Arc::new(self.local.envelope(event));
        let payload = serde_json::to_vec(&*envelope).expect("envelopes serialize");
        let channel = self.channel(&topic);
        let recoverable = topic.recovers_from_store();
        self.metrics.redis.published_bytes.inc_by(payload.len() as u64);
        self.local.deliver(topic, envelope);
        match self.publishes.try_send((channel, payload)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full((channel, _))) => {
                self.metrics.bus_dropped.inc();
                if recoverable {
                    self.overflow.add(channel, self.publishes.max_capacity());
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => self.metrics.bus_dropped.inc(),
        }
    }

    fn subscribe(&self, topic: Topic, sink: Recipient<Delivered>) {
        let channel = self.channel(&topic);
        if self.local.add_sink(topic, sink) {
            let _ = self.changes.send(Change::Subscribe(channel));
        }
    }

    fn unsubscribe(&self, topic: &Topic) {
        if self.local.remove_sink(topic) {
            let _ = self.changes.send(Change::Unsubscribe(self.channel(topic)));
        }
    }
}

/// Publishes what the bus queues, in pipelines. A room or user whose event Redis did not take,
/// or the full queue dropped, is owed a `Resumed` on its channel once Redis takes publishes
/// again (tried every [`RESUME_RETRY`]): the nodes listening there read what they missed from
/// the store, even if nothing else happens there again.
async fn publish_loop(redis: Commands, mut queue: mpsc::Receiver<(String, Vec<u8>)>, notices: ResumeNotices) {
    let ResumeNotices { metrics, recoverable, resumed, overflow, most } = notices;
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    let mut owed: HashSet<String> = HashSet::new();
    let mut retry = tokio::time::interval(RESUME_RETRY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Whether Redis took the last publishes: while it does not, only a batch or the retry
    // tick tries it again, not every room the full queue drops.
    let mut taken = true;
    loop {
        let retry_due = tokio::select! {
            received = queue.recv_many(&mut batch, PUBLISH_BATCH) => if received == 0 { return } else { false },
            _ = retry.tick(), if !owed.is_empty() => true,
            () = overflow.added.notified() => false,
        };
        if !batch.is_empty() {
            taken = match redis.publish_all(&batch).await {
                Ok(()) => true,
                Err((failed, e)) => {
                    metrics.bus_dropped.inc_by(failed.len() as u64);
                    tracing::warn!(error = %e, dropped = failed.len(), "publishing to Redis failed");
                    for at in failed {
                        match batch.get(at) {
                            Some((channel, _))
                                if recoverable.iter().any(|start| channel.starts_with(start.as_str()))
                                    && owed.len() < most =>
                            {
                                owed.insert(channel.clone());
                            }
                            _ => {}
                        }
                    }
                    false
                }
            };
        } else if retry_due {
            taken = true;
        }
        batch.clear();
        owed.extend(overflow.take().into_iter().take(most.saturating_sub(owed.len())));
        if taken && !owed.is_empty() {
            let resumes: Vec<(String, Vec<u8>)> = owed.drain().map(|channel| (channel, resumed.clone())).collect();
            if let Err((failed, _)) = redis.publish_all(&resumes).await {
                owed.extend(failed.into_iter().filter_map(|at| resumes.get(at)).map(|(channel, _)| channel.clone()));
                taken = false;
            }
        }
    }
}

/// How often a topic owed a `Resumed` is tried again while Redis refuses publishes.
const RESUME_RETRY: Duration = Duration::from_secs(1);

/// What the publisher needs to owe rooms and users a `Resumed`.
struct ResumeNotices {
    metrics: Arc<Metrics>,
    /// The start of every room's channel and of every user's.
    recoverable: [String; 2],
    /// The `Resumed` envelope, from this node.
    resumed: Vec<u8>,
    /// Rooms and users whose event the full queue dropped.
    overflow: Arc<Overflow>,
    /// Most topics owed a `Resumed` at once (the queue's size).
    most: usize,
}

/// The rooms and users whose event found the publish queue full, owed a `Resumed` (at most as
/// many as the queue holds); each one added wakes the publisher, which takes them all.
#[derive(Default)]
struct Overflow {
    channels: Mutex<HashSet<String>>,
    added: tokio::sync::Notify,
}

impl Overflow {
    fn add(&self, channel: String, most: usize) {
        let mut channels = self.channels.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if channels.len() < most {
            channels.insert(channel);
        }
        drop(channels);
        self.added.notify_one();
    }

    fn take(&self) -> HashSet<String> {
        std::mem::take(&mut *self.channels.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

/// How often the subscription connection is checked with a `PING`: it only ever receives, so
/// a Redis that hangs or a link that silently drops packets would otherwise go unnoticed, and
/// with it the pushes lost meanwhile.
const LIVENESS_EVERY: Duration = Duration::from_secs(2);

async fn subscription_loop(
    redis: Subscriber,
    mut changes: mpsc::UnboundedReceiver<Change>,
    bus: std::sync::Weak<RedisBus>,
) {
    let mut subscriptions = Subscriptions { redis, bus, held: HashSet::new(), unconfirmed: HashMap::new() };
    let mut liveness = tokio::time::interval(LIVENESS_EVERY);
    liveness.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A PING went unanswered: the link is suspect until one is answered again.
    let mut suspect = false;
    loop {
        let change = tokio::select! {
            change = changes.recv() => match change {
                Some(change) => change,
                None => return,
            },
            _ = liveness.tick() => {
                suspect = subscriptions.check_liveness(suspect).await;
                continue;
            }
        };
        // The subscribes and unsubscribes queued behind this one go with it, netted; a
        // change of another kind ends the run and is applied after it.
        let mut wanted = HashMap::new();
        let mut other = None;
        let mut next = Some(change);
        while let Some(change) = next.take() {
            match change {
                Change::Subscribe(channel) => wanted.insert(channel, true),
                Change::Unsubscribe(channel) => wanted.insert(channel, false),
                change => {
                    other = Some(change);
                    break;
                }
            };
            if wanted.len() < CHANGE_BATCH {
                next = changes.try_recv().ok();
            }
        }
        let netted = subscriptions.want(wanted).await;
        if subscriptions.recover(netted).await.is_none() {
            return;
        }
        if let Some(change) = other {
            let applied = subscriptions.apply(change).await;
            if subscriptions.recover(applied).await.is_none() {
                return;
            }
        }
    }
}

/// Most channels one run of queued subscription changes takes together.
const CHANGE_BATCH: usize = 16_384;

/// What a run of queued changes asks of Redis (`wanted`: each channel's last change, true to
/// hold it), given the channels `held`, which it updates: the channels to subscribe and those
/// to unsubscribe. A channel dropped and taken again within the run (a user who reconnects at
/// once) is left as it is.
fn net(held: &mut HashSet<String>, wanted: HashMap<String, bool>) -> (Vec<String>, Vec<String>) {
    let (mut taken, mut dropped) = (Vec::new(), Vec::new());
    for (channel, want) in wanted {
        if want && !held.contains(&channel) {
            held.insert(channel.clone());
            taken.push(channel);
        } else if !want && held.remove(&channel) {
            dropped.push(channel);
        }
    }
    (taken, dropped)
}

/// The subscription task's state: the channels this node holds, on the connection that
/// holds them.
struct Subscriptions {
    redis: Subscriber,
    bus: std::sync::Weak<RedisBus>,
    held: HashSet<String>,
    /// This node's own unsubscriptions whose confirmation (a `Dropped`) is still to come.
    unconfirmed: HashMap<String, usize>,
}

impl Subscriptions {
    /// Subscribes and unsubscribes as a run of queued changes nets out (see [`net`]): one
    /// `SUBSCRIBE` and one `UNSUBSCRIBE` for all of them. What is held is updated even if
    /// Redis fails (the resync that follows sends it all again).
    async fn want(&mut self, wanted: HashMap<String, bool>) -> redis::RedisResult<()> {
        let (taken, dropped) = net(&mut self.held, wanted);
        if self.redis.is_sharded() {
            for channel in &dropped {
                *self.unconfirmed.entry(channel.clone()).or_default() += 1;
            }
        }
        let unsubscribed = if dropped.is_empty() { Ok(()) } else { self.redis.unsubscribe(&dropped).await };
        let subscribed = if taken.is_empty() { Ok(()) } else { self.redis.subscribe(&taken).await };
        unsubscribed.and(subscribed)
    }

    async fn apply(&mut self, change: Change) -> redis::RedisResult<()> {
        match change {
            Change::Subscribe(channel) => self.want(HashMap::from([(channel, true)])).await,
            Change::Unsubscribe(channel) => self.want(HashMap::from([(channel, false)])).await,
            Change::Dropped(channel) => self.dropped(channel).await,
            Change::Resync => {
                // Confirmations lost with the connection never come.
                self.unconfirmed.clear();
                let result = resubscribe(&mut self.redis, &self.held).await;
                if result.is_ok()
                    && let Some(bus) = self.bus.upgrade()
                {
                    bus.local.resumed();
                }
                result
            }
        }
    }

    /// After a change Redis refused: everything held is sent again. `None` once the bus is
    /// gone.
    async fn recover(&mut self, applied: redis::RedisResult<()>) -> Option<()> {
        if let Err(e) = applied {
            tracing::warn!(error = %e, "Redis subscription change failed; resyncing");
            return self.restore().await;
        }
        Some(())
    }

    /// A subscription ended: ours (confirmed), or Redis's doing, when it is subscribed again
    /// and its room reads what it missed.
    async fn dropped(&mut self, channel: String) -> redis::RedisResult<()> {
        if let Some(pending) = self.unconfirmed.get_mut(&channel) {
            *pending -= 1;
            if *pending == 0 {
                self.unconfirmed.remove(&channel);
            }
            return Ok(());
        }
        if !self.held.contains(&channel) {
            return Ok(());
        }
        tracing::info!(channel, "Redis dropped a subscription (its slot moved); subscribing again");
        self.redis.subscribe(std::slice::from_ref(&channel)).await?;
        if let Some(bus) = self.bus.upgrade()
            && let Some(topic) = bus.topic(&channel)
        {
            bus.local.resumed_on(topic);
        }
        Ok(())
    }

    /// PINGs the link; whether it is suspect now. Answering again after a silence, it may
    /// have lost pushes meanwhile: a resync follows.
    async fn check_liveness(&mut self, suspect: bool) -> bool {
        match self.redis.ping().await {
            Err(e) => {
                if !suspect {
                    tracing::warn!(error = %e, "Redis subscription connection does not answer");
                }
                true
            }
            Ok(()) => {
                if suspect {
                    if let Some(bus) = self.bus.upgrade() {
                        bus.metrics.redis_reconnects.inc();
                    }
                    let _ = request_resync(&self.bus);
                }
                if let Err(e) = self.audit().await {
                    tracing::warn!(error = %e, "could not check this node's Redis subscriptions; trying again");
                }
                false
            }
        }
    }

    /// Subscribes again to what Redis lost of this node's subscriptions (on a cluster: see
    /// [`Subscriber::missing`]); their rooms then read what they missed.
    async fn audit(&mut self) -> redis::RedisResult<()> {
        let missing = self.redis.missing(&self.held).await?;
        if missing.is_empty() {
            return Ok(());
        }
        tracing::warn!(channels = missing.len(), "Redis holds fewer subscriptions than this node; subscribing again");
        self.redis.subscribe(&missing).await?;
        if let Some(bus) = self.bus.upgrade() {
            missing.iter().filter_map(|channel| bus.topic(channel)).for_each(|topic| bus.local.resumed_on(topic));
        }
        Ok(())
    }

    /// Subscribes again to everything held, retrying until Redis answers (changes queued
    /// meanwhile are applied after), then lets the rooms catch up. `None` once the bus is gone.
    async fn restore(&mut self) -> Option<()> {
        let mut delay = Duration::from_millis(100);
        while resubscribe(&mut self.redis, &self.held).await.is_err() {
            if self.bus.strong_count() == 0 {
                return None;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
        tracing::info!(channels = self.held.len(), "Redis subscriptions restored");
        self.bus.upgrade()?.local.resumed();
        Some(())
    }
}

/// Queues a resync of every subscription (then a catch-up, see `Change::Resync`).
fn request_resync(bus: &std::sync::Weak<RedisBus>) -> Option<()> {
    bus.upgrade()?.changes.send(Change::Resync).ok()
}

async fn resubscribe(redis: &mut Subscriber, held: &HashSet<String>) -> redis::RedisResult<()> {
    let channels: Vec<String> = held.iter().cloned().collect();
    redis.subscribe(&channels).await?;
    // Proves the connection is back even with nothing to subscribe.
    redis.ping().await
}

async fn receive_loop(mut pushes: mpsc::UnboundedReceiver<PushInfo>, bus: std::sync::Weak<RedisBus>) {
    while let Some(push) = pushes.recv().await {
        let Some(bus) = bus.upgrade() else { return };
        match push.kind {
            PushKind::Disconnection => {
                bus.metrics.redis_reconnects.inc();
                tracing::warn!("Redis subscription connection lost; resubscribing");
                let _ = bus.changes.send(Change::Resync);
            }
            PushKind::Message | PushKind::SMessage => {
                if let Some(message) = redis::Msg::from_push_info(push) {
                    bus.received(message.get_channel_name(), message.get_payload_bytes());
                }
            }
            // Also the confirmation of this node's own SUNSUBSCRIBEs, which `Dropped` ignores.
            PushKind::SUnsubscribe => {
                if let Some(redis::Value::BulkString(channel)) = push.data.first() {
                    let channel = String::from_utf8_lossy(channel).into_owned();
                    let _ = bus.changes.send(Change::Dropped(channel));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn a_run_of_changes_nets_to_what_it_changes() {
        let mut held: HashSet<String> = strings(&["kept", "dropped", "back"]).into_iter().collect();
        // Each channel's last change within the run, as the loop gathers them.
        let wanted = HashMap::from([
            ("kept".to_string(), true),
            ("dropped".to_string(), false),
            ("back".to_string(), true),
            ("new".to_string(), true),
            ("came-and-went".to_string(), false),
        ]);
        let (taken, dropped) = net(&mut held, wanted);
        assert_eq!(taken, strings(&["new"]));
        assert_eq!(dropped, strings(&["dropped"]));
        let mut now: Vec<String> = held.into_iter().collect();
        now.sort();
        assert_eq!(now, strings(&["back", "kept", "new"]));
    }
}
