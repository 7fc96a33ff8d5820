//! `group-fanout`: which nodes of a cluster receive a group's messages.
//!
//! In cluster mode a node subscribes to a room's Redis channel only while it holds a
//! connection of a member, so a message should reach exactly the nodes holding members, once
//! each. This scenario checks that from the outside, on the nodes' `/metrics`
//! (`switchboard_bus_published_total`, `switchboard_bus_received_total`): for each layout it
//! connects a group's members, creates the group, reads every node's counters, sends
//! `--messages` messages from member 0 (on `--url`), waits until every other member got
//! every message, reads the counters again and reports the differences per node.
//!
//! Layouts: `one-node` puts every member on `--url` (the other nodes hold none);
//! `all-nodes` spreads them round-robin over `--url` and the `--other-url`s.
//! `bus_received_total` counts envelopes handed to a local sink, the origin node's own
//! included, so the expectation is: Δreceived = messages on each node holding members,
//! 0 elsewhere; Δpublished = messages on the sender's node. Nothing else may run against
//! the nodes meanwhile, or its traffic shows in the counters.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use serde_json::{Value, json};

use super::node_metrics::scrape;
use super::{Common, SETUP_TIMEOUT, close_all, note_unexpected, sleep_until, text_message};
use crate::client::{Connection, Frame, Inbound, Target};
use crate::stats::{ErrorCounts, LatencyRecorder, Progress, describe_latency, round3};

/// The counters read from each node.
const COUNTERS: [&str; 4] = [
    "switchboard_bus_published_total",
    "switchboard_bus_received_total",
    "switchboard_bus_dropped_total",
    "switchboard_bus_subscriptions",
];

#[derive(Debug, Clone, Args)]
pub struct GroupFanoutArgs {
    #[command(flatten)]
    pub common: Common,

    /// The cluster's other nodes (repeatable). --url is the sender's node.
    #[arg(long = "other-url", required = true)]
    pub other_urls: Vec<String>,

    /// Group members, the sender included (2–9 with the server's default group limit).
    #[arg(long, default_value_t = 6)]
    pub members: usize,

    /// Messages sent in each layout.
    #[arg(long, default_value_t = 200)]
    pub messages: u64,

    /// Messages per second.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,

    /// Seconds to let subscriptions and stragglers settle before each metrics reading.
    #[arg(long, default_value_t = 1.0)]
    pub settle: f64,

    /// Seconds to wait after the last send for deliveries.
    #[arg(long, default_value_t = 5)]
    pub grace: u64,
}

pub async fn run(args: GroupFanoutArgs) -> Result<Value> {
    if args.members < 2 || args.messages == 0 || args.rate.is_nan() || args.rate <= 0.0 {
        bail!("--members must be at least 2, --messages and --rate positive");
    }
    let nodes = args.common.targets(&args.other_urls)?;
    let run_id = super::new_run_id();
    eprintln!(
        "group-fanout run {run_id}: {} members, {} messages at {}/s, nodes {}",
        args.members,
        args.messages,
        args.rate,
        nodes.iter().map(Target::endpoint).collect::<Vec<_>>().join(", ")
    );
    let mut layouts = Vec::new();
    for (name, spread) in [("one-node", false), ("all-nodes", true)] {
        let placement: Vec<usize> = (0..args.members).map(|i| if spread { i % nodes.len() } else { 0 }).collect();
        let result = run_layout(&args, &run_id, name, &nodes, &placement).await?;
        print_layout(&result);
        layouts.push(result);
    }
    let mut params = args.common.params(&nodes[0]);
    params["other_urls"] = json!(nodes[1..].iter().map(Target::endpoint).collect::<Vec<_>>());
    params["members"] = json!(args.members);
    params["messages"] = json!(args.messages);
    params["rate"] = json!(args.rate);
    let exact = layouts.iter().all(|l| l["as_expected"] == json!(true));
    println!(
        "group-fanout: {}",
        if exact {
            "every message reached exactly the nodes holding members, once each"
        } else {
            "counters differ from the expectation (see above)"
        }
    );
    Ok(json!({
        "scenario": "group-fanout",
        "run_id": run_id,
        "params": params,
        "as_expected": exact,
        "layouts": layouts,
    }))
}

