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

use super::{
    Cadence, Common, LAG_WARNING, Phases, client_index, close_all, connect_all, drive_all, note_refused,
    note_unexpected, open_direct_rooms, print_errors_by_kind, sent_late, sleep_until, text_message,
};
use crate::client::{Ack, Connection, Frame, Inbound, Target};
use crate::stats::{ErrorCounts, LatencyRecorder, Progress, describe_latency, round3};

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

/// The shared timetable: every pair's sender sends on the cadence, one slot after the
/// previous pair's.
#[derive(Clone, Copy)]
struct Plan {
    cadence: Cadence,
    phases: Phases,
}

impl Plan {
    fn new(args: &LatencyArgs, t0: Instant) -> Self {
        let secs = Duration::from_secs;
        Self {
            cadence: Cadence::new(t0, args.rate, args.pairs),
            phases: Phases::new(t0, secs(args.warmup), secs(args.duration), secs(args.grace)),
        }
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
    let pairs = set_up_pairs(&args, &run_id, &target, &receiver_target).await?;

    let t0 = Instant::now() + Duration::from_millis(200);
    let plan = Plan::new(&args, t0);
    let body = Arc::new(super::body(args.common.body_bytes));
    let (results, timeline) = drive_all(t0, pairs, |pair, progress| {
        let prefix = format!("{run_id}-{}-", pair.index);
        PairRun::new(pair, plan, prefix, Arc::clone(&body), progress).drive()
    })
    .await?;
    let mut total = Outcome::new();
    let mut conns = Vec::new();
    for (outcome, pair) in results {
        total.merge(&outcome);
        conns.push(pair.sender);
        conns.push(pair.receiver);
    }
    close_all(conns).await;

    let mut report = report(&args, &run_id, &target, &receiver_target, &total);
    report["timeline"] = timeline.to_json();
    print(&report);
    super::rate_limit_hint(&total.errors);
    Ok(report)
}

/// Connects the receivers, then the senders, and opens every pair's direct room. Receivers
/// come first, so each is online before its room exists and sees every message.
async fn set_up_pairs(
    args: &LatencyArgs,
    run_id: &str,
    target: &Target,
    receiver_target: &Target,
) -> Result<Vec<Pair>> {
    let senders: Vec<String> = (0..args.pairs).map(|i| format!("lt-{run_id}-p{i}-s")).collect();
    let receivers: Vec<String> = (0..args.pairs).map(|i| format!("lt-{run_id}-p{i}-r")).collect();
    let setup = Instant::now();
    let receiver_conns = connect_all(receiver_target, receivers.clone(), args.common.connect_concurrency).await?;
    let sender_conns = connect_all(target, senders, args.common.connect_concurrency).await?;
    let with_rooms = open_direct_rooms(sender_conns, receivers, args.common.connect_concurrency).await?;
    eprintln!(
        "set up {} connections and {} rooms in {:.1} s",
        2 * args.pairs,
        args.pairs,
        setup.elapsed().as_secs_f64()
    );
    Ok(with_rooms
        .into_iter()
        .zip(receiver_conns)
        .enumerate()
        .map(|(index, ((sender, room), receiver))| Pair { index, sender, receiver, room })
        .collect())
}

/// One pair's run, driven by one task: its ledger of sent messages (indexed by the N of
/// their client_id) and what it measured.
struct PairRun {
    pair: Pair,
    plan: Plan,
    prefix: String,
    body: Arc<String>,
    progress: Arc<Progress>,
    out: Outcome,
    ledger: Vec<Sent>,
    /// Request id → ledger index.
    awaiting_ack: HashMap<i64, usize>,
    /// Messages neither delivered nor refused yet.
    undelivered: u64,
}

impl PairRun {
    fn new(pair: Pair, plan: Plan, prefix: String, body: Arc<String>, progress: Arc<Progress>) -> Self {
        let (ledger, awaiting_ack) = (Vec::new(), HashMap::new());
        Self { pair, plan, prefix, body, progress, out: Outcome::new(), ledger, awaiting_ack, undelivered: 0 }
    }

