//! `throughput`: closed-loop durable write throughput.
//!
//! Each sender has its own direct room (with a peer that never connects, so nothing is fanned
//! out: this measures the write path) and keeps `--inflight` `message.send` requests
//! outstanding, sending the next as soon as one is acknowledged. An ok ack means the message
//! is committed, so acks per second is durable messages per second. After an error ack the
//! slot is refilled on the next refill tick rather than at once, so a refusing server is
//! not hammered in a tight loop.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use serde_json::{Value, json};

use super::{Common, close_all, connect_all, note_unexpected, open_direct_rooms, sleep_until};
use crate::client::{Connection, Frame, Inbound};
use crate::stats::{ErrorCounts, LatencyRecorder, Progress, describe_latency, round3};

/// How often a sender tops up slots left empty after error acks.
const REFILL_EVERY: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, Args)]
pub struct ThroughputArgs {
    #[command(flatten)]
    pub common: Common,

    /// Sending connections, each with its own direct room.
    #[arg(long, default_value_t = 64)]
    pub senders: usize,

    /// Requests each sender keeps outstanding.
    #[arg(long, default_value_t = 16)]
    pub inflight: usize,

    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 20)]
    pub duration: u64,

    /// Seconds of sending before measuring starts.
    #[arg(long, default_value_t = 3)]
    pub warmup: u64,

    /// Seconds to wait after the run for outstanding acks.
    #[arg(long, default_value_t = 10)]
    pub grace: u64,
}

#[derive(Clone, Copy)]
struct Plan {
    measure_start: Instant,
    send_end: Instant,
    grace_end: Instant,
}

impl Plan {
    fn in_window(&self, at: Instant) -> bool {
        at >= self.measure_start && at < self.send_end
    }
}

struct Outcome {
    ack: LatencyRecorder,
    errors: ErrorCounts,
    sent: u64,
    acked: u64,
    acked_in_window: u64,
    unacked: u64,
}

impl Outcome {
    fn new() -> Self {
        Self {
            ack: LatencyRecorder::new(),
            errors: ErrorCounts::default(),
            sent: 0,
            acked: 0,
            acked_in_window: 0,
            unacked: 0,
        }
    }
}

pub async fn run(args: ThroughputArgs) -> Result<Value> {
    if args.senders == 0 || args.inflight == 0 || args.duration == 0 {
        bail!("--senders, --inflight and --duration must be positive");
    }
    let target = args.common.target()?;
    let run_id = super::new_run_id();
    eprintln!(
        "throughput run {run_id}: {} senders x {} in flight for {} s (+{} s warm-up) against {}",
        args.senders,
        args.inflight,
        args.duration,
        args.warmup,
        target.endpoint()
    );

    let senders: Vec<String> = (0..args.senders).map(|i| format!("lt-{run_id}-t{i}")).collect();
    let peers: Vec<String> = senders.iter().map(|s| format!("{s}-peer")).collect();
    let setup = Instant::now();
    let conns = connect_all(&target, senders, args.common.connect_concurrency).await?;
    let with_rooms = open_direct_rooms(conns, peers, args.common.connect_concurrency).await?;
    eprintln!("set up {} connections and rooms in {:.1} s", args.senders, setup.elapsed().as_secs_f64());

    let t0 = Instant::now();
    let measure_start = t0 + Duration::from_secs(args.warmup);
    let send_end = measure_start + Duration::from_secs(args.duration);
    let plan = Plan { measure_start, send_end, grace_end: send_end + Duration::from_secs(args.grace) };
    let progress = Arc::new(Progress::default());
    let reporter = progress.spawn_reporter(t0);
    let body = Arc::new(super::body(args.common.body_bytes));
    let tasks: Vec<_> = with_rooms
        .into_iter()
        .map(|(conn, room)| {
            let progress = Arc::clone(&progress);
            let body = Arc::clone(&body);
            tokio::spawn(drive_sender(conn, room, args.inflight, plan, body, progress))
        })
        .collect();

    let mut total = Outcome::new();
    let mut per_sender = Vec::with_capacity(args.senders);
    let mut conns = Vec::with_capacity(args.senders);
    for task in tasks {
        let (outcome, conn) = task.await?;
        total.ack.merge(&outcome.ack);
        total.errors.merge(&outcome.errors);
        total.sent += outcome.sent;
        total.acked += outcome.acked;
        total.acked_in_window += outcome.acked_in_window;
        total.unacked += outcome.unacked;
        per_sender.push(outcome.acked_in_window);
        conns.push(conn);
    }
    progress.stop();
    let timeline = reporter.await?;
    close_all(conns).await;

    let mut report = report(&args, &run_id, &target, &total, &per_sender);
    report["timeline"] = timeline.to_json();
    print(&report);
    super::rate_limit_hint(total.errors.get("rate_limited"), total.errors.get("close:1008"));
    Ok(report)
}