/// One layout: connects the members where `placement` says (member i on node
/// `placement[i]`, member 0 the sender), creates the group, and reads every node's counters
/// around the layout's messages.
async fn run_layout(
    args: &GroupFanoutArgs,
    run_id: &str,
    name: &str,
    nodes: &[Target],
    placement: &[usize],
) -> Result<Value> {
    let (sender, receivers, room) = open_group(run_id, name, nodes, placement).await?;
    let settle = Duration::from_secs_f64(args.settle);
    tokio::time::sleep(settle).await;
    let before = scrape_all(nodes).await?;

    // Receivers count message.new by client_id while the sender sends on schedule.
    let prefix = format!("{run_id}-{name}-");
    let t0 = Instant::now() + Duration::from_millis(100);
    let send_end = t0 + Duration::from_secs_f64(args.messages as f64 / args.rate);
    let deadline = send_end + Duration::from_secs(args.grace);
    let tasks: Vec<_> = receivers
        .into_iter()
        .map(|conn| tokio::spawn(receive(conn, prefix.clone(), args.messages, deadline)))
        .collect();
    let mut sent = send_messages(args, sender, &room, &prefix, t0, deadline).await?;
    let mut delivery = LatencyRecorder::new();
    let (mut delivered, mut duplicates) = (0u64, 0u64);
    let mut conns = vec![sent.sender];
    for task in tasks {
        let outcome = task.await?;
        for (n, at) in &outcome.first_arrival {
            delivery.record(at.saturating_duration_since(sent.sent_at[*n as usize]));
        }
        delivered += outcome.first_arrival.len() as u64;
        duplicates += outcome.duplicates;
        sent.errors.merge(&outcome.errors);
        conns.push(outcome.conn);
    }
    tokio::time::sleep(settle).await;
    let after = scrape_all(nodes).await?;
    close_all(conns).await;

    let k = args.messages;
    let counters = NodeCounters::compare(nodes, placement, &before, &after, k);
    let expected_deliveries = k * (placement.len() as u64 - 1);
    let as_expected = counters.as_expected && delivered == expected_deliveries && duplicates == 0;
    Ok(json!({
        "layout": name,
        "room_id": room,
        "messages": k,
        "acked": sent.acked,
        "expected_deliveries": expected_deliveries,
        "delivered": delivered,
        "lost": expected_deliveries.saturating_sub(delivered),
        "duplicates": duplicates,
        "delivery_ms": delivery.summary(),
        "nodes_holding_members": counters.holding,
        "nodes_receiving_per_message": round3(counters.receiving_per_message),
        "nodes": counters.rows,
        "errors": sent.errors.to_json(),
        "as_expected": as_expected,
    }))
}

/// Connects the members (the others first), then has member 0 create the group and waits
/// until every other member has been told. Returns the sender, the receivers and the room.
async fn open_group(
    run_id: &str,
    name: &str,
    nodes: &[Target],
    placement: &[usize],
) -> Result<(Connection, Vec<Connection>, String)> {
    let users: Vec<String> = (0..placement.len()).map(|i| format!("lt-{run_id}-{name}-m{i}")).collect();
    let mut conns = Vec::new();
    for (user, &node) in users.iter().zip(placement) {
        conns.push(Connection::connect(&nodes[node], user, SETUP_TIMEOUT).await?);
    }
    let mut receivers = conns.split_off(1);
    let mut sender = conns.pop().expect("one sender");
    let created = sender
        .request(
            "room.group.create",
            json!({"name": format!("lt {run_id} {name}"), "members": &users[1..]}),
            SETUP_TIMEOUT,
        )
        .await?;
    let room = created["room"]["id"].as_str().map(str::to_owned).context("room.group.create without room.id")?;
    for receiver in &mut receivers {
        wait_for_event(receiver, "room.created").await?;
    }
    Ok((sender, receivers, room))
}

