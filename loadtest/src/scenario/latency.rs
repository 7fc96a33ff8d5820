//! `latency`: open-loop send→delivery and send→ack latency between pairs of users.
//!
//! Each pair is a sender and a receiver with a direct room. Senders send on a fixed schedule
//! (the total `--rate`, spread evenly over the senders and phase-shifted so the sends are
//! evenly spaced overall) whether or not earlier messages were acknowledged, so a slow server
//! cannot slow the offered load down: sending never waits for the socket, so a stalled
//! server shows up as latency, not as a lower send rate (no coordinated omission).
//! Latencies are measured from the instant a frame is handed to the connection's writer.
//! How late that was against the schedule is reported separately as `send_lag`: tokio's
//! timer has 1 ms granularity, so ~1 ms is normal; more means the generator is short of CPU
//! and the offered load was burstier than asked. A message's `client_id` is `RUN-PAIR-N`:
//! N indexes the pair's ledger of send times. One task drives both connections of a pair,
//! so the ledger needs no lock. With `--receiver-url` the receivers connect to another node
//! of a cluster than the senders, so delivery crosses the bus (Redis) between nodes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use serde_json::{Value, json};

use super::{Common, close_all, connect_all, note_unexpected, open_direct_rooms, sleep_until};
use crate::client::{Connection, Frame, Inbound, Target};
use crate::stats::{ErrorCounts, LatencyRecorder, Progress, describe_latency, round3};

/// When `send_lag` p99 exceeds this, the generator warns that it could not keep the schedule.
const LAG_WARNING: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Args)]
pub struct LatencyArgs {
    #[command(flatten)]
    pub common: Common,

    /// Server the receivers connect to (default: --url). Give another node of a cluster to
    /// measure cross-node delivery: senders stay on --url.
    #[arg(long)]
    pub receiver_url: Option<String>,

    /// Sender/receiver pairs, each with its own direct room.
    #[arg(long, default_value_t = 50)]
    pub pairs: usize,

    /// Total offered messages per second, over all senders.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,

    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 20)]
    pub duration: u64,

    /// Seconds of sending before measuring starts.
    #[arg(long, default_value_t = 3)]
    pub warmup: u64,

    /// Seconds to wait after the last send for outstanding deliveries and acks; a message
    /// not delivered by then counts as lost.
    #[arg(long, default_value_t = 5)]
    pub grace: u64,
}

struct Pair {
    index: usize,
    sender: Connection,
    receiver: Connection,
    room: String,
}

/// The shared timetable.
#[derive(Clone, Copy)]
struct Plan {
    t0: Instant,
    /// Seconds between two sends of one sender.
    interval: f64,
    /// Seconds between two consecutive senders' first sends (1 / rate).
    slot: f64,
    measure_start: Instant,
    send_end: Instant,
    grace_end: Instant,
}

impl Plan {
    fn send_time(&self, pair: usize, k: u64) -> Instant {
        self.t0 + Duration::from_secs_f64(pair as f64 * self.slot + k as f64 * self.interval)
    }

    fn in_window(&self, at: Instant) -> bool {
        at >= self.measure_start && at < self.send_end
    }
}

/// One scheduled message in a pair's ledger.
struct Sent {
    sent_at: Instant,
    /// Scheduled inside the measured window.
    measured: bool,
    acked: bool,
    /// The server refused it (error ack): it will never be delivered.
    failed: bool,
    deliveries: u32,
}

struct Outcome {
    delivery: LatencyRecorder,
    ack: LatencyRecorder,
    send_lag: LatencyRecorder,
    errors: ErrorCounts,
    sent: u64,
    sent_measured: u64,
    acked_in_window: u64,
    delivered_in_window: u64,
    lost: u64,
    lost_measured: u64,
    unacked: u64,
    duplicates: u64,
}

impl Outcome {
    fn new() -> Self {
        Self {
            delivery: LatencyRecorder::new(),
            ack: LatencyRecorder::new(),
            send_lag: LatencyRecorder::new(),
            errors: ErrorCounts::default(),
            sent: 0,
            sent_measured: 0,
            acked_in_window: 0,
            delivered_in_window: 0,
            lost: 0,
            lost_measured: 0,
            unacked: 0,
            duplicates: 0,
        }
    }

    fn merge(&mut self, other: &Outcome) {
        self.delivery.merge(&other.delivery);
        self.ack.merge(&other.ack);
        self.send_lag.merge(&other.send_lag);
        self.errors.merge(&other.errors);
        self.sent += other.sent;
        self.sent_measured += other.sent_measured;
        self.acked_in_window += other.acked_in_window;
        self.delivered_in_window += other.delivered_in_window;
        self.lost += other.lost;
        self.lost_measured += other.lost_measured;
        self.unacked += other.unacked;
        self.duplicates += other.duplicates;
    }
}

