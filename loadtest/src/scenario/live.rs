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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;

use super::{Common, SETUP_TIMEOUT, note_unexpected, sleep_until};
use crate::client::{Connection, Decoded, Frame, Inbound, Socket, Target, decode, encode_request};
use crate::stats::{ErrorCounts, LatencyRecorder, Progress, describe_latency, round3};

/// When `send_lag` p99 exceeds this, the generator warns that it could not keep the schedule.
const LAG_WARNING: Duration = Duration::from_millis(5);

/// After every expected delivery has arrived, how long to keep listening for duplicates.
const LINGER: Duration = Duration::from_millis(1000);

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
}

/// The comment timetable, shared with every viewer once all have joined.
#[derive(Clone, Copy)]
struct Plan {
    /// Instant the comment texts' microseconds count from.
    epoch: Instant,
    t0: Instant,
    interval: f64,
    /// Comments to post in all (warm-up included).
    comments: u64,
    /// Index of the first measured comment.
    first_measured: u64,
    measure_start: Instant,
    send_end: Instant,
}

impl Plan {
    fn send_time(&self, k: u64) -> Instant {
        self.t0 + Duration::from_secs_f64(k as f64 * self.interval)
    }

    fn in_window(&self, at: Instant) -> bool {
        at >= self.measure_start && at < self.send_end
    }
}

/// What one viewer saw.
struct ViewerOutcome {
    url: usize,
    joined: bool,
    /// Bit k: comment k arrived.
    seen: Vec<u64>,
    unique: u64,
    duplicates: u64,
    in_window: u64,
    /// Latencies of measured comments, in µs.
    latencies: Vec<u32>,
    errors: ErrorCounts,
    /// Closed (by the server or the network) before the run ended.
    dropped: bool,
}

impl ViewerOutcome {
    fn new(url: usize) -> Self {
        Self {
            url,
            joined: false,
            seen: Vec::new(),
            unique: 0,
            duplicates: 0,
            in_window: 0,
            latencies: Vec::new(),
            errors: ErrorCounts::default(),
            dropped: false,
        }
    }

    /// Marks comment `k` seen; false if it was already.
    fn mark(&mut self, k: u64) -> bool {
        let (word, bit) = ((k / 64) as usize, k % 64);
        if word >= self.seen.len() {
            self.seen.resize(word + 1, 0);
        }
        let fresh = self.seen[word] & (1 << bit) == 0;
        self.seen[word] |= 1 << bit;
        fresh
    }
}

/// What the host did.
struct HostOutcome {
    sent: u64,
    sent_measured: u64,
    acked: u64,
    refused: u64,
    unacked: u64,
    ack: LatencyRecorder,
    send_lag: LatencyRecorder,
    errors: ErrorCounts,
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