    /// Sends on schedule until the window ends, then waits (until the grace period ends) for
    /// every ack and delivery still due from a connection still open.
    async fn drive(mut self) -> (Outcome, Pair) {
        let (mut sending, mut sender_open, mut receiver_open) = (true, true, true);
        let mut k = 0u64;
        let mut next_at = self.plan.cadence.at(self.pair.index, 0);
        loop {
            let acks_settled = !sender_open || self.awaiting_ack.is_empty();
            let deliveries_settled = !receiver_open || self.undelivered == 0;
            if !sending && acks_settled && deliveries_settled {
                break;
            }
            tokio::select! {
                _ = sleep_until(next_at), if sending => {
                    if next_at >= self.plan.phases.send_end {
                        sending = false;
                        continue;
                    }
                    sending = self.send(next_at);
                    k += 1;
                    next_at = self.plan.cadence.at(self.pair.index, k);
                }
                inbound = self.pair.sender.recv(), if sender_open => match inbound {
                    None => sender_open = false,
                    Some(Inbound { at, frame: Frame::Ack(a) }) => self.on_ack(at, a),
                    Some(Inbound { frame, .. }) => {
                        if note_unexpected(frame, &mut self.out.errors, &self.progress) {
                            sender_open = false;
                            sending = false;
                        }
                    }
                },
                inbound = self.pair.receiver.recv(), if receiver_open => match inbound {
                    None => receiver_open = false,
                    Some(Inbound { at, frame: Frame::Event { event, data } }) if event == "message.new" => {
                        self.on_delivery(at, &data);
                    }
                    Some(Inbound { frame, .. }) => {
                        if note_unexpected(frame, &mut self.out.errors, &self.progress) {
                            receiver_open = false;
                        }
                    }
                },
                _ = sleep_until(self.plan.phases.grace_end), if !sending => break,
            }
        }
        self.finish()
    }

    /// Sends the message scheduled for `scheduled`; false when the connection is gone.
    fn send(&mut self, scheduled: Instant) -> bool {
        let sent_at = Instant::now();
        self.out.send_lag.record(sent_at.saturating_duration_since(scheduled));
        let n = self.ledger.len();
        let data = text_message(&self.pair.room, &self.body, format!("{}{n}", self.prefix));
        match self.pair.sender.send("message.send", data) {
            Ok(id) => {
                self.awaiting_ack.insert(id, n);
                let measured = self.plan.phases.in_window(scheduled);
                self.ledger.push(Sent { sent_at, measured, acked: false, failed: false, deliveries: 0 });
                self.undelivered += 1;
                self.out.sent += 1;
                self.out.sent_measured += u64::from(measured);
                Progress::bump(&self.progress.sent);
                true
            }
            Err(_) => {
                self.out.errors.add("send_failed");
                Progress::bump(&self.progress.errors);
                false
            }
        }
    }

    fn on_ack(&mut self, at: Instant, a: Ack) {
        let Some(n) = self.awaiting_ack.remove(&a.id) else {
            self.out.errors.add("unknown_ack");
            return;
        };
        let sent = &mut self.ledger[n];
        if a.ok {
            sent.acked = true;
            if sent.measured {
                self.out.ack.record(at.saturating_duration_since(sent.sent_at));
            }
            self.out.acked_in_window += u64::from(self.plan.phases.in_window(at));
            Progress::bump(&self.progress.acked);
        } else {
            sent.failed = true;
            if sent.deliveries == 0 {
                self.undelivered -= 1;
            }
            note_refused(a.error_code, &mut self.out.errors, &self.progress);
        }
    }

    fn on_delivery(&mut self, at: Instant, data: &Value) {
        let Some(n) = client_index(data, &self.prefix).filter(|&n| n < self.ledger.len()) else {
            self.out.errors.add("unexpected_message");
            return;
        };
        let sent = &mut self.ledger[n];
        sent.deliveries += 1;
        if sent.deliveries > 1 {
            self.out.duplicates += 1;
            return;
        }
        if !sent.failed {
            self.undelivered -= 1;
        }
        let latency = at.saturating_duration_since(sent.sent_at);
        if sent.measured {
            self.out.delivery.record(latency);
        }
        self.progress.record_latency(latency);
        self.out.delivered_in_window += u64::from(self.plan.phases.in_window(at));
        Progress::bump(&self.progress.delivered);
    }

    /// Counts what never came back, refused messages aside: unacked and lost ones.
    fn finish(mut self) -> (Outcome, Pair) {
        for sent in &self.ledger {
            if sent.failed {
                continue;
            }
            if !sent.acked {
                self.out.unacked += 1;
            }
            if sent.deliveries == 0 {
                self.out.lost += 1;
                self.out.lost_measured += u64::from(sent.measured);
            }
        }
        (self.out, self.pair)
    }
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
    print_errors_by_kind(&r["errors"]);
    if sent_late(&r["send_lag_ms"]) {
        println!(
            "  warning: the generator sent late (send lag p99 over {} ms); latencies include its delay",
            LAG_WARNING.as_millis()
        );
    }
}