pub async fn run(args: LatencyArgs) -> Result<Value> {
    if args.pairs == 0 || args.rate.is_nan() || args.rate <= 0.0 || args.duration == 0 {
        bail!("--pairs, --rate and --duration must be positive");
    }
    let target = args.common.target()?;
    let receiver_target = match &args.receiver_url {
        Some(url) => args.common.target_for(url)?,
        None => target.clone(),
    };
    let run_id = super::new_run_id();
    eprintln!(
        "latency run {run_id}: {} pairs, {} msg/s for {} s (+{} s warm-up), senders on {}, receivers on {}",
        args.pairs,
        args.rate,
        args.duration,
        args.warmup,
        target.endpoint(),
        receiver_target.endpoint()
    );

    // Receivers first, so each is online before its room exists and sees every message.
    let senders: Vec<String> = (0..args.pairs).map(|i| format!("lt-{run_id}-p{i}-s")).collect();
    let receivers: Vec<String> = (0..args.pairs).map(|i| format!("lt-{run_id}-p{i}-r")).collect();
    let setup = Instant::now();
    let receiver_conns = connect_all(&receiver_target, receivers.clone(), args.common.connect_concurrency).await?;
    let sender_conns = connect_all(&target, senders, args.common.connect_concurrency).await?;
    let with_rooms = open_direct_rooms(sender_conns, receivers, args.common.connect_concurrency).await?;
    eprintln!(
        "set up {} connections and {} rooms in {:.1} s",
        2 * args.pairs,
        args.pairs,
        setup.elapsed().as_secs_f64()
    );
    let pairs: Vec<Pair> = with_rooms
        .into_iter()
        .zip(receiver_conns)
        .enumerate()
        .map(|(index, ((sender, room), receiver))| Pair { index, sender, receiver, room })
        .collect();

    let t0 = Instant::now() + Duration::from_millis(200);
    let measure_start = t0 + Duration::from_secs(args.warmup);
    let send_end = measure_start + Duration::from_secs(args.duration);
    let plan = Plan {
        t0,
        interval: args.pairs as f64 / args.rate,
        slot: 1.0 / args.rate,
        measure_start,
        send_end,
        grace_end: send_end + Duration::from_secs(args.grace),
    };
    let progress = Arc::new(Progress::default());
    let reporter = progress.spawn_reporter(t0);
    let body = Arc::new(super::body(args.common.body_bytes));
    let tasks: Vec<_> = pairs
        .into_iter()
        .map(|pair| {
            let progress = Arc::clone(&progress);
            let body = Arc::clone(&body);
            let prefix = format!("{run_id}-{}-", pair.index);
            tokio::spawn(drive_pair(pair, plan, prefix, body, progress))
        })
        .collect();

    let mut total = Outcome::new();
    let mut conns = Vec::new();
    for task in tasks {
        let (outcome, pair) = task.await?;
        total.merge(&outcome);
        conns.push(pair.sender);
        conns.push(pair.receiver);
    }
    progress.stop();
    let timeline = reporter.await?;
    close_all(conns).await;

    let mut report = report(&args, &run_id, &target, &receiver_target, &total);
    report["timeline"] = timeline.to_json();
    print(&report);
    super::rate_limit_hint(total.errors.get("rate_limited"), total.errors.get("close:1008"));
    Ok(report)
}