    // The host and its session.
    let mut host = Connection::connect(&target, &format!("lt-{run_id}-host"), SETUP_TIMEOUT).await?;
    let created = host.request("live.create", json!({"title": format!("load test {run_id}")}), SETUP_TIMEOUT).await?;
    let session = created["session"]["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("live.create ack without session.id: {created}"))?;

    // Viewers: each task connects and joins (bounded by the semaphore), reports the join,
    // then reads until told to stop.
    let setup = Instant::now();
    let progress = Arc::new(Progress::default());
    let plan_cell: Arc<OnceLock<Plan>> = Arc::new(OnceLock::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(args.common.connect_concurrency.max(1)));
    let joined_count = Arc::new(AtomicU64::new(0));
    let (join_tx, mut join_rx) = tokio::sync::mpsc::unbounded_channel::<Result<(), String>>();
    let marker: Arc<str> = format!("\"text\":\"{run_id}:").into();
    let mut viewers = Vec::with_capacity(args.viewers);
    for i in 0..args.viewers {
        let url = i % viewer_targets.len();
        let viewer = Viewer {
            target: viewer_targets[url].clone(),
            url,
            user: format!("lt-{run_id}-v{i}"),
            session: session.clone(),
            marker: Arc::clone(&marker),
            plan: Arc::clone(&plan_cell),
            progress: Arc::clone(&progress),
            gate: Arc::clone(&gate),
            joined: Arc::clone(&joined_count),
            join_tx: join_tx.clone(),
            stop: stop_rx.clone(),
        };
        viewers.push(tokio::spawn(viewer.run()));
    }
    drop(join_tx);
    let mut join_failures = ErrorCounts::default();
    let mut reported = 0usize;
    let mut last_note = Instant::now();
    while let Some(result) = join_rx.recv().await {
        reported += 1;
        if let Err(kind) = result {
            if join_failures.total() < 5 {
                eprintln!("viewer failed to join: {kind}");
            }
            join_failures.add(kind_of(&kind));
        }
        if last_note.elapsed() >= Duration::from_secs(2) {
            eprintln!("  {reported}/{} viewers set up ({} joined)", args.viewers, joined_count.load(Ordering::Relaxed));
            last_note = Instant::now();
        }
        if reported == args.viewers {
            break;
        }
    }
    let joined = joined_count.load(Ordering::Relaxed);
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
    // Let the join pushes (viewer counts to the host) and subscriptions settle.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let epoch = Instant::now();
    let t0 = epoch + Duration::from_millis(200);
    let measure_start = t0 + Duration::from_secs(args.warmup);
    let send_end = measure_start + Duration::from_secs(args.duration);
    let interval = 1.0 / args.rate;
    let plan = Plan {
        epoch,
        t0,
        interval,
        comments: ((args.warmup + args.duration) as f64 * args.rate).ceil() as u64,
        first_measured: (args.warmup as f64 * args.rate).ceil() as u64,
        measure_start,
        send_end,
    };
    let _ = plan_cell.set(plan);
    let reporter = progress.spawn_reporter(t0);

    let grace_end = send_end + Duration::from_secs(args.grace);
    let (host_outcome, host) = drive_host(host, session.clone(), run_id.clone(), plan, grace_end, &progress).await;

    // Wait for the deliveries still under way, then a little longer for duplicates.
    let stored = host_outcome.sent - host_outcome.refused;
    let expected = stored * joined;
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
    progress.stop();
    let timeline = reporter.await?;

    // End the session while the viewers still listen, then let them go.
    let mut host = host;
    if let Err(e) = host.request("live.end", json!({"session_id": session}), SETUP_TIMEOUT).await {
        eprintln!("live.end failed: {e}");
    }
    let _ = stop_tx.send(true);
    let mut outcomes = Vec::with_capacity(viewers.len());
    for viewer in viewers {
        outcomes.push(viewer.await?);
    }
    host.close().await;

    let mut report = report(&args, &run_id, &target, &viewer_targets, plan, &host_outcome, &outcomes, stored);
    report["setup"] = json!({
        "viewers_joined": joined,
        "join_failures": join_failures.to_json(),
        "seconds": round3(setup_secs),
    });
    report["timeline"] = timeline.to_json();
    print(&report);
    super::rate_limit_hint(
        report["errors"]["by_kind"]["rate_limited"].as_u64().unwrap_or(0),
        report["errors"]["by_kind"]["close:1008"].as_u64().unwrap_or(0),
    );
    Ok(report)
}

/// A join failure's kind for the tally (the message without its user-specific part).
fn kind_of(message: &str) -> String {
    let kind = message.split_once(": ").map_or(message, |(_, rest)| rest);
    kind.chars().take(80).collect()
}

/// Posts the comments on schedule and collects their acks.
async fn drive_host(
    mut host: Connection,
    session: String,
    run_id: String,
    plan: Plan,
    grace_end: Instant,
    progress: &Progress,
) -> (HostOutcome, Connection) {
    let mut out = HostOutcome {
        sent: 0,
        sent_measured: 0,
        acked: 0,
        refused: 0,
        unacked: 0,
        ack: LatencyRecorder::new(),
        send_lag: LatencyRecorder::new(),
        errors: ErrorCounts::default(),
    };
    // Request id → (comment index, send instant).
    let mut awaiting: std::collections::HashMap<i64, (u64, Instant)> = std::collections::HashMap::new();
    let mut k = 0u64;
    let mut sending = true;
    let mut open = true;
    let mut next_at = plan.send_time(0);
    loop {
        if !sending && (awaiting.is_empty() || !open) {
            break;
        }
        tokio::select! {
            _ = sleep_until(next_at), if sending => {
                if k >= plan.comments {
                    sending = false;
                    continue;
                }
                let sent_at = Instant::now();
                out.send_lag.record(sent_at.saturating_duration_since(next_at));
                let us = sent_at.duration_since(plan.epoch).as_micros();
                let text = format!("{run_id}:{k}:{us}");
                match host.send("live.comment", json!({"session_id": session, "text": text})) {
                    Ok(id) => {
                        awaiting.insert(id, (k, sent_at));
                        out.sent += 1;
                        out.sent_measured += u64::from(k >= plan.first_measured);
                        Progress::bump(&progress.sent);
                    }
                    Err(_) => {
                        out.errors.add("send_failed");
                        sending = false;
                    }
                }
                k += 1;
                next_at = plan.send_time(k);
            }
            inbound = host.recv(), if open => match inbound {
                None => open = false,
                Some(Inbound { at, frame: Frame::Ack(a) }) => {
                    let Some((k, sent_at)) = awaiting.remove(&a.id) else {
                        out.errors.add("unknown_ack");
                        continue;
                    };
                    if a.ok {
                        out.acked += 1;
                        if k >= plan.first_measured {
                            out.ack.record(at.saturating_duration_since(sent_at));
                        }
                        Progress::bump(&progress.acked);
                    } else {
                        out.refused += 1;
                        out.errors.add(a.error_code.unwrap_or_else(|| "ack_error".into()));
                        Progress::bump(&progress.errors);
                    }
                }
                Some(Inbound { frame, .. }) => {
                    if note_unexpected(frame, &mut out.errors, progress) {
                        open = false;
                        sending = false;
                    }
                }
            },
            _ = sleep_until(grace_end), if !sending => break,
        }
    }
    out.unacked = awaiting.len() as u64;
    (out, host)
}

struct Viewer {
    target: Target,
    url: usize,
    user: String,
    session: String,
    marker: Arc<str>,
    plan: Arc<OnceLock<Plan>>,
    progress: Arc<Progress>,
    gate: Arc<Semaphore>,
    joined: Arc<AtomicU64>,
    join_tx: tokio::sync::mpsc::UnboundedSender<Result<(), String>>,
    stop: watch::Receiver<bool>,
}

impl Viewer {
    async fn run(mut self) -> ViewerOutcome {
        let mut out = ViewerOutcome::new(self.url);
        let socket = {
            let _permit = self.gate.acquire().await.expect("the gate is never closed");
            self.connect_and_join().await
        };
        let mut socket = match socket {
            Ok(socket) => {
                out.joined = true;
                self.joined.fetch_add(1, Ordering::Relaxed);
                let _ = self.join_tx.send(Ok(()));
                socket
            }
            Err(e) => {
                let _ = self.join_tx.send(Err(format!("{e:#}")));
                return out;
            }
        };

        loop {
            let next = tokio::select! {
                next = socket.next() => next,
                _ = self.stop.changed() => break,
            };
            match next {
                Some(Ok(Message::Text(text))) => {
                    let at = Instant::now();
                    if text.as_str() == "2" {
                        // Engine.IO ping (Socket.IO framing): answer or be dropped.
                        let _ = socket.send(Message::Text("3".into())).await;
                        continue;
                    }
                    self.on_text(text.as_str(), at, &mut out);
                }
                Some(Ok(Message::Close(close))) => {
                    out.errors.add(match close {
                        Some(c) => format!("close:{}", u16::from(c.code)),
                        None => "close".into(),
                    });
                    Progress::bump(&self.progress.errors);
                    out.dropped = true;
                    return out;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    out.errors.add(format!("disconnected: {}", kind_of(&format!(": {e}"))));
                    Progress::bump(&self.progress.errors);
                    out.dropped = true;
                    return out;
                }
                None => {
                    out.errors.add("disconnected: stream ended");
                    Progress::bump(&self.progress.errors);
                    out.dropped = true;
                    return out;
                }
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), socket.close(None)).await;
        out
    }

