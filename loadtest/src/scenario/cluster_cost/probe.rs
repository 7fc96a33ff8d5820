//! `cluster-cost` readings: each node's bus counters from its `/metrics` (Switchboard's own, or
//! the Socket.IO peer's with `BUS_METRICS=1`) and its process's CPU seconds, taken before and
//! after the traffic.

use std::collections::BTreeMap;

use anyhow::{Result, bail};

use crate::client::Target;
use crate::scenario::node_metrics::{clock_ticks, core_busy, core_ticks, cpu_secs, scrape};

/// Which server answers, known by the counters it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Server {
    Switchboard,
    SocketioPeer,
}

/// A server's names for: messages read from its Redis subscriptions (its own echoes included),
/// their payload bytes, messages published, their payload bytes.
struct BusNames {
    received: &'static str,
    received_bytes: &'static str,
    published: &'static str,
    published_bytes: &'static str,
}

impl Server {
    pub fn name(self) -> &'static str {
        match self {
            Server::Switchboard => "switchboard",
            Server::SocketioPeer => "socketio-peer",
        }
    }

    fn names(self) -> BusNames {
        match self {
            Server::Switchboard => BusNames {
                received: "switchboard_redis_received_total",
                received_bytes: "switchboard_redis_received_bytes_total",
                published: "switchboard_bus_published_total",
                published_bytes: "switchboard_redis_published_bytes_total",
            },
            Server::SocketioPeer => BusNames {
                received: "socketio_redis_received_total",
                received_bytes: "socketio_redis_received_bytes_total",
                published: "socketio_redis_published_total",
                published_bytes: "socketio_redis_published_bytes_total",
            },
        }
    }

    fn detect(counters: &BTreeMap<String, f64>) -> Option<Self> {
        [Server::Switchboard, Server::SocketioPeer].into_iter().find(|s| counters.contains_key(s.names().received))
    }
}

fn wanted(name: &str) -> bool {
    ["switchboard_redis_", "switchboard_bus_", "socketio_redis_"].iter().any(|p| name.starts_with(p))
}

/// One node at one moment.
pub(super) struct Reading {
    counters: BTreeMap<String, f64>,
    cpu_secs: Option<f64>,
}

/// Every node at one moment, and the machine's cores: (busy, total) clock ticks.
pub(super) struct Readings {
    pub nodes: Vec<Reading>,
    cores: Vec<(u64, u64)>,
}

impl Readings {
    /// Each core's busy share from `self` to `later` (0 to 1).
    pub fn core_busy(&self, later: &Readings) -> Vec<f64> {
        core_busy(&self.cores, &later.cores)
    }
}

/// What one node's bus and process did between two readings.
pub(super) struct NodeDelta {
    pub received: f64,
    pub received_bytes: f64,
    pub published: f64,
    pub published_bytes: f64,
    /// Switchboard only: envelopes handed to a local sink, and envelopes not sent to Redis.
    pub bus_delivered: Option<f64>,
    pub dropped: Option<f64>,
    pub cpu_secs: Option<f64>,
}

/// Reads every node the same way.
pub(super) struct Probe {
    pub server: Server,
    nodes: Vec<Target>,
    /// One per node, or none (then no CPU figures).
    pids: Vec<u32>,
    ticks_per_sec: f64,
}

impl Probe {
    /// Finds out which server the first node is; fails when its `/metrics` has neither's
    /// counters or a process cannot be read.
    pub async fn new(nodes: &[Target], pids: &[u32]) -> Result<Self> {
        if !pids.is_empty() && pids.len() != nodes.len() {
            bail!("--server-pid: give one per node ({} nodes, {} pids)", nodes.len(), pids.len());
        }
        let first = scrape(nodes[0].authority(), wanted).await?;
        let Some(server) = Server::detect(&first) else {
            bail!(
                "http://{}/metrics has no Redis counters: Switchboard serves switchboard_redis_received_total, \
                 the Socket.IO peer socketio_redis_received_total with BUS_METRICS=1",
                nodes[0].authority()
            );
        };
        let probe = Self { server, nodes: nodes.to_vec(), pids: pids.to_vec(), ticks_per_sec: clock_ticks() };
        probe.read().await?;
        Ok(probe)
    }

    /// Every node, and the machine's cores.
    pub async fn read(&self) -> Result<Readings> {
        let cores = core_ticks()?;
        let mut out = Vec::with_capacity(self.nodes.len());
        for (i, node) in self.nodes.iter().enumerate() {
            let cpu_secs = match self.pids.get(i) {
                Some(&pid) => Some(cpu_secs(pid, self.ticks_per_sec)?),
                None => None,
            };
            let counters = scrape(node.authority(), wanted).await?;
            if Server::detect(&counters) != Some(self.server) {
                bail!("{} is not a {} like the first node", node.authority(), self.server.name());
            }
            out.push(Reading { counters, cpu_secs });
        }
        Ok(Readings { nodes: out, cores })
    }

    pub fn delta(&self, before: &Reading, after: &Reading) -> NodeDelta {
        let d = |name: &str| {
            after.counters.get(name).copied().unwrap_or(0.0) - before.counters.get(name).copied().unwrap_or(0.0)
        };
        let names = self.server.names();
        let switchboard = self.server == Server::Switchboard;
        NodeDelta {
            received: d(names.received),
            received_bytes: d(names.received_bytes),
            published: d(names.published),
            published_bytes: d(names.published_bytes),
            bus_delivered: switchboard.then(|| d("switchboard_bus_received_total")),
            dropped: switchboard.then(|| d("switchboard_bus_dropped_total")),
            cpu_secs: before.cpu_secs.zip(after.cpu_secs).map(|(b, a)| a - b),
        }
    }
}
