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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use super::{Common, SETUP_TIMEOUT, note_unexpected, sleep_until};
use crate::client::{Connection, Frame, Inbound, Target};
use crate::stats::{ErrorCounts, LatencyRecorder, Progress, describe_latency, round3, setup_bar};

/// How long after a step's last send its deliveries may still arrive before it is judged.
const SETTLE: Duration = Duration::from_secs(1);

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

/// What the scheduler asks of a room task.
enum Command {
    Send {
        at: Instant,
        step: usize,
        measured: bool,
        typing: bool,
    },
    /// Hand over (and reset) what was measured for `step`.
    Report {
        step: usize,
        reply: oneshot::Sender<StepCounts>,
    },
    /// Final tallies: losses, duplicates, unacked.
    Finish {
        reply: oneshot::Sender<FinalCounts>,
    },
}

/// One step as one room saw it.
struct StepCounts {
    delivery: LatencyRecorder,
    typing: LatencyRecorder,
    ack: LatencyRecorder,
    send_lag: LatencyRecorder,
    messages: u64,
    typings: u64,
    deliveries: u64,
    /// Deliveries of measured messages not yet arrived when the step was judged.
    missing: u64,
}

impl StepCounts {
    fn new() -> Self {
        Self {
            delivery: LatencyRecorder::new(),
            typing: LatencyRecorder::new(),
            ack: LatencyRecorder::new(),
            send_lag: LatencyRecorder::new(),
            messages: 0,
            typings: 0,
            deliveries: 0,
            missing: 0,
        }
    }

    fn merge(&mut self, o: &StepCounts) {
        self.delivery.merge(&o.delivery);
        self.typing.merge(&o.typing);
        self.ack.merge(&o.ack);
        self.send_lag.merge(&o.send_lag);
        self.messages += o.messages;
        self.typings += o.typings;
        self.deliveries += o.deliveries;
        self.missing += o.missing;
    }
}

#[derive(Default)]
struct FinalCounts {
    messages: u64,
    expected: u64,
    lost: u64,
    duplicates: u64,
    unacked: u64,
    refused: u64,
    typing_lost: u64,
    errors: ErrorCounts,
}

/// One sent message in a room's ledger.
struct Sent {
    at: Instant,
    step: usize,
    measured: bool,
    /// Bit m: member m has it (the sender's bit is set at once).
    got: u64,
    acked: bool,
    refused: bool,
}

struct Room {
    index: usize,
    id: String,
    members: Vec<Connection>,
    /// Member index of each user id.
    by_user: HashMap<String, usize>,
    crossing: bool,
}