    /// The hot path: one pushed frame.
    fn on_text(&self, text: &str, at: Instant, out: &mut ViewerOutcome) {
        if let Some(start) = text.find(&*self.marker) {
            let rest = &text[start + self.marker.len()..];
            let parsed = rest.split_once('"').and_then(|(body, _)| {
                let (k, us) = body.split_once(':')?;
                Some((k.parse::<u64>().ok()?, us.parse::<u64>().ok()?))
            });
            let Some((k, sent_us)) = parsed else {
                out.errors.add("unparsable_comment");
                return;
            };
            if !out.mark(k) {
                out.duplicates += 1;
                return;
            }
            out.unique += 1;
            Progress::bump(&self.progress.delivered);
            if let Some(plan) = self.plan.get() {
                if k >= plan.first_measured {
                    let at_us = at.duration_since(plan.epoch).as_micros() as u64;
                    out.latencies.push(u32::try_from(at_us.saturating_sub(sent_us)).unwrap_or(u32::MAX));
                }
                out.in_window += u64::from(plan.in_window(at));
            }
            return;
        }
        // Anything else: parse it, and count only what signals a problem.
        let Decoded::Frame(frame) = decode(self.target.framing(), text) else { return };
        match frame {
            Frame::Event { event, data } if event == "error" => {
                out.errors.add(format!("error_event:{}", data["code"].as_str().unwrap_or("?")));
                Progress::bump(&self.progress.errors);
            }
            Frame::Event { event, .. } if event == "live.comment" => {
                out.errors.add("foreign_comment");
            }
            Frame::Malformed(_) => out.errors.add("malformed_frame"),
            // live.ended, live.viewers, stray acks: not measured.
            _ => {}
        }
    }

