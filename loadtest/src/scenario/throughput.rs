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

use super::{
    Common, Phases, close_all, connect_all, drive_all, note_refused, note_unexpected, open_direct_rooms,
    print_errors_by_kind, sleep_until, text_message,
};
use crate::client::{Ack, Connection, Frame, Inbound, Target};
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

    fn merge(&mut self, other: &Outcome) {
        self.ack.merge(&other.ack);
        self.errors.merge(&other.errors);
        self.sent += other.sent;
        self.acked += other.acked;
        self.acked_in_window += other.acked_in_window;
        self.unacked += other.unacked;
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
    let with_rooms = set_up_senders(&args, &run_id, &target).await?;

    let t0 = Instant::now();
    let secs = Duration::from_secs;
    let phases = Phases::new(t0, secs(args.warmup), secs(args.duration), secs(args.grace));
    let body = Arc::new(super::body(args.common.body_bytes));
    let (results, timeline) = drive_all(t0, with_rooms, |(conn, room), progress| {
        Sender::new(conn, room, args.inflight, phases, Arc::clone(&body), progress).drive()
    })
    .await?;
    let mut total = Outcome::new();
    let mut per_sender = Vec::with_capacity(args.senders);
    let mut conns = Vec::with_capacity(args.senders);
    for (outcome, conn) in results {
        total.merge(&outcome);
        per_sender.push(outcome.acked_in_window);
        conns.push(conn);
    }
    close_all(conns).await;

    let mut report = report(&args, &run_id, &target, &total, &per_sender);
    report["timeline"] = timeline.to_json();
    print(&report);
    super::rate_limit_hint(&total.errors);
    Ok(report)
}

/// Connects the senders and opens each one's direct room with a peer that never connects.
async fn set_up_senders(args: &ThroughputArgs, run_id: &str, target: &Target) -> Result<Vec<(Connection, String)>> {
    let senders: Vec<String> = (0..args.senders).map(|i| format!("lt-{run_id}-t{i}")).collect();
    let peers: Vec<String> = senders.iter().map(|s| format!("{s}-peer")).collect();
    let setup = Instant::now();
    let conns = connect_all(target, senders, args.common.connect_concurrency).await?;
    let with_rooms = open_direct_rooms(conns, peers, args.common.connect_concurrency).await?;
    eprintln!("set up {} connections and rooms in {:.1} s", args.senders, setup.elapsed().as_secs_f64());
    Ok(with_rooms)
}

/// One sender's run, driven by one task: its connection, its `inflight` slots and what it
/// measured.
struct Sender {
    conn: Connection,
    room: String,
    client_prefix: String,
    /// The N of the next client_id.
    next: u64,
    inflight: usize,
    phases: Phases,
    body: Arc<String>,
    progress: Arc<Progress>,
    /// Request id → send instant.
    outstanding: HashMap<i64, Instant>,
    out: Outcome,
}

impl Sender {
    fn new(
        conn: Connection,
        room: String,
        inflight: usize,
        phases: Phases,
        body: Arc<String>,
        progress: Arc<Progress>,
    ) -> Self {
        let client_prefix = format!("{}-", conn.user());
        let outstanding = HashMap::with_capacity(inflight);
        Self { conn, room, client_prefix, next: 0, inflight, phases, body, progress, outstanding, out: Outcome::new() }
    }

    /// Keeps every slot full until the window ends, then waits (until the grace period ends)
    /// for the acks still outstanding.
    async fn drive(mut self) -> (Outcome, Connection) {
        let mut refill = tokio::time::interval(REFILL_EVERY);
        refill.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut open = self.top_up();
        let mut sending = open;
        loop {
            if !sending && (!open || self.outstanding.is_empty()) {
                break;
            }
            tokio::select! {
                inbound = self.conn.recv(), if open => match inbound {
                    None => open = false,
                    Some(Inbound { at, frame: Frame::Ack(a) }) => {
                        if self.on_ack(at, a) && sending && !self.top_up() {
                            sending = false;
                        }
                    }
                    Some(Inbound { frame, .. }) => {
                        if note_unexpected(frame, &mut self.out.errors, &self.progress) {
                            open = false;
                            sending = false;
                        }
                    }
                },
                _ = refill.tick(), if sending => {
                    // Past the end, or the connection is gone: stop refilling.
                    if Instant::now() >= self.phases.send_end || !self.top_up() {
                        sending = false;
                    }
                }
                _ = sleep_until(self.phases.send_end), if sending => sending = false,
                _ = sleep_until(self.phases.grace_end), if !sending => break,
            }
        }
        self.out.unacked = self.outstanding.len() as u64;
        (self.out, self.conn)
    }

    /// Fills every free slot; false when the connection is gone.
    fn top_up(&mut self) -> bool {
        while self.outstanding.len() < self.inflight {
            let data = text_message(&self.room, &self.body, format!("{}{}", self.client_prefix, self.next));
            self.next += 1;
            let sent_at = Instant::now();
            match self.conn.send("message.send", data) {
                Ok(id) => {
                    self.outstanding.insert(id, sent_at);
                    self.out.sent += 1;
                    Progress::bump(&self.progress.sent);
                }
                Err(_) => {
                    self.out.errors.add("send_failed");
                    Progress::bump(&self.progress.errors);
                    return false;
                }
            }
        }
        true
    }

    /// Counts an ack; true when it is an ok ack, whose slot is refilled at once (a refused
    /// request's slot waits for the next refill tick).
    fn on_ack(&mut self, at: Instant, a: Ack) -> bool {
        let Some(sent_at) = self.outstanding.remove(&a.id) else {
            self.out.errors.add("unknown_ack");
            return false;
        };
        if !a.ok {
            note_refused(a.error_code, &mut self.out.errors, &self.progress);
            return false;
        }
        self.out.acked += 1;
        Progress::bump(&self.progress.acked);
        if self.phases.in_window(at) {
            self.out.acked_in_window += 1;
            self.out.ack.record(at.saturating_duration_since(sent_at));
        }
        true
    }
}

fn report(args: &ThroughputArgs, run_id: &str, target: &Target, t: &Outcome, per_sender: &[u64]) -> Value {
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
    print_errors_by_kind(&r["errors"]);
}