async fn drive_pair(
    mut pair: Pair,
    plan: Plan,
    prefix: String,
    body: Arc<String>,
    progress: Arc<Progress>,
) -> (Outcome, Pair) {
    let mut out = Outcome::new();

    let mut ledger: Vec<Sent> = Vec::new();
    let mut awaiting_ack: HashMap<i64, usize> = HashMap::new();
    let mut undelivered = 0u64;
    let (mut sending, mut sender_open, mut receiver_open) = (true, true, true);
    let mut k = 0u64;
    let mut next_at = plan.send_time(pair.index, 0);

    loop {
        let acks_settled = !sender_open || awaiting_ack.is_empty();
        let deliveries_settled = !receiver_open || undelivered == 0;
        if !sending && acks_settled && deliveries_settled {
            break;
        }
        tokio::select! {
            _ = sleep_until(next_at), if sending => {
                if next_at >= plan.send_end {
                    sending = false;
                    continue;
                }
                let sent_at = Instant::now();
                out.send_lag.record(sent_at.saturating_duration_since(next_at));
                let n = ledger.len();
                let data = json!({
                    "room_id": pair.room,
                    "kind": "text",
                    "body": body.as_str(),
                    "client_id": format!("{prefix}{n}"),
                });
                match pair.sender.send("message.send", data) {
                    Ok(id) => {
                        awaiting_ack.insert(id, n);
                        let measured = plan.in_window(next_at);
                        ledger.push(Sent {
                            sent_at,
                            measured,
                            acked: false,
                            failed: false,
                            deliveries: 0,
                        });
                        undelivered += 1;
                        out.sent += 1;
                        out.sent_measured += u64::from(measured);
                        Progress::bump(&progress.sent);
                    }
                    Err(_) => {
                        out.errors.add("send_failed");
                        Progress::bump(&progress.errors);
                        sending = false;
                    }
                }
                k += 1;
                next_at = plan.send_time(pair.index, k);
            }
            inbound = pair.sender.recv(), if sender_open => match inbound {
                None => sender_open = false,
                Some(Inbound { at, frame }) => match frame {
                    Frame::Ack(a) => {
                        let Some(n) = awaiting_ack.remove(&a.id) else {
                            out.errors.add("unknown_ack");
                            continue;
                        };
                        let sent = &mut ledger[n];
                        if a.ok {
                            sent.acked = true;
                            if sent.measured {
                                out.ack.record(at.saturating_duration_since(sent.sent_at));
                            }
                            out.acked_in_window += u64::from(plan.in_window(at));
                            Progress::bump(&progress.acked);
                        } else {
                            sent.failed = true;
                            if sent.deliveries == 0 {
                                undelivered -= 1;
                            }
                            out.errors.add(a.error_code.unwrap_or_else(|| "ack_error".into()));
                            Progress::bump(&progress.errors);
                        }
                    }
                    other => {
                        if note_unexpected(other, &mut out.errors, &progress) {
                            sender_open = false;
                            sending = false;
                        }
                    }
                },
            },
            inbound = pair.receiver.recv(), if receiver_open => match inbound {
                None => receiver_open = false,
                Some(Inbound { at, frame: Frame::Event { event, data } })
                    if event == "message.new" =>
                {
                    let n = data["message"]["client_id"]
                        .as_str()
                        .and_then(|c| c.strip_prefix(prefix.as_str()))
                        .and_then(|n| n.parse::<usize>().ok())
                        .filter(|&n| n < ledger.len());
                    let Some(n) = n else {
                        out.errors.add("unexpected_message");
                        continue;
                    };
                    let sent = &mut ledger[n];
                    sent.deliveries += 1;
                    if sent.deliveries > 1 {
                        out.duplicates += 1;
                        continue;
                    }
                    if !sent.failed {
                        undelivered -= 1;
                    }
                    let latency = at.saturating_duration_since(sent.sent_at);
                    if sent.measured {
                        out.delivery.record(latency);
                    }
                    progress.record_latency(latency);
                    out.delivered_in_window += u64::from(plan.in_window(at));
                    Progress::bump(&progress.delivered);
                }
                Some(Inbound { frame, .. }) => {
                    if note_unexpected(frame, &mut out.errors, &progress) {
                        receiver_open = false;
                    }
                }
            },
            _ = sleep_until(plan.grace_end), if !sending => break,
        }
    }

    for sent in &ledger {
        if sent.failed {
            continue;
        }
        if !sent.acked {
            out.unacked += 1;
        }
        if sent.deliveries == 0 {
            out.lost += 1;
            out.lost_measured += u64::from(sent.measured);
        }
    }
    (out, pair)
}

fn report(args: &LatencyArgs, run_id: &str, target: &Target, receiver_target: &Target, t: &Outcome) -> Value {
    let secs = args.duration as f64;
    let mut params = args.common.params(target);
    params["receiver_url"] = json!(receiver_target.endpoint());
    params["pairs"] = json!(args.pairs);
    params["rate"] = json!(args.rate);
    params["duration_secs"] = json!(args.duration);
    params["warmup_secs"] = json!(args.warmup);
    params["grace_secs"] = json!(args.grace);
    json!({
        "scenario": "latency",
        "run_id": run_id,
        "params": params,
        "offered_rate": args.rate,
        "sent": t.sent,
        "sent_measured": t.sent_measured,
        "sent_per_sec": round3(t.sent_measured as f64 / secs),
        "acked_per_sec": round3(t.acked_in_window as f64 / secs),
        "delivered_per_sec": round3(t.delivered_in_window as f64 / secs),
        "delivery_ms": t.delivery.summary(),
        "ack_ms": t.ack.summary(),
        "send_lag_ms": t.send_lag.summary(),
        "errors": t.errors.to_json(),
        "lost": t.lost,
        "lost_measured": t.lost_measured,
        "unacked": t.unacked,
        "duplicates": t.duplicates,
    })
}

fn print(r: &Value) {
    println!(
        "latency  run {}  offered {}/s  sent {}/s  acked {}/s  delivered {}/s",
        r["run_id"].as_str().unwrap_or("?"),
        r["offered_rate"],
        r["sent_per_sec"],
        r["acked_per_sec"],
        r["delivered_per_sec"]
    );
    println!("  delivery  {}", describe_latency(&r["delivery_ms"]));
    println!("  ack       {}", describe_latency(&r["ack_ms"]));
    println!("  send lag  {}", describe_latency(&r["send_lag_ms"]));
    println!(
        "  sent {} (measured {})  lost {} (measured {})  unacked {}  duplicates {}  errors {}",
        r["sent"],
        r["sent_measured"],
        r["lost"],
        r["lost_measured"],
        r["unacked"],
        r["duplicates"],
        r["errors"]["total"]
    );
    if let Some(by_kind) = r["errors"]["by_kind"].as_object().filter(|m| !m.is_empty()) {
        println!("  errors by kind: {}", Value::Object(by_kind.clone()));
    }
    if r["send_lag_ms"]["p99"].as_f64().is_some_and(|p99| p99 > LAG_WARNING.as_secs_f64() * 1000.0) {
        println!(
            "  warning: the generator sent late (send lag p99 over {} ms); latencies include its delay",
            LAG_WARNING.as_millis()
        );
    }
}