pub async fn run(args: ChatMixArgs) -> Result<Value> {
    if !(2..=64).contains(&args.group_size) || args.pairs + args.groups == 0 {
        bail!("--group-size must be 2..=64 and there must be rooms");
    }
    let mut nodes = vec![args.common.target()?];
    for url in &args.node_urls {
        nodes.push(args.common.target_for(url)?);
    }
    let run_id = super::new_run_id();
    let room_count = args.pairs + args.groups;
    let users = 2 * args.pairs + args.groups * args.group_size;
    eprintln!(
        "chat-mix run {run_id}: {} pairs + {} groups of {} ({users} users) on {} node(s), cross-node share {}, {} framing",
        args.pairs,
        args.groups,
        args.group_size,
        nodes.len(),
        args.cross_node_share,
        args.common.framing.name()
    );

    // Set up rooms, `connect_concurrency` users at a time (a room counts its members).
    let setup = Instant::now();
    let bar = setup_bar(room_count as u64, "rooms");
    let per_room = (args.common.connect_concurrency / 3).max(1);
    let rooms: Vec<RoomSetup> = futures_util::stream::iter(0..room_count)
        .map(|r| {
            let size = if r < args.pairs { 2 } else { args.group_size };
            let crossing = nodes.len() > 1 && crossing(r, args.cross_node_share);
            let (nodes, run_id, bar) = (&nodes, &run_id, &bar);
            async move {
                let room = set_up_room(nodes, run_id, r, size, crossing).await;
                bar.inc(1);
                room
            }
        })
        .buffered(per_room)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    bar.finish_and_clear();
    let crossing_rooms = rooms.iter().filter(|(r, _)| r.crossing).count();
    eprintln!(
        "set up {users} connections and {room_count} rooms ({crossing_rooms} across nodes) in {:.1} s",
        setup.elapsed().as_secs_f64()
    );

    let progress = Arc::new(Progress::default());
    let body: Arc<str> = super::body(args.common.body_bytes).into();
    let mut commands = Vec::with_capacity(room_count);
    let mut tasks = Vec::with_capacity(room_count);
    for (room, queue) in rooms {
        let (tx, rx) = mpsc::unbounded_channel();
        commands.push(tx);
        let prefix = format!("{run_id}-{}-", room.index);
        tasks.push(tokio::spawn(drive_room(room, queue, rx, prefix, Arc::clone(&body), Arc::clone(&progress))));
    }

    let started = Instant::now();
    let reporter = progress.spawn_reporter(started);
    let mut steps = Vec::new();
    let mut rate = args.rates.first().copied().unwrap_or(args.start_rate);
    let mut failed_steps = 0usize;
    let mut best: Option<f64> = None;
    let mut rng = fastrand::Rng::new();
    for step in 0.. {
        let step_start = Instant::now() + Duration::from_millis(50);
        let measure_start = step_start + Duration::from_secs(args.step_warmup);
        let step_end = measure_start + Duration::from_secs(args.step_secs);
        schedule(&args, &commands, &mut rng, step, rate, step_start, measure_start, step_end).await;
        sleep_until(step_end + SETTLE).await;

        let mut counts = StepCounts::new();
        for tx in &commands {
            let (reply, answer) = oneshot::channel();
            if tx.send(Command::Report { step, reply }).is_ok()
                && let Ok(c) = answer.await
            {
                counts.merge(&c);
            }
        }
        let judged = judged_p99(&counts);
        let passed = judged.is_some_and(|p99| p99 <= args.p99_limit_ms);
        let secs = args.step_secs as f64;
        let summary = json!({
            "offered_rate": rate,
            "sent_per_sec": round3((counts.messages + counts.typings) as f64 / secs),
            "messages_per_sec": round3(counts.messages as f64 / secs),
            "typing_per_sec": round3(counts.typings as f64 / secs),
            "deliveries_per_sec": round3(counts.deliveries as f64 / secs),
            "delivery_ms": counts.delivery.summary(),
            "typing_ms": counts.typing.summary(),
            "ack_ms": counts.ack.summary(),
            "send_lag_ms": counts.send_lag.summary(),
            "missing_at_judgement": counts.missing,
            "judged_p99_ms": judged,
            "passed": passed,
            "t_start": round3(step_start.duration_since(started).as_secs_f64()),
        });
        progress_line(&summary);
        steps.push(summary);
        if passed {
            best = Some(rate);
        } else {
            failed_steps += 1;
        }
        if failed_steps > args.steps_past_limit {
            break;
        }
        rate = match args.rates.get(step + 1) {
            Some(&next) => next,
            None if !args.rates.is_empty() => break,
            None => (rate * args.step_factor).round(),
        };
        if rate > args.max_rate {
            break;
        }
    }

    // Let the stragglers arrive, then count what never did.
    let grace_end = Instant::now() + Duration::from_secs(args.grace);
    sleep_until(grace_end).await;
    let mut totals = FinalCounts::default();
    for tx in &commands {
        let (reply, answer) = oneshot::channel();
        if tx.send(Command::Finish { reply }).is_ok()
            && let Ok(c) = answer.await
        {
            totals.messages += c.messages;
            totals.expected += c.expected;
            totals.lost += c.lost;
            totals.duplicates += c.duplicates;
            totals.unacked += c.unacked;
            totals.refused += c.refused;
            totals.typing_lost += c.typing_lost;
            totals.errors.merge(&c.errors);
        }
    }
    drop(commands);
    progress.stop();
    let timeline = reporter.await?;
    let mut conns = Vec::new();
    for task in tasks {
        conns.extend(task.await?);
    }
    super::close_all(conns).await;

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
    let report = json!({
        "scenario": "chat-mix",
        "run_id": run_id,
        "params": params,
        "users": users,
        "rooms": room_count,
        "rooms_across_nodes": crossing_rooms,
        "max_rate_within_limit": best,
        "steps": steps,
        "messages": totals.messages,
        "expected_deliveries": totals.expected,
        "lost": totals.lost,
        "duplicates": totals.duplicates,
        "unacked": totals.unacked,
        "refused": totals.refused,
        "typing_lost": totals.typing_lost,
        "errors": totals.errors.to_json(),
        "timeline": timeline.to_json(),
    });
    print(&report);
    super::rate_limit_hint(totals.errors.get("rate_limited"), totals.errors.get("close:1008"));
    Ok(report)
}

