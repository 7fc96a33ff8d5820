//! `live`: one host, many viewers, comment fan-out latency.
//!
//! A host connection on `--url` creates a live session. `--viewers` connections join it,
//! spread round-robin over the `--viewer-url`s (default `--url`), `--connect-concurrency` at
//! a time. Once every viewer has joined, the host posts comments on a fixed schedule
//! (`--rate` per second, open loop) for `--warmup` + `--duration` seconds. A comment's text
//! is `RUN:K:US`: its index and the send instant in microseconds since the run's epoch, so a
//! viewer computes its latency from the frame alone, with no shared state.
//!
//! Viewers are kept as light as possible so that the generator is not what is measured: each
//! viewer is one task owning its socket (no writer task, no channel), with small socket
//! buffers, and a comment push is recognised by a substring search for the run's marker in
//! the `text` field; only other frames are parsed as JSON. A viewer keeps a bitset of the
//! comments it saw (for losses and duplicates) and the latencies of measured comments as
//! `u32` microseconds; they are merged into histograms at the end.

mod host;
mod viewer;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use clap::Args;
use serde_json::{Value, json};

use super::{Cadence, Common, LAG_WARNING, Phases, SETUP_TIMEOUT, print_errors_by_kind, sent_late};
use crate::client::{Connection, Target};
use crate::stats::{ErrorCounts, LatencyRecorder, Progress, Timeline, describe_latency, round3};
use host::HostOutcome;
use viewer::{Crowd, ViewerOutcome};

/// After every expected delivery has arrived, how long to keep listening for duplicates.
const LINGER: Duration = Duration::from_millis(1000);

/// How long the join pushes (viewer counts to the host) and subscriptions get to settle
/// before the first comment.
const JOIN_SETTLE: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Args)]
pub struct LiveArgs {
    #[command(flatten)]
    pub common: Common,

    /// Viewer connections (one user each).
    #[arg(long, default_value_t = 1000)]
    pub viewers: usize,

    /// Server(s) the viewers connect to, round-robin (repeatable; default: --url). The host
    /// is always on --url.
    #[arg(long = "viewer-url")]
    pub viewer_urls: Vec<String>,

    /// Comments the host posts per second.
    #[arg(long, default_value_t = 5.0)]
    pub rate: f64,

    /// Measured seconds of commenting (after the warm-up).
    #[arg(long, default_value_t = 30)]
    pub duration: u64,

    /// Seconds of commenting before measuring starts. Warm-up comments count for losses and
    /// duplicates but not in the latency histograms.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,

    /// Seconds to wait after the last comment for outstanding deliveries; a delivery missing
    /// by then counts as lost.
    #[arg(long, default_value_t = 10)]
    pub grace: u64,

    /// The servers' process ids (repeatable): their CPU time (utime + stime) over the joins
    /// and over the commenting is reported, per join and per delivery.
    #[arg(long = "server-pid")]
    pub server_pids: Vec<u32>,
}

/// The comment timetable, shared with every viewer once all have joined.
#[derive(Clone, Copy)]
struct Plan {
    /// Instant the comment texts' microseconds count from.
    epoch: Instant,
    t0: Instant,
    /// The host's comments: one sender at `--rate`.
    cadence: Cadence,
    /// Comments to post in all (warm-up included).
    comments: u64,
    /// Index of the first measured comment.
    first_measured: u64,
    phases: Phases,
}

impl Plan {
    /// The first comment 200 ms from now.
    fn new(args: &LiveArgs) -> Self {
        let epoch = Instant::now();
        let t0 = epoch + Duration::from_millis(200);
        let secs = Duration::from_secs;
        Self {
            epoch,
            t0,
            cadence: Cadence::new(t0, args.rate, 1),
            comments: ((args.warmup + args.duration) as f64 * args.rate).ceil() as u64,
            first_measured: (args.warmup as f64 * args.rate).ceil() as u64,
            phases: Phases::new(t0, secs(args.warmup), secs(args.duration), secs(args.grace)),
        }
    }
}