/// What the sender did: its connection, each message's send instant, acks and errors.
struct Sent {
    sender: Connection,
    sent_at: Vec<Instant>,
    acked: u64,
    errors: ErrorCounts,
}

/// Sends `--messages` messages at `--rate` from `t0`, reading acks as they come, then waits
/// for the rest of the acks until `deadline`.
async fn send_messages(
    args: &GroupFanoutArgs,
    mut sender: Connection,
    room: &str,
    prefix: &str,
    t0: Instant,
    deadline: Instant,
) -> Result<Sent> {
    let body = super::body(args.common.body_bytes);
    let mut errors = ErrorCounts::default();
    let mut sent_at: Vec<Instant> = Vec::new();
    let mut awaiting: HashSet<i64> = HashSet::new();
    let mut acked = 0u64;
    let progress = Progress::default();
    for n in 0..args.messages {
        sleep_until(t0 + Duration::from_secs_f64(n as f64 / args.rate)).await;
        sent_at.push(Instant::now());
        awaiting.insert(sender.send("message.send", text_message(room, &body, format!("{prefix}{n}")))?);
        drain_acks(&mut sender, &mut awaiting, &mut acked, &mut errors, &progress, Duration::ZERO).await;
    }
    while !awaiting.is_empty() && Instant::now() < deadline {
        drain_acks(&mut sender, &mut awaiting, &mut acked, &mut errors, &progress, Duration::from_millis(100)).await;
    }
    Ok(Sent { sender, sent_at, acked, errors })
}

/// Per node: members held and the bus counters' differences, against the expectation
/// (Δreceived = messages where members are, 0 elsewhere; Δpublished = messages on the
/// sender's node; nothing dropped).
struct NodeCounters {
    rows: Vec<Value>,
    /// Nodes holding members.
    holding: usize,
    /// Σ Δreceived / messages over the nodes.
    receiving_per_message: f64,
    as_expected: bool,
}

impl NodeCounters {
    fn compare(
        nodes: &[Target],
        placement: &[usize],
        before: &[BTreeMap<String, f64>],
        after: &[BTreeMap<String, f64>],
        k: u64,
    ) -> Self {
        let mut c = Self { rows: Vec::new(), holding: 0, receiving_per_message: 0.0, as_expected: true };
        for (i, node) in nodes.iter().enumerate() {
            let members = placement.iter().filter(|&&p| p == i).count();
            let delta =
                |name: &str| after[i].get(name).copied().unwrap_or(0.0) - before[i].get(name).copied().unwrap_or(0.0);
            let published = delta("switchboard_bus_published_total");
            let received = delta("switchboard_bus_received_total");
            let dropped = delta("switchboard_bus_dropped_total");
            let expected_received = if members > 0 { k as f64 } else { 0.0 };
            let expected_published = if i == 0 { k as f64 } else { 0.0 };
            c.as_expected &= received == expected_received && published == expected_published && dropped == 0.0;
            c.receiving_per_message += received / k as f64;
            c.holding += usize::from(members > 0);
            c.rows.push(json!({
                "url": node.endpoint(),
                "members": members,
                "published": published,
                "received": received,
                "received_per_message": round3(received / k as f64),
                "dropped": dropped,
                "subscriptions": after[i].get("switchboard_bus_subscriptions"),
            }));
        }
        c
    }
}

struct Received {
    conn: Connection,
    /// Message index → first arrival.
    first_arrival: BTreeMap<u64, Instant>,
    duplicates: u64,
    errors: ErrorCounts,
}