/// Whether room `r` is one of the `share` of rooms spread over the nodes (evenly interleaved).
fn crossing(r: usize, share: f64) -> bool {
    let share = share.clamp(0.0, 1.0);
    ((r + 1) as f64 * share).floor() > (r as f64 * share).floor()
}

async fn set_up_room(nodes: &[Target], run_id: &str, r: usize, size: usize, crossing: bool) -> Result<RoomSetup> {
    let (queue, mut rx) = mpsc::unbounded_channel();
    let users: Vec<String> = (0..size).map(|m| format!("lt-{run_id}-r{r}-m{m}")).collect();
    let mut members = Vec::with_capacity(size);
    // Others first, so they are online when the room appears; the creator last.
    for (m, user) in users.iter().enumerate().rev() {
        let node = if crossing { (r + m) % nodes.len() } else { r % nodes.len() };
        members.push(Connection::connect_shared(&nodes[node], user, SETUP_TIMEOUT, m, queue.clone()).await?);
    }
    members.reverse();
    let (event, data) = if size == 2 {
        ("room.direct", json!({"user_id": users[1]}))
    } else {
        ("room.group.create", json!({"name": format!("lt {r}"), "members": &users[1..]}))
    };
    let id = members[0].send(event, data)?;
    let created = await_acks(&mut rx, &[(0, id)]).await?.remove(0);
    let Some(room_id) = created["room"]["id"].as_str().map(str::to_owned) else {
        bail!("{event} ack without room.id: {created}");
    };
    // A request in the room from every other member: its node then holds the room (and, in a
    // cluster, its subscription) before traffic starts.
    let mut pending = Vec::new();
    for (m, member) in members.iter_mut().enumerate().skip(1) {
        pending.push((m, member.send("typing", json!({"room_id": room_id, "typing": false}))?));
    }
    await_acks(&mut rx, &pending).await?;
    let by_user = users.iter().enumerate().map(|(m, u)| (u.clone(), m)).collect();
    Ok((Room { index: r, id: room_id, members, by_user, crossing }, rx))
}

type RoomSetup = (Room, mpsc::UnboundedReceiver<(usize, Inbound)>);

/// Waits for the ok acks of `(member, request id)`s on a room's queue; returns their data in
/// order. Pushes meanwhile are set-up noise and dropped.
async fn await_acks(rx: &mut mpsc::UnboundedReceiver<(usize, Inbound)>, ids: &[(usize, i64)]) -> Result<Vec<Value>> {
    let mut out: Vec<Option<Value>> = vec![None; ids.len()];
    let deadline = tokio::time::Instant::now() + SETUP_TIMEOUT;
    while out.iter().any(Option::is_none) {
        let Ok(Some((m, inbound))) = tokio::time::timeout_at(deadline, rx.recv()).await else {
            bail!("set-up: no ack within {SETUP_TIMEOUT:?}");
        };
        match inbound.frame {
            Frame::Ack(a) => {
                if let Some(i) = ids.iter().position(|&(pm, id)| pm == m && id == a.id) {
                    if !a.ok {
                        bail!("set-up request failed with {}", a.error_code.as_deref().unwrap_or("?"));
                    }
                    out[i] = Some(a.data);
                }
            }
            Frame::Closed { code, reason } => bail!("set-up: closed ({code:?} {reason})"),
            _ => {}
        }
    }
    Ok(out.into_iter().map(Option::unwrap_or_default).collect())
}