pub async fn run(args: LiveArgs) -> Result<Value> {
    if args.viewers == 0 || args.rate.is_nan() || args.rate <= 0.0 || args.duration == 0 {
        bail!("--viewers, --rate and --duration must be positive");
    }
    let target = args.common.target()?;
    let viewer_targets: Vec<Target> = if args.viewer_urls.is_empty() {
        vec![target.clone()]
    } else {
        args.viewer_urls.iter().map(|u| args.common.target_for(u)).collect::<Result<_>>()?
    };
    let run_id = super::new_run_id();
    eprintln!(
        "live run {run_id}: host on {}, {} viewers on {}, {} comments/s for {} s (+{} s warm-up)",
        target.endpoint(),
        args.viewers,
        viewer_targets.iter().map(Target::endpoint).collect::<Vec<_>>().join(", "),
        args.rate,
        args.duration,
        args.warmup
    );
    let (host, session) = open_session(&target, &run_id).await?;

    let cpu = ServerCpu::new(&args.server_pids);
    let cpu_at_setup = cpu.secs();
    let setup = Instant::now();
    let progress = Arc::new(Progress::default());
    let mut crowd = Crowd::spawn(&args, &viewer_targets, &run_id, &session, &progress);
    let join_failures = crowd.await_joins().await;
    let joined = crowd.joined();
    let setup_secs = setup.elapsed().as_secs_f64();
    eprintln!(
        "{joined} of {} viewers joined in {setup_secs:.1} s ({:.0}/s); {} failed",
        args.viewers,
        joined as f64 / setup_secs,
        join_failures.total()
    );
    if joined == 0 {
        bail!("no viewer could join: {}", join_failures.to_json());
    }
    let cpu_joined = cpu.secs();
    tokio::time::sleep(JOIN_SETTLE).await;

    let plan = Plan::new(&args);
    let cpu_at_comments = cpu.secs();
    let (host_outcome, host, timeline) = comment(plan, host, &session, &run_id, &crowd, &progress).await?;
    let cpu_commented = cpu.secs();
    let delivered = progress.delivered.load(Ordering::Relaxed);
    let outcomes = end_session(host, &session, crowd).await?;

    let tally = ViewerTally::new(viewer_targets.len(), &host_outcome, &outcomes);
    let mut report = report(&args, &run_id, &target, &viewer_targets, plan, &host_outcome, &tally);
    report["setup"] = json!({
        "viewers_joined": joined,
        "join_failures": join_failures.to_json(),
        "seconds": round3(setup_secs),
        "joins_per_sec": round3(joined as f64 / setup_secs),
    });
    if !args.server_pids.is_empty() {
        let (joins, comments) = (cpu_joined - cpu_at_setup, cpu_commented - cpu_at_comments);
        report["server_cpu"] = json!({
            "joins_secs": round3(joins),
            "us_per_join": round3(joins * 1e6 / joined.max(1) as f64),
            "commenting_secs": round3(comments),
            "deliveries": delivered,
            "us_per_delivery": round3(comments * 1e6 / delivered.max(1) as f64),
        });
    }
    report["timeline"] = timeline.to_json();
    print(&report);
    super::rate_limit_hint(&tally.errors);
    Ok(report)
}

