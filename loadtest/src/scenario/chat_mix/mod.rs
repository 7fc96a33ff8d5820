//! `chat-mix`: 1:1 rooms, groups and typing at a fixed offered rate, stepped up until the
//! delivery p99 passes a limit (50 ms by default). Every message is persisted by the server
//! (its ack follows the commit); typing is relayed only.
//!
//! Rooms are pairs and groups of `--group-size`; every user belongs to one room and one task
//! drives all members of a room (their frames share one queue), so the room's ledger needs no
//! lock. A central scheduler hands out events open loop: each millisecond it dispatches every
//! event due, picking a group room with probability `--group-share` (else a pair) and a typing
//! event with probability `--typing-share` (else a message); the room's next member in turn
//! sends it. Latency runs from the moment the frame is handed to the writer to its arrival at
//! each other member (`message.new`, matched by `client_id`; `typing`, matched in order per
//! sender). Delivery p99 decides a step: deliveries still missing when a step is judged count
//! as later than any measured one. With several nodes, `--cross-node-share` of the rooms have
//! their members spread over the nodes (the rest sit on one node each), so that share of the
//! traffic crosses the bus.

mod room;
pub(crate) mod setup;
mod steps;

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use serde_json::{Value, json};

use super::{Common, print_errors_by_kind};
use crate::client::Target;
use crate::stats::{Progress, describe_latency};
use room::FinalCounts;
use steps::Stepped;

#[derive(Debug, Clone, Args)]
pub struct ChatMixArgs {
    #[command(flatten)]
    pub common: Common,

    /// Further nodes of a cluster (repeatable); --url is the first.
    #[arg(long = "node-url")]
    pub node_urls: Vec<String>,

    /// Share of the rooms whose members are spread over the nodes (0 to 1); the others have
    /// all their members on one node. Needs --node-url.
    #[arg(long, default_value_t = 0.0)]
    pub cross_node_share: f64,

    /// Direct (1:1) rooms.
    #[arg(long, default_value_t = 200)]
    pub pairs: usize,

    /// Group rooms.
    #[arg(long, default_value_t = 40)]
    pub groups: usize,

    /// Members per group, the creator included (at most 1 + the server's group limit).
    #[arg(long, default_value_t = 5)]
    pub group_size: usize,

    /// Share of the events sent in groups (the rest go to 1:1 rooms).
    #[arg(long, default_value_t = 0.3)]
    pub group_share: f64,

    /// Share of the events that are typing indicators (the rest are messages).
    #[arg(long, default_value_t = 0.2)]
    pub typing_share: f64,

    /// Offered rates to step through, events/s (comma-separated). Default: from
    /// --start-rate, times --step-factor each step, until a step fails or --max-rate.
    #[arg(long, value_delimiter = ',')]
    pub rates: Vec<f64>,

    #[arg(long, default_value_t = 500.0)]
    pub start_rate: f64,

    #[arg(long, default_value_t = 1.5)]
    pub step_factor: f64,

    #[arg(long, default_value_t = 1_000_000.0)]
    pub max_rate: f64,

    /// Measured seconds per step.
    #[arg(long, default_value_t = 10)]
    pub step_secs: u64,

    /// Unmeasured seconds at the start of each step.
    #[arg(long, default_value_t = 2)]
    pub step_warmup: u64,

    /// A step passes while its delivery p99 is at most this.
    #[arg(long, default_value_t = 50.0)]
    pub p99_limit_ms: f64,

    /// Steps to run after the first failing one (to see the curve bend).
    #[arg(long, default_value_t = 0)]
    pub steps_past_limit: usize,

    /// Seconds to wait after the last step for outstanding deliveries; missing then = lost.
    #[arg(long, default_value_t = 5)]
    pub grace: u64,
}