/// Dispatches the events of one step, every millisecond those that are due.
#[allow(clippy::too_many_arguments)]
async fn schedule(
    args: &ChatMixArgs,
    commands: &[mpsc::UnboundedSender<Command>],
    rng: &mut fastrand::Rng,
    step: usize,
    rate: f64,
    start: Instant,
    measure_start: Instant,
    end: Instant,
) {
    let interval = 1.0 / rate;
    let mut k = 0u64;
    loop {
        let now = Instant::now();
        loop {
            let at = start + Duration::from_secs_f64(k as f64 * interval);
            if at > now {
                break;
            }
            if at >= end {
                return;
            }
            let room = if args.groups > 0 && (args.pairs == 0 || rng.f64() < args.group_share) {
                args.pairs + rng.usize(0..args.groups)
            } else {
                rng.usize(0..args.pairs)
            };
            let typing = rng.f64() < args.typing_share;
            let _ = commands[room].send(Command::Send { at, step, measured: at >= measure_start, typing });
            k += 1;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Drives one room: sends what the scheduler hands it, matches deliveries and acks.
async fn drive_room(
    mut room: Room,
    mut inbound: mpsc::UnboundedReceiver<(usize, Inbound)>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    prefix: String,
    body: Arc<str>,
    progress: Arc<Progress>,
) -> Vec<Connection> {
    let size = room.members.len();
    let all = if size == 64 { u64::MAX } else { (1u64 << size) - 1 };
    let mut ledger: Vec<Sent> = Vec::new();
    let mut awaiting: HashMap<(usize, i64), usize> = HashMap::new();
    // typing_log[s]: (sent at, step, measured) of sender s's typing events, in order;
    // typing_seen[r][s]: how many of them member r has received.
    let mut typing_log: Vec<Vec<(Instant, usize, bool)>> = vec![Vec::new(); size];
    let mut typing_seen = vec![vec![0usize; size]; size];
    let mut next_sender = 0usize;
    let mut steps: HashMap<usize, StepCounts> = HashMap::new();
    let mut errors = ErrorCounts::default();
    let mut duplicates = 0u64;
    let mut open = vec![true; size];

    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None => break,
                Some(Command::Send { at, step, measured, typing }) => {
                    let s = next_sender;
                    next_sender = (next_sender + 1) % size;
                    if !open[s] {
                        continue;
                    }
                    let sent_at = Instant::now();
                    let counts = steps.entry(step).or_insert_with(StepCounts::new);
                    if measured {
                        counts.send_lag.record(sent_at.saturating_duration_since(at));
                    }
                    let member = &mut room.members[s];
                    if typing {
                        if member.notify("typing", json!({"room_id": room.id, "typing": true})).is_ok() {
                            typing_log[s].push((sent_at, step, measured));
                            counts.typings += u64::from(measured);
                            Progress::bump(&progress.sent);
                        }
                        continue;
                    }
                    let n = ledger.len();
                    let data = json!({"room_id": room.id, "kind": "text", "body": &*body,
                                      "client_id": format!("{prefix}{n}")});
                    if let Ok(id) = member.send("message.send", data) {
                        awaiting.insert((s, id), n);
                        ledger.push(Sent { at: sent_at, step, measured, got: 1 << s, acked: false, refused: false });
                        counts.messages += u64::from(measured);
                        Progress::bump(&progress.sent);
                    }
                }
                Some(Command::Report { step, reply }) => {
                    let mut counts = steps.remove(&step).unwrap_or_else(StepCounts::new);
                    counts.missing = ledger
                        .iter()
                        .filter(|m| m.step == step && m.measured && !m.refused)
                        .map(|m| u64::from((all & !m.got).count_ones()))
                        .sum();
                    let _ = reply.send(counts);
                }
                Some(Command::Finish { reply }) => {
                    let mut fin = FinalCounts { duplicates, ..FinalCounts::default() };
                    for m in &ledger {
                        fin.messages += 1;
                        if m.refused {
                            fin.refused += 1;
                            continue;
                        }
                        fin.unacked += u64::from(!m.acked);
                        fin.expected += u64::from(size as u32 - 1);
                        fin.lost += u64::from((all & !m.got).count_ones());
                    }
                    for (r, seen) in typing_seen.iter().enumerate() {
                        for (s, &n) in seen.iter().enumerate() {
                            if r != s && open[r] {
                                fin.typing_lost += (typing_log[s].len() - n.min(typing_log[s].len())) as u64;
                            }
                        }
                    }
                    fin.errors = std::mem::take(&mut errors);
                    let _ = reply.send(fin);
                }
            },
            Some((m, Inbound { at, frame })) = inbound.recv() => match frame {
                Frame::Event { event, data } if event == "message.new" => {
                    let n = data["message"]["client_id"]
                        .as_str()
                        .and_then(|c| c.strip_prefix(prefix.as_str()))
                        .and_then(|n| n.parse::<usize>().ok())
                        .filter(|&n| n < ledger.len());
                    let Some(n) = n else {
                        errors.add("unexpected_message");
                        continue;
                    };
                    let sent = &mut ledger[n];
                    if sent.got & (1 << m) != 0 {
                        duplicates += 1;
                        continue;
                    }
                    sent.got |= 1 << m;
                    let latency = at.saturating_duration_since(sent.at);
                    let counts = steps.entry(sent.step).or_insert_with(StepCounts::new);
                    if sent.measured {
                        counts.delivery.record(latency);
                        counts.deliveries += 1;
                    }
                    progress.record_latency(latency);
                    Progress::bump(&progress.delivered);
                }
                Frame::Event { event, data } if event == "typing" && data["typing"] == json!(true) => {
                    let Some(&s) = data["user_id"].as_str().and_then(|u| room.by_user.get(u)) else {
                        errors.add("unexpected_typing");
                        continue;
                    };
                    let seen = &mut typing_seen[m][s];
                    if let Some(&(sent_at, step, measured)) = typing_log[s].get(*seen) {
                        *seen += 1;
                        if measured {
                            let counts = steps.entry(step).or_insert_with(StepCounts::new);
                            counts.typing.record(at.saturating_duration_since(sent_at));
                            counts.deliveries += 1;
                        }
                    }
                }
                Frame::Ack(a) => {
                    let Some(n) = awaiting.remove(&(m, a.id)) else {
                        // Acks of the set-up typing requests.
                        continue;
                    };
                    let sent = &mut ledger[n];
                    if a.ok {
                        sent.acked = true;
                        if sent.measured {
                            steps.entry(sent.step).or_insert_with(StepCounts::new).ack.record(at.saturating_duration_since(sent.at));
                        }
                        Progress::bump(&progress.acked);
                    } else {
                        sent.refused = true;
                        errors.add(a.error_code.unwrap_or_else(|| "ack_error".into()));
                        Progress::bump(&progress.errors);
                    }
                }
                other => {
                    if note_unexpected(other, &mut errors, &progress) {
                        open[m] = false;
                    }
                }
            },
        }
    }
    room.members
}