/// Connects the host and creates the live session; returns the host and the session id.
async fn open_session(target: &Target, run_id: &str) -> Result<(Connection, String)> {
    let mut host = Connection::connect(target, &format!("lt-{run_id}-host"), SETUP_TIMEOUT).await?;
    let created = host.request("live.create", json!({"title": format!("load test {run_id}")}), SETUP_TIMEOUT).await?;
    let session = created["session"]["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("live.create ack without session.id: {created}"))?;
    Ok((host, session))
}

/// The measured phase: hands the viewers the plan, has the host comment on it, and waits for
/// the deliveries still under way. Returns the host's outcome, its connection and the
/// timeline.
async fn comment(
    plan: Plan,
    host: Connection,
    session: &str,
    run_id: &str,
    crowd: &Crowd,
    progress: &Arc<Progress>,
) -> Result<(HostOutcome, Connection, Timeline)> {
    crowd.start(plan);
    let reporter = progress.spawn_reporter(plan.t0);
    let (outcome, host) = host::drive_host(host, session.to_owned(), run_id.to_owned(), plan, progress).await;
    await_deliveries(progress, outcome.stored() * crowd.joined(), plan.phases.grace_end).await;
    progress.stop();
    Ok((outcome, host, reporter.await?))
}

/// Waits until `expected` deliveries have arrived (then a little longer, for duplicates) or
/// `grace_end` has passed.
async fn await_deliveries(progress: &Progress, expected: u64, grace_end: Instant) {
    loop {
        if progress.delivered.load(Ordering::Relaxed) >= expected {
            tokio::time::sleep(LINGER).await;
            break;
        }
        if Instant::now() >= grace_end {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Ends the session while the viewers still listen, then lets them go; returns what each saw.
async fn end_session(mut host: Connection, session: &str, crowd: Crowd) -> Result<Vec<ViewerOutcome>> {
    if let Err(e) = host.request("live.end", json!({"session_id": session}), SETUP_TIMEOUT).await {
        eprintln!("live.end failed: {e}");
    }
    let outcomes = crowd.dismiss().await?;
    host.close().await;
    Ok(outcomes)
}

/// A join failure's kind for the tally (the message without its user-specific part).
pub(super) fn kind_of(message: &str) -> String {
    let kind = message.split_once(": ").map_or(message, |(_, rest)| rest);
    kind.chars().take(80).collect()
}

/// The viewers' outcomes added up, overall and per viewer URL (joined viewers only), with
/// every error of the run.
struct ViewerTally {
    delivery: LatencyRecorder,
    by_url: Vec<LatencyRecorder>,
    url_viewers: Vec<u64>,
    url_received: Vec<u64>,
    errors: ErrorCounts,
    joined: u64,
    received: u64,
    duplicates: u64,
    in_window: u64,
    dropped: u64,
}

impl ViewerTally {
    fn new(urls: usize, host: &HostOutcome, viewers: &[ViewerOutcome]) -> Self {
        let mut t = Self {
            delivery: LatencyRecorder::new(),
            by_url: (0..urls).map(|_| LatencyRecorder::new()).collect(),
            url_viewers: vec![0; urls],
            url_received: vec![0; urls],
            errors: ErrorCounts::default(),
            joined: 0,
            received: 0,
            duplicates: 0,
            in_window: 0,
            dropped: 0,
        };
        t.errors.merge(&host.errors);
        for v in viewers {
            t.errors.merge(&v.errors);
            if !v.joined {
                continue;
            }
            t.joined += 1;
            t.url_viewers[v.url] += 1;
            t.url_received[v.url] += v.unique;
            t.received += v.unique;
            t.duplicates += v.duplicates;
            t.in_window += v.in_window;
            t.dropped += u64::from(v.dropped);
            for &us in &v.latencies {
                let d = Duration::from_micros(u64::from(us));
                t.delivery.record(d);
                t.by_url[v.url].record(d);
            }
        }
        t
    }

    /// Per viewer URL: viewers, deliveries expected and received, latencies.
    fn per_url(&self, viewer_targets: &[Target], stored: u64) -> Vec<Value> {
        viewer_targets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                json!({
                    "url": t.endpoint(),
                    "viewers": self.url_viewers[i],
                    "expected": stored * self.url_viewers[i],
                    "received": self.url_received[i],
                    "delivery_ms": self.by_url[i].summary(),
                })
            })
            .collect()
    }
}

fn report(
    args: &LiveArgs,
    run_id: &str,
    target: &Target,
    viewer_targets: &[Target],
    plan: Plan,
    host: &HostOutcome,
    t: &ViewerTally,
) -> Value {
    let stored = host.stored();
    let expected = stored * t.joined;
    let mut params = args.common.params(target);
    params["viewers"] = json!(args.viewers);
    params["viewer_urls"] = json!(viewer_targets.iter().map(Target::endpoint).collect::<Vec<_>>());
    params["rate"] = json!(args.rate);
    params["duration_secs"] = json!(args.duration);
    params["warmup_secs"] = json!(args.warmup);
    params["grace_secs"] = json!(args.grace);
    params["planned_comments"] = json!(plan.comments);
    json!({
        "scenario": "live",
        "run_id": run_id,
        "params": params,
        "viewers_joined": t.joined,
        "comments_sent": host.sent,
        "comments_measured": host.sent_measured,
        "comments_acked": host.acked,
        "comments_refused": host.refused,
        "comments_unacked": host.unacked,
        "expected_deliveries": expected,
        "received_deliveries": t.received,
        "lost": expected.saturating_sub(t.received),
        "duplicates": t.duplicates,
        "viewers_dropped": t.dropped,
        "deliveries_per_sec": round3(t.in_window as f64 / args.duration as f64),
        "delivery_ms": t.delivery.summary(),
        "comment_ack_ms": host.ack.summary(),
        "send_lag_ms": host.send_lag.summary(),
        "by_viewer_url": t.per_url(viewer_targets, stored),
        "errors": t.errors.to_json(),
    })
}

fn print(r: &Value) {
    println!(
        "live  run {}  {} viewers joined  {} comments/s  deliveries/s {}",
        r["run_id"].as_str().unwrap_or("?"),
        r["viewers_joined"],
        r["params"]["rate"],
        r["deliveries_per_sec"]
    );
    println!("  delivery  {}", describe_latency(&r["delivery_ms"]));
    if let Some(urls) = r["by_viewer_url"].as_array().filter(|u| u.len() > 1) {
        for u in urls {
            println!(
                "    {:<28} {}",
                format!("{} ({})", u["url"].as_str().unwrap_or("?"), u["viewers"]),
                describe_latency(&u["delivery_ms"])
            );
        }
    }
    println!("  comment ack {}", describe_latency(&r["comment_ack_ms"]));
    if let Some(cpu) = r.get("server_cpu") {
        println!(
            "  server CPU: joins {} s ({} µs per join), commenting {} s ({} µs per delivery)",
            cpu["joins_secs"], cpu["us_per_join"], cpu["commenting_secs"], cpu["us_per_delivery"]
        );
    }
    println!("  send lag  {}", describe_latency(&r["send_lag_ms"]));
    println!(
        "  comments sent {} (measured {}) acked {} refused {} unacked {}",
        r["comments_sent"], r["comments_measured"], r["comments_acked"], r["comments_refused"], r["comments_unacked"]
    );
    println!(
        "  deliveries expected {}  received {}  lost {}  duplicates {}  viewers dropped {}  errors {}",
        r["expected_deliveries"],
        r["received_deliveries"],
        r["lost"],
        r["duplicates"],
        r["viewers_dropped"],
        r["errors"]["total"]
    );
    print_errors_by_kind(&r["errors"]);
    if sent_late(&r["send_lag_ms"]) {
        println!(
            "  warning: the host sent late (send lag p99 over {} ms); the generator may be short of CPU",
            LAG_WARNING.as_millis()
        );
    }
}

/// The servers' CPU seconds so far, summed; a process that cannot be read counts nothing.
struct ServerCpu {
    pids: Vec<u32>,
    ticks: f64,
}

impl ServerCpu {
    fn new(pids: &[u32]) -> Self {
        Self { pids: pids.to_vec(), ticks: super::node_metrics::clock_ticks() }
    }

    fn secs(&self) -> f64 {
        self.pids.iter().filter_map(|&pid| super::node_metrics::cpu_secs(pid, self.ticks).ok()).sum()
    }
}