    async fn connect_and_join(&self) -> Result<Socket> {
        let mut socket = crate::client::open(&self.target, &self.user, SETUP_TIMEOUT).await?;
        let deadline = tokio::time::Instant::now() + SETUP_TIMEOUT;
        let join = encode_request(self.target.framing(), "live.join", Some(1), json!({"session_id": self.session}));
        socket.send(Message::Text(join.into())).await.map_err(|e| anyhow!("{}: sending live.join: {e}", self.user))?;
        loop {
            if let Some(Frame::Ack(ack)) = self.setup_frame(&mut socket, deadline).await?
                && ack.id == 1
            {
                if ack.ok {
                    return Ok(socket);
                }
                bail!("{}: live.join failed with {}", self.user, ack.error_code.as_deref().unwrap_or("?"));
            }
        }
    }

    /// The next frame during set-up, decoded (`None` for pings and the like).
    async fn setup_frame(&self, socket: &mut Socket, deadline: tokio::time::Instant) -> Result<Option<Frame>> {
        let user = &self.user;
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => Err(anyhow!("{user}: set-up timed out")),
            Ok(None) => Err(anyhow!("{user}: closed during set-up")),
            Ok(Some(Err(e))) => Err(anyhow!("{user}: set-up: {e}")),
            Ok(Some(Ok(Message::Text(text)))) => match decode(self.target.framing(), text.as_str()) {
                Decoded::Frame(frame) => Ok(Some(frame)),
                Decoded::Ping => {
                    socket.send(Message::Text("3".into())).await?;
                    Ok(None)
                }
                Decoded::Ignore => Ok(None),
            },
            Ok(Some(Ok(Message::Close(c)))) => Err(anyhow!("{user}: closed during set-up: {c:?}")),
            Ok(Some(Ok(_))) => Ok(None),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn report(
    args: &LiveArgs,
    run_id: &str,
    target: &Target,
    viewer_targets: &[Target],
    plan: Plan,
    host: &HostOutcome,
    viewers: &[ViewerOutcome],
    stored: u64,
) -> Value {
    let mut delivery = LatencyRecorder::new();
    let mut by_url: Vec<LatencyRecorder> = viewer_targets.iter().map(|_| LatencyRecorder::new()).collect();
    let mut url_viewers = vec![0u64; viewer_targets.len()];
    let mut url_received = vec![0u64; viewer_targets.len()];
    let mut errors = ErrorCounts::default();
    errors.merge(&host.errors);
    let (mut joined, mut received, mut duplicates, mut in_window, mut dropped) = (0u64, 0u64, 0u64, 0u64, 0u64);
    for v in viewers {
        errors.merge(&v.errors);
        if !v.joined {
            continue;
        }
        joined += 1;
        url_viewers[v.url] += 1;
        url_received[v.url] += v.unique;
        received += v.unique;
        duplicates += v.duplicates;
        in_window += v.in_window;
        dropped += u64::from(v.dropped);
        for &us in &v.latencies {
            let d = Duration::from_micros(u64::from(us));
            delivery.record(d);
            by_url[v.url].record(d);
        }
    }
    let expected = stored * joined;
    let secs = args.duration as f64;
    let per_url: Vec<Value> = viewer_targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({
                "url": t.endpoint(),
                "viewers": url_viewers[i],
                "expected": stored * url_viewers[i],
                "received": url_received[i],
                "delivery_ms": by_url[i].summary(),
            })
        })
        .collect();
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
        "viewers_joined": joined,
        "comments_sent": host.sent,
        "comments_measured": host.sent_measured,
        "comments_acked": host.acked,
        "comments_refused": host.refused,
        "comments_unacked": host.unacked,
        "expected_deliveries": expected,
        "received_deliveries": received,
        "lost": expected.saturating_sub(received),
        "duplicates": duplicates,
        "viewers_dropped": dropped,
        "deliveries_per_sec": round3(in_window as f64 / secs),
        "delivery_ms": delivery.summary(),
        "comment_ack_ms": host.ack.summary(),
        "send_lag_ms": host.send_lag.summary(),
        "by_viewer_url": per_url,
        "errors": errors.to_json(),
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
    if let Some(by_kind) = r["errors"]["by_kind"].as_object().filter(|m| !m.is_empty()) {
        println!("  errors by kind: {}", Value::Object(by_kind.clone()));
    }
    if r["send_lag_ms"]["p99"].as_f64().is_some_and(|p99| p99 > LAG_WARNING.as_secs_f64() * 1000.0) {
        println!(
            "  warning: the host sent late (send lag p99 over {} ms); the generator may be short of CPU",
            LAG_WARNING.as_millis()
        );
    }
}