pub async fn run(args: ChatMixArgs) -> Result<Value> {
    if !(2..=64).contains(&args.group_size) || args.pairs + args.groups == 0 {
        bail!("--group-size must be 2..=64 and there must be rooms");
    }
    let nodes = args.common.targets(&args.node_urls)?;
    let run_id = super::new_run_id();
    let (room_count, users) = (args.pairs + args.groups, user_count(&args));
    eprintln!(
        "chat-mix run {run_id}: {} pairs + {} groups of {} ({users} users) on {} node(s), cross-node share {}, {} framing",
        args.pairs,
        args.groups,
        args.group_size,
        nodes.len(),
        args.cross_node_share,
        args.common.framing.name()
    );
    let setup = Instant::now();
    let rooms = setup::set_up_rooms(&args, &nodes, &run_id).await?;
    let crossing_rooms = rooms.iter().filter(|(r, _)| r.crossing).count();
    eprintln!(
        "set up {users} connections and {room_count} rooms ({crossing_rooms} across nodes) in {:.1} s",
        setup.elapsed().as_secs_f64()
    );

    let progress = Arc::new(Progress::default());
    let body: Arc<str> = super::body(args.common.body_bytes).into();
    let (commands, tasks) = room::spawn_rooms(rooms, &run_id, &body, &progress);
    let started = Instant::now();
    let reporter = progress.spawn_reporter(started);
    let stepped = steps::run_steps(&args, &commands, started).await;
    let totals = steps::final_tally(&args, &commands).await;
    // Closing the command queues ends the room tasks.
    drop(commands);
    progress.stop();
    let timeline = reporter.await?;
    let mut conns = Vec::new();
    for task in tasks {
        conns.extend(task.await?);
    }
    super::close_all(conns).await;

    let mut report = report(&args, &run_id, &nodes, crossing_rooms, stepped, &totals);
    report["timeline"] = timeline.to_json();
    print(&report);
    super::rate_limit_hint(&totals.errors);
    Ok(report)
}

/// Users in all: two per pair, `--group-size` per group.
fn user_count(args: &ChatMixArgs) -> usize {
    2 * args.pairs + args.groups * args.group_size
}

fn report(
    args: &ChatMixArgs,
    run_id: &str,
    nodes: &[Target],
    crossing_rooms: usize,
    stepped: Stepped,
    totals: &FinalCounts,
) -> Value {
    let mut params = args.common.params(&nodes[0]);
    params["nodes"] = json!(nodes.iter().map(Target::endpoint).collect::<Vec<_>>());
    params["cross_node_share"] = json!(args.cross_node_share);
    params["pairs"] = json!(args.pairs);
    params["groups"] = json!(args.groups);
    params["group_size"] = json!(args.group_size);
    params["group_share"] = json!(args.group_share);
    params["typing_share"] = json!(args.typing_share);
    params["step_secs"] = json!(args.step_secs);
    params["step_warmup_secs"] = json!(args.step_warmup);
    params["p99_limit_ms"] = json!(args.p99_limit_ms);
    json!({
        "scenario": "chat-mix",
        "run_id": run_id,
        "params": params,
        "users": user_count(args),
        "rooms": args.pairs + args.groups,
        "rooms_across_nodes": crossing_rooms,
        "max_rate_within_limit": stepped.best,
        "steps": stepped.steps,
        "messages": totals.messages,
        "expected_deliveries": totals.expected,
        "lost": totals.lost,
        "duplicates": totals.duplicates,
        "unacked": totals.unacked,
        "refused": totals.refused,
        "typing_lost": totals.typing_lost,
        "errors": totals.errors.to_json(),
    })
}

fn print(r: &Value) {
    println!(
        "chat-mix  run {}  {} users in {} rooms ({} across nodes)  max rate with p99 <= {} ms: {}",
        r["run_id"].as_str().unwrap_or("?"),
        r["users"],
        r["rooms"],
        r["rooms_across_nodes"],
        r["params"]["p99_limit_ms"],
        r["max_rate_within_limit"]
    );
    for s in r["steps"].as_array().into_iter().flatten() {
        println!(
            "  offered {:>8}/s  sent {:>9}/s  delivery {}",
            s["offered_rate"],
            s["sent_per_sec"],
            describe_latency(&s["delivery_ms"])
        );
        println!("  {:>39}  typing   {}", "", describe_latency(&s["typing_ms"]));
        println!("  {:>39}  ack      {}", "", describe_latency(&s["ack_ms"]));
    }
    println!(
        "  messages {}  deliveries expected {}  lost {}  duplicates {}  unacked {}  refused {}  typing lost {}  errors {}",
        r["messages"],
        r["expected_deliveries"],
        r["lost"],
        r["duplicates"],
        r["unacked"],
        r["refused"],
        r["typing_lost"],
        r["errors"]["total"]
    );
    print_errors_by_kind(&r["errors"]);
}
