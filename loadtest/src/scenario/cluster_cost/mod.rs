//! `cluster-cost`: what one message costs each node of a cluster, Switchboard's or the
//! Socket.IO peer's. Pairs and small groups are laid out so that every room sits on one node or
//! spans two (`layout`); every room then sends its share of a fixed rate for a fixed time
//! (`room`). Each node's bus counters and CPU time are read before and after (`probe`), and
//! per node the report sets them against what that node was addressed and delivered.
//!
//! A message is **addressed to a node** when the node holds a connection of a member of its
//! room, the sender's included (the sender's other devices get `message.new`, docs/protocol.md
//! §5). `received ÷ addressed` is then 1 where the bus sends a node only what it holds a
//! member of, and the node count ÷ the nodes a room spans where it sends every node everything.

mod layout;
mod probe;
mod room;

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use serde_json::{Value, json};

use super::chat_mix::setup::RoomSetup;
use super::{Cadence, Common, drive_all, print_errors_by_kind, rate_limit_hint};
use crate::client::{Connection, Target};
use crate::stats::{ErrorCounts, LatencyRecorder, Timeline, describe_latency, round3};
use layout::Shape;
use probe::{NodeDelta, Probe, Readings};
use room::{RoomTally, SendPlan};

#[derive(Debug, Clone, Args)]
pub struct ClusterCostArgs {
    #[command(flatten)]
    pub common: Common,

    /// Further nodes of the cluster (repeatable); --url is node 0.
    #[arg(long = "node-url")]
    pub node_urls: Vec<String>,

    /// Each node's server process, in node order (repeatable): CPU from /proc/PID/stat.
    #[arg(long = "server-pid")]
    pub server_pids: Vec<u32>,

    /// Direct (1:1) rooms.
    #[arg(long, default_value_t = 120)]
    pub pairs: usize,

    /// Group rooms.
    #[arg(long, default_value_t = 40)]
    pub groups: usize,

    /// Members per group, the creator included.
    #[arg(long, default_value_t = 4)]
    pub group_size: usize,

    /// Share of the rooms whose members span two nodes (the others sit on one node).
    #[arg(long, default_value_t = 0.5)]
    pub spanning_share: f64,

    /// Messages per second over all rooms (each room sends an equal share).
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,

    /// Seconds of sending.
    #[arg(long, default_value_t = 30)]
    pub duration: u64,

    /// Seconds to let subscriptions (before) and echoes (after) settle around the readings.
    #[arg(long, default_value_t = 1.0)]
    pub settle: f64,

    /// Seconds to wait after the last send for acks and deliveries.
    #[arg(long, default_value_t = 5)]
    pub grace: u64,
}

pub async fn run(args: ClusterCostArgs) -> Result<Value> {
    if !(2..=64).contains(&args.group_size) || args.pairs + args.groups == 0 {
        bail!("--group-size must be 2..=64 and there must be rooms");
    }
    if !(args.rate > 0.0 && args.duration > 0 && args.settle >= 0.0) {
        bail!("--rate and --duration must be positive, --settle not negative");
    }
    let nodes = args.common.targets(&args.node_urls)?;
    let probe = Probe::new(&nodes, &args.server_pids).await?;
    let run_id = super::new_run_id();
    let shape = Shape {
        pairs: args.pairs,
        groups: args.groups,
        group_size: args.group_size,
        spanning_share: args.spanning_share,
    };
    let placements = layout::placements(shape, nodes.len());
    eprintln!(
        "cluster-cost run {run_id}: {} on {} node(s), {} pairs + {} groups of {}, {} msg/s for {} s",
        probe.server.name(),
        nodes.len(),
        args.pairs,
        args.groups,
        args.group_size,
        args.rate,
        args.duration
    );
    let rooms = layout::set_up(&nodes, &run_id, &placements, args.common.connect_concurrency).await?;
    let settle = Duration::from_secs_f64(args.settle);
    tokio::time::sleep(settle).await;
    let before = probe.read().await?;
    let window_start = Instant::now();
    let (tallies, timeline) = traffic(&args, &run_id, rooms, &placements, nodes.len()).await?;
    tokio::time::sleep(settle).await;
    let after = probe.read().await?;
    let window = window_start.elapsed();
    let (totals, conns) = Totals::sum(tallies, nodes.len());
    super::close_all(conns).await;
    let measured = Measured { nodes: &nodes, placements: &placements, probe: &probe, before, after, window };
    let mut report = measured.report(&args, &run_id, &totals);
    report["timeline"] = timeline.to_json();
    print(&report);
    rate_limit_hint(&totals.errors);
    Ok(report)
}

