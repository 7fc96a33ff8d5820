//! The in-process bus of a single node: publishing hands the envelope straight to the
//! topic's sink.

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
        Self {
            node,
            sinks: Mutex::default(),
            metrics,
        }
    }
}

impl Bus for LocalBus {
    fn publish(&self, topic: Topic, event: BusEvent) {
        self.metrics.bus_published.inc();
        let sink = self.sinks.lock().expect("bus lock").get(&topic).cloned();
        if let Some(sink) = sink {
            self.metrics.bus_received.inc();
            let envelope = Arc::new(Envelope {
                v: ENVELOPE_VERSION,
                origin: self.node.clone(),
                event,
            });
            sink.do_send(Delivered { topic, envelope });
        }
    }

    fn subscribe(&self, topic: Topic, sink: Recipient<Delivered>) {
        let mut sinks = self.sinks.lock().expect("bus lock");
        if sinks.insert(topic, sink).is_none() {
            self.metrics.subscriptions.inc();
        }
    }

    fn unsubscribe(&self, topic: &Topic) {
        if self.sinks.lock().expect("bus lock").remove(topic).is_some() {
            self.metrics.subscriptions.dec();
        }
    }
}