/// The step's delivery p99, counting deliveries still missing as later than any measured one.
fn judged_p99(c: &StepCounts) -> Option<f64> {
    let measured = c.delivery.count();
    let total = measured + c.missing;
    if total == 0 {
        return None;
    }
    // The p99 lies among the missing once more than 1 % are missing.
    if c.missing as f64 > 0.01 * total as f64 {
        return Some(f64::INFINITY);
    }
    let q = 0.99 * total as f64 / measured as f64;
    c.delivery.quantile_ms(q.min(1.0))
}

fn progress_line(s: &Value) {
    let d = &s["delivery_ms"];
    eprintln!(
        "step {:>8}/s offered: sent {:>9}/s  deliveries {:>9}/s  p50 {:>7} ms  p99 {:>7} ms  ack p99 {:>7} ms  missing {}  {}",
        s["offered_rate"],
        s["sent_per_sec"],
        s["deliveries_per_sec"],
        d["p50"],
        d["p99"],
        s["ack_ms"]["p99"],
        s["missing_at_judgement"],
        if s["passed"].as_bool() == Some(true) { "PASS" } else { "FAIL" }
    );
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
    if let Some(by_kind) = r["errors"]["by_kind"].as_object().filter(|m| !m.is_empty()) {
        println!("  errors by kind: {}", Value::Object(by_kind.clone()));
    }
}