/// Every room sends its share of `--rate` × `--duration` messages on one open-loop cadence
/// (room r's k-th message is the (r + k × rooms)-th overall); returns the rooms' tallies.
async fn traffic(
    args: &ClusterCostArgs,
    run_id: &str,
    rooms: Vec<RoomSetup>,
    placements: &[Vec<usize>],
    nodes: usize,
) -> Result<(Vec<RoomTally>, Timeline)> {
    let total = (args.rate * args.duration as f64).round() as u64;
    let room_count = rooms.len() as u64;
    let t0 = Instant::now() + Duration::from_millis(200);
    let base = SendPlan {
        cadence: Cadence::new(t0, args.rate, rooms.len()),
        sends: 0,
        deadline: t0 + Duration::from_secs(args.duration + args.grace),
        body: super::body(args.common.body_bytes).into(),
        run_id: run_id.into(),
    };
    let items = rooms.into_iter().zip(placements.iter().cloned()).enumerate();
    drive_all(t0, items, |(r, (room, placement)), progress| {
        let sends = total.saturating_sub(r as u64).div_ceil(room_count);
        room::drive(room, placement, nodes, SendPlan { sends, ..base.clone() }, progress)
    })
    .await
}

/// The rooms' tallies summed, per node where they are per node.
struct Totals {
    sent: u64,
    acked: u64,
    duplicates: u64,
    addressed: Vec<u64>,
    expected: Vec<u64>,
    delivered: Vec<u64>,
    /// First deliveries only.
    delivery: LatencyRecorder,
    errors: ErrorCounts,
}

impl Totals {
    /// Sums the tallies; returns the connections apart, to be closed.
    fn sum(tallies: Vec<RoomTally>, nodes: usize) -> (Self, Vec<Connection>) {
        let mut t = Totals {
            sent: 0,
            acked: 0,
            duplicates: 0,
            addressed: vec![0; nodes],
            expected: vec![0; nodes],
            delivered: vec![0; nodes],
            delivery: LatencyRecorder::new(),
            errors: ErrorCounts::default(),
        };
        let mut conns = Vec::new();
        for room in tallies {
            t.sent += room.sent;
            t.acked += room.acked;
            t.duplicates += room.duplicates;
            for n in 0..nodes {
                t.addressed[n] += room.addressed[n];
                t.expected[n] += room.expected[n];
                t.delivered[n] += room.delivered[n];
            }
            t.delivery.merge(&room.delivery);
            t.errors.merge(&room.errors);
            conns.extend(room.conns);
        }
        (t, conns)
    }
}

/// The readings around the traffic and what they are set against.
struct Measured<'a> {
    nodes: &'a [Target],
    placements: &'a [Vec<usize>],
    probe: &'a Probe,
    before: Readings,
    after: Readings,
    window: Duration,
}

