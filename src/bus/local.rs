//! The in-process bus of a single node: publishing hands the envelope straight to the
//! topic's sink. The Redis bus uses the same sinks for its local deliveries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix::Recipient;

use super::{Bus, BusEvent, Delivered, ENVELOPE_VERSION, Envelope, Topic};
use crate::domain::NodeId;
use crate::metrics::Metrics;

pub struct LocalBus {
    node: NodeId,
    sinks: Mutex<HashMap<Topic, Recipient<Delivered>>>,
    metrics: Arc<Metrics>,
}

impl LocalBus {
    pub fn new(node: NodeId, metrics: Arc<Metrics>) -> Self {
        Self { node, sinks: Mutex::default(), metrics }
    }

    pub fn envelope(&self, event: BusEvent) -> Envelope {
        Envelope { v: ENVELOPE_VERSION, origin: self.node.clone(), event }
    }

    /// Hands `envelope` to this node's sink for `topic`, if it has one.
    pub fn deliver(&self, topic: Topic, envelope: Arc<Envelope>) {
        let sink = self.sinks.lock().expect("bus lock").get(&topic).cloned();
        if let Some(sink) = sink {
            self.metrics.bus_received.inc();
            sink.do_send(Delivered { topic, envelope });
        }
    }

    /// Registers the sink; true if the topic is new on this node.
    pub fn add_sink(&self, topic: Topic, sink: Recipient<Delivered>) -> bool {
        let added = self.sinks.lock().expect("bus lock").insert(topic, sink).is_none();
        if added {
            self.metrics.subscriptions.inc();
        }
        added
    }

    /// Drops the sink; true if the topic was held.
    pub fn remove_sink(&self, topic: &Topic) -> bool {
        let removed = self.sinks.lock().expect("bus lock").remove(topic).is_some();
        if removed {
            self.metrics.subscriptions.dec();
        }
        removed
    }

    /// Tells the sink of every room and user topic that the bus is back after a loss
    /// (`BusEvent::Resumed`).
    pub fn resumed(&self) {
        let envelope = Arc::new(self.envelope(BusEvent::Resumed));
        for topic in self.topics().into_iter().filter(Topic::recovers_from_store) {
            self.deliver(topic, envelope.clone());
        }
    }

    /// Tells one topic's sink, if it is a room's or a user's, that its events may have been lost.
    pub fn resumed_on(&self, topic: Topic) {
        if topic.recovers_from_store() {
            self.deliver(topic, Arc::new(self.envelope(BusEvent::Resumed)));
        }
    }

    pub fn topics(&self) -> Vec<Topic> {
        self.sinks.lock().expect("bus lock").keys().cloned().collect()
    }
}

impl Bus for LocalBus {
    fn publish(&self, topic: Topic, event: BusEvent) {
        self.metrics.bus_published.inc();
        self.deliver(topic, Arc::new(self.envelope(event)));
    }

    fn subscribe(&self, topic: Topic, sink: Recipient<Delivered>) {
        self.add_sink(topic, sink);
    }

    fn unsubscribe(&self, topic: &Topic) {
        self.remove_sink(topic);
    }
}