async fn drive_sender(
    mut conn: Connection,
    room: String,
    inflight: usize,
    plan: Plan,
    body: Arc<String>,
    progress: Arc<Progress>,
) -> (Outcome, Connection) {
    let mut out = Outcome::new();
    let mut outstanding: HashMap<i64, Instant> = HashMap::with_capacity(inflight);
    let mut n = 0u64;
    let client_prefix = format!("{}-", conn.user());
    let mut sending = true;
    let mut open = true;
    let mut refill = tokio::time::interval(REFILL_EVERY);
    refill.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    // Fills every free slot; false when the connection is gone.
    let mut top_up = |conn: &mut Connection, outstanding: &mut HashMap<i64, Instant>, out: &mut Outcome| -> bool {
        while outstanding.len() < inflight {
            let data = json!({
                "room_id": room,
                "kind": "text",
                "body": body.as_str(),
                "client_id": format!("{client_prefix}{n}"),
            });
            n += 1;
            let sent_at = Instant::now();
            match conn.send("message.send", data) {
                Ok(id) => {
                    outstanding.insert(id, sent_at);
                    out.sent += 1;
                    Progress::bump(&progress.sent);
                }
                Err(_) => {
                    out.errors.add("send_failed");
                    Progress::bump(&progress.errors);
                    return false;
                }
            }
        }
        true
    };

    if !top_up(&mut conn, &mut outstanding, &mut out) {
        sending = false;
        open = false;
    }
    loop {
        if !sending && (!open || outstanding.is_empty()) {
            break;
        }
        tokio::select! {
            inbound = conn.recv(), if open => match inbound {
                None => open = false,
                Some(Inbound { at, frame: Frame::Ack(a) }) => {
                    let Some(sent_at) = outstanding.remove(&a.id) else {
                        out.errors.add("unknown_ack");
                        continue;
                    };
                    if a.ok {
                        out.acked += 1;
                        Progress::bump(&progress.acked);
                        if plan.in_window(at) {
                            out.acked_in_window += 1;
                            out.ack.record(at.saturating_duration_since(sent_at));
                        }
                        if sending && !top_up(&mut conn, &mut outstanding, &mut out) {
                            sending = false;
                        }
                    } else {
                        out.errors.add(a.error_code.unwrap_or_else(|| "ack_error".into()));
                        Progress::bump(&progress.errors);
                    }
                }
                Some(Inbound { frame, .. }) => {
                    if note_unexpected(frame, &mut out.errors, &progress) {
                        open = false;
                        sending = false;
                    }
                }
            },
            _ = refill.tick(), if sending => {
                // Past the end, or the connection is gone: stop refilling.
                if Instant::now() >= plan.send_end || !top_up(&mut conn, &mut outstanding, &mut out) {
                    sending = false;
                }
            }
            _ = sleep_until(plan.send_end), if sending => sending = false,
            _ = sleep_until(plan.grace_end), if !sending => break,
        }
    }
    out.unacked = outstanding.len() as u64;
    (out, conn)
}

fn report(
    args: &ThroughputArgs,
    run_id: &str,
    target: &crate::client::Target,
    t: &Outcome,
    per_sender: &[u64],
) -> Value {
    let secs = args.duration as f64;
    let mut params = args.common.params(target);
    params["senders"] = json!(args.senders);
    params["inflight"] = json!(args.inflight);
    params["duration_secs"] = json!(args.duration);
    params["warmup_secs"] = json!(args.warmup);
    params["grace_secs"] = json!(args.grace);
    let per_sec = |n: u64| round3(n as f64 / secs);
    json!({
        "scenario": "throughput",
        "run_id": run_id,
        "params": params,
        "acks_per_sec": per_sec(t.acked_in_window),
        "acked_measured": t.acked_in_window,
        "per_sender_acks_per_sec": {
            "min": per_sender.iter().copied().min().map(per_sec),
            "max": per_sender.iter().copied().max().map(per_sec),
        },
        "ack_ms": t.ack.summary(),
        "sent": t.sent,
        "acked": t.acked,
        "unacked": t.unacked,
        "errors": t.errors.to_json(),
    })
}

fn print(r: &Value) {
    println!(
        "throughput  run {}  {} acks/s (durable messages/s; per sender {}..{})",
        r["run_id"].as_str().unwrap_or("?"),
        r["acks_per_sec"],
        r["per_sender_acks_per_sec"]["min"],
        r["per_sender_acks_per_sec"]["max"]
    );
    println!("  ack  {}", describe_latency(&r["ack_ms"]));
    println!("  sent {}  acked {}  unacked {}  errors {}", r["sent"], r["acked"], r["unacked"], r["errors"]["total"]);
    if let Some(by_kind) = r["errors"]["by_kind"].as_object().filter(|m| !m.is_empty()) {
        println!("  errors by kind: {}", Value::Object(by_kind.clone()));
    }
}