impl Measured<'_> {
    fn report(&self, args: &ClusterCostArgs, run_id: &str, t: &Totals) -> Value {
        let deltas: Vec<NodeDelta> =
            (0..self.nodes.len()).map(|i| self.probe.delta(&self.before.nodes[i], &self.after.nodes[i])).collect();
        let rows: Vec<Value> = deltas.iter().enumerate().map(|(i, d)| self.node_row(i, d, t)).collect();
        let received: f64 = deltas.iter().map(|d| d.received).sum();
        let addressed: u64 = t.addressed.iter().sum();
        let cpu: Option<f64> = deltas.iter().map(|d| d.cpu_secs).sum();
        let deliveries: u64 = t.delivered.iter().sum();
        let expected: u64 = t.expected.iter().sum();
        let spanning = self.placements.iter().filter(|p| layout::nodes_spanned(p) > 1).count();
        let mut params = args.common.params(&self.nodes[0]);
        params["nodes"] = json!(self.nodes.iter().map(Target::endpoint).collect::<Vec<_>>());
        for (key, value) in [
            ("pairs", json!(args.pairs)),
            ("groups", json!(args.groups)),
            ("group_size", json!(args.group_size)),
            ("spanning_share", json!(args.spanning_share)),
            ("rate", json!(args.rate)),
            ("duration_secs", json!(args.duration)),
            ("settle_secs", json!(args.settle)),
            ("grace_secs", json!(args.grace)),
        ] {
            params[key] = value;
        }
        json!({
            "scenario": "cluster-cost",
            "run_id": run_id,
            "server": self.probe.server.name(),
            "params": params,
            "node_count": self.nodes.len(),
            "rooms": self.placements.len(),
            "rooms_on_two_nodes": spanning,
            "users": self.placements.iter().map(Vec::len).sum::<usize>(),
            "window_secs": round3(self.window.as_secs_f64()),
            "sent": t.sent,
            "acked": t.acked,
            "nodes_addressed_per_message": (t.acked > 0).then(|| round3(addressed as f64 / t.acked as f64)),
            "received_per_addressed": (addressed > 0).then(|| round3(received / addressed as f64)),
            "deliveries_owed": expected,
            "deliveries": deliveries,
            "lost": expected.saturating_sub(t.delivery.count()),
            "duplicates": t.duplicates,
            "cpu_secs": cpu.map(round3),
            "cpu_us_per_delivery": cpu.filter(|_| deliveries > 0).map(|c| round3(c * 1e6 / deliveries as f64)),
            "machine_core_busy": self.before.core_busy(&self.after).into_iter().map(round3).collect::<Vec<_>>(),
            "delivery_ms": t.delivery.summary(),
            "per_node": rows,
            "errors": t.errors.to_json(),
        })
    }

    fn node_row(&self, i: usize, d: &NodeDelta, t: &Totals) -> Value {
        let users = self.placements.iter().flatten().filter(|&&n| n == i).count();
        let addressed = t.addressed[i];
        let per_addressed = |x: f64| (addressed > 0).then(|| round3(x / addressed as f64));
        let deliveries = t.delivered[i];
        json!({
            "node": i,
            "url": self.nodes[i].endpoint(),
            "users": users,
            "addressed": addressed,
            "received": d.received,
            "received_per_addressed": per_addressed(d.received),
            "received_bytes": d.received_bytes,
            "received_bytes_per_addressed": per_addressed(d.received_bytes),
            "published": d.published,
            "published_bytes": d.published_bytes,
            "deliveries_owed": t.expected[i],
            "deliveries": deliveries,
            "cpu_secs": d.cpu_secs.map(round3),
            "cpu_us_per_delivery": d.cpu_secs.filter(|_| deliveries > 0).map(|c| round3(c * 1e6 / deliveries as f64)),
            "bus_delivered": d.bus_delivered,
            "dropped": d.dropped,
        })
    }
}

/// The per-node table's columns: JSON key and heading.
const COLUMNS: [(&str, &str); 11] = [
    ("node", "node"),
    ("users", "users"),
    ("addressed", "addressed"),
    ("received", "received"),
    ("received_per_addressed", "recv/addr"),
    ("received_bytes", "recv bytes"),
    ("published", "published"),
    ("published_bytes", "pub bytes"),
    ("deliveries", "deliveries"),
    ("cpu_secs", "CPU s"),
    ("cpu_us_per_delivery", "CPU µs/delivery"),
];

/// A number as a table cell: whole numbers without decimals, `-` for none.
fn cell(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{x:.0}"),
        Some(x) => format!("{x}"),
        None => "-".into(),
    }
}

fn print(r: &Value) {
    println!(
        "cluster-cost  {}  {} node(s)  run {}  {} rooms ({} on two nodes, {} nodes addressed per message)",
        r["server"].as_str().unwrap_or("?"),
        r["node_count"],
        r["run_id"].as_str().unwrap_or("?"),
        r["rooms"],
        r["rooms_on_two_nodes"],
        r["nodes_addressed_per_message"]
    );
    println!(
        "  sent {}  acked {}  deliveries {} of {} owed  lost {}  duplicates {}  window {} s  received/addressed {}  CPU µs/delivery {}  cores busy {}",
        r["sent"],
        r["acked"],
        r["deliveries"],
        r["deliveries_owed"],
        r["lost"],
        r["duplicates"],
        r["window_secs"],
        r["received_per_addressed"],
        r["cpu_us_per_delivery"],
        r["machine_core_busy"]
    );
    let line = |cells: Vec<String>| {
        let padded: Vec<String> =
            cells.iter().zip(COLUMNS).map(|(c, (_, head))| format!("{c:>w$}", w = head.len().max(6))).collect();
        println!("  {}", padded.join(" "));
    };
    line(COLUMNS.iter().map(|(_, head)| (*head).to_owned()).collect());
    for n in r["per_node"].as_array().into_iter().flatten() {
        line(COLUMNS.iter().map(|(key, _)| cell(&n[*key])).collect());
    }
    println!("  delivery  {}", describe_latency(&r["delivery_ms"]));
    print_errors_by_kind(&r["errors"]);
}