async fn receive(mut conn: Connection, prefix: String, messages: u64, deadline: Instant) -> Received {
    let mut first_arrival = BTreeMap::new();
    let mut duplicates = 0u64;
    let mut errors = ErrorCounts::default();
    let progress = Progress::default();
    while (first_arrival.len() as u64) < messages {
        let next = tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), conn.recv()).await;
        let Ok(Some(Inbound { at, frame })) = next else { break };
        match frame {
            Frame::Event { event, data } if event == "message.new" => {
                let n = data["message"]["client_id"]
                    .as_str()
                    .and_then(|c| c.strip_prefix(prefix.as_str()))
                    .and_then(|n| n.parse::<u64>().ok());
                match n {
                    Some(n) if first_arrival.contains_key(&n) => duplicates += 1,
                    Some(n) => {
                        first_arrival.insert(n, at);
                    }
                    None => errors.add("unexpected_message"),
                }
            }
            other => {
                if note_unexpected(other, &mut errors, &progress) {
                    break;
                }
            }
        }
    }
    // Catch duplicates that trail the last first arrival.
    let linger = tokio::time::Instant::now() + Duration::from_millis(300);
    while let Ok(Some(Inbound { frame, .. })) = tokio::time::timeout_at(linger, conn.recv()).await {
        if let Frame::Event { event, data } = frame
            && event == "message.new"
            && data["message"]["client_id"].as_str().is_some_and(|c| c.starts_with(prefix.as_str()))
        {
            duplicates += 1;
        }
    }
    Received { conn, first_arrival, duplicates, errors }
}

/// Reads acks already arrived (or arriving within `wait`).
async fn drain_acks(
    sender: &mut Connection,
    awaiting: &mut HashSet<i64>,
    acked: &mut u64,
    errors: &mut ErrorCounts,
    progress: &Progress,
    wait: Duration,
) {
    loop {
        let Ok(Some(Inbound { frame, .. })) = tokio::time::timeout(wait, sender.recv()).await else { return };
        match frame {
            Frame::Ack(a) => {
                if awaiting.remove(&a.id) {
                    if a.ok {
                        *acked += 1;
                    } else {
                        errors.add(a.error_code.unwrap_or_else(|| "ack_error".into()));
                    }
                }
            }
            other => {
                if note_unexpected(other, errors, progress) {
                    return;
                }
            }
        }
    }
}

async fn wait_for_event(conn: &mut Connection, wanted: &str) -> Result<()> {
    let deadline = tokio::time::Instant::now() + SETUP_TIMEOUT;
    loop {
        let inbound = tokio::time::timeout_at(deadline, conn.recv())
            .await
            .map_err(|_| anyhow!("{}: no {wanted} within {SETUP_TIMEOUT:?}", conn.user()))?
            .ok_or_else(|| anyhow!("{}: closed awaiting {wanted}", conn.user()))?;
        if let Frame::Event { event, .. } = inbound.frame
            && event == wanted
        {
            return Ok(());
        }
    }
}

async fn scrape_all(nodes: &[Target]) -> Result<Vec<BTreeMap<String, f64>>> {
    let mut out = Vec::new();
    for node in nodes {
        out.push(scrape(node.authority(), |name| COUNTERS.contains(&name)).await?);
    }
    Ok(out)
}

fn print_layout(r: &Value) {
    println!(
        "layout {:<9}  messages {}  delivered {}/{}  duplicates {}  nodes holding members {}  nodes receiving per message {}",
        r["layout"].as_str().unwrap_or("?"),
        r["messages"],
        r["delivered"],
        r["expected_deliveries"],
        r["duplicates"],
        r["nodes_holding_members"],
        r["nodes_receiving_per_message"]
    );
    for node in r["nodes"].as_array().into_iter().flatten() {
        println!(
            "  {:<26} members {}  Δpublished {}  Δreceived {} ({} per message)  Δdropped {}  subscriptions {}",
            node["url"].as_str().unwrap_or("?"),
            node["members"],
            node["published"],
            node["received"],
            node["received_per_message"],
            node["dropped"],
            node["subscriptions"]
        );
    }
    println!("  delivery  {}", describe_latency(&r["delivery_ms"]));
    if r["errors"]["total"].as_u64().unwrap_or(0) > 0 {
        println!("  errors: {}", r["errors"]);
    }
}
