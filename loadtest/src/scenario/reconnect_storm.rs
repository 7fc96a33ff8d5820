//! `reconnect-storm`: N clients chatting in pairs lose their connections at the same instant,
//! reconnect, and resync by history as docs/protocol.md §8 says; the run counts how long each
//! took to be back and whether any message was lost or stored twice.
//!
//! Each client is one task owning one connection. It sends on a fixed schedule (`--rate`
//! spread over all clients) with a `client_id`, keeps the set of `seq`s it holds in its room
//! (its own acked messages and its peer's pushes), and fills a gap with `message.history
//! after_seq` as soon as a push skips ahead. At the storm every client drops its TCP connection
//! without a close frame, reconnects (`--reconnect-concurrency` at a time; refused attempts are
//! retried), pages `message.history` from the last contiguous `seq` it held, then resends the
//! messages that were never acked with the same `client_id` (the server returns the stored one
//! if the first attempt was committed). A client is **back** once that history is read; sends
//! scheduled while it is away are skipped. After the storm, traffic goes on for `--after`
//! seconds and a grace period; then every `seq` acked to either member must be held by both
//! (**lost** otherwise), and no `client_id` may appear under two `seq`s (**duplicates**).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};

use super::resync::{Held, PAGE, failure_kind};
use super::{
    Cadence, Common, SETUP_TIMEOUT, close_all, connect_all, drive_all, note_refused, note_unexpected,
    open_direct_rooms, print_errors_by_kind, sleep_until, text_message,
};
use crate::client::{Connection, Frame, Inbound, Target};
use crate::stats::{ErrorCounts, LatencyRecorder, Progress, describe_latency, round3};

/// Pause between two refused reconnect attempts of one client.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Args)]
pub struct ReconnectStormArgs {
    #[command(flatten)]
    pub common: Common,

    /// Further nodes (repeatable): pair i lives on node i mod n (both members), --url being
    /// node 0. Clients reconnect to the node they left.
    #[arg(long = "node-url")]
    pub node_urls: Vec<String>,

    /// Clients (even: they chat in pairs).
    #[arg(long, default_value_t = 2000)]
    pub clients: usize,

    /// Total messages per second over all clients.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,

    /// Seconds of traffic before the storm.
    #[arg(long, default_value_t = 5)]
    pub before: u64,

    /// Seconds of traffic after the storm (should exceed the time everyone needs to be back).
    #[arg(long, default_value_t = 15)]
    pub after: u64,

    /// Seconds after the last send for acks, pushes and history to settle.
    #[arg(long, default_value_t = 10)]
    pub grace: u64,

    /// Reconnects in flight at once, over all clients.
    #[arg(long, default_value_t = 1000)]
    pub reconnect_concurrency: usize,
}

/// What one client saw.
#[derive(Default)]
struct ClientOutcome {
    pair: usize,
    /// seq of every message this client sent that was acked.
    acked: Vec<i64>,
    /// Every seq held, with its client_id; counts duplicates.
    held: Held,
    sent: u64,
    resent: u64,
    unacked: u64,
    skipped: u64,
    redundant_pushes: u64,
    gap_fills: u64,
    reconnect_attempts: u64,
    back_after: Option<Duration>,
    errors: ErrorCounts,
}

/// The storm's timetable: every client sends on the cadence, drops at `storm_at`, and sends
/// until `send_end`; `grace_end` bounds the wait for what is still under way.
#[derive(Clone, Copy)]
struct Plan {
    cadence: Cadence,
    storm_at: Instant,
    send_end: Instant,
    grace_end: Instant,
}

impl Plan {
    fn new(args: &ReconnectStormArgs, t0: Instant) -> Self {
        let storm_at = t0 + Duration::from_secs(args.before);
        let send_end = storm_at + Duration::from_secs(args.after);
        Self {
            cadence: Cadence::new(t0, args.rate, args.clients),
            storm_at,
            send_end,
            grace_end: send_end + Duration::from_secs(args.grace),
        }
    }
}

/// One pair as set up: its index, its node, its two members' connections and its room.
type PairSetup = (usize, usize, Connection, Connection, String);

pub async fn run(args: ReconnectStormArgs) -> Result<Value> {
    if args.clients < 2 || !args.clients.is_multiple_of(2) || args.rate.is_nan() || args.rate <= 0.0 {
        bail!("--clients must be even and at least 2, --rate positive");
    }
    let nodes = args.common.targets(&args.node_urls)?;
    let run_id = super::new_run_id();
    eprintln!(
        "reconnect-storm run {run_id}: {} clients in {} pairs on {} node(s), {} msg/s, storm after {} s",
        args.clients,
        args.clients / 2,
        nodes.len(),
        args.rate,
        args.before
    );
    let pairs = set_up_pairs(&args, &nodes, &run_id).await?;

    let t0 = Instant::now() + Duration::from_millis(200);
    let plan = Plan::new(&args, t0);
    let gate = Arc::new(Semaphore::new(args.reconnect_concurrency.max(1)));
    let (back_tx, _) = watch::channel(0usize);
    let back_tx = Arc::new(back_tx);
    let clients = pairs.into_iter().flat_map(|(p, n, a, b, room)| {
        [a, b].into_iter().enumerate().map(move |(k, conn)| (p, n, k, room.clone(), conn))
    });
    let (results, timeline) = drive_all(t0, clients, |(p, n, k, room, conn), progress| {
        let client = Client {
            index: 2 * p + k,
            pair: p,
            target: nodes[n].clone(),
            room,
            prefix: format!("{run_id}-{p}-{k}-"),
            plan,
            progress,
            gate: Arc::clone(&gate),
            back: Arc::clone(&back_tx),
        };
        client.run(conn)
    })
    .await?;
    let (outcomes, conns): (Vec<ClientOutcome>, Vec<Option<Connection>>) = results.into_iter().unzip();
    close_all(conns.into_iter().flatten().collect()).await;

    let mut report = report(&args, &run_id, &nodes, &outcomes);
    report["timeline"] = timeline.to_json();
    print(&report);
    Ok(report)
}

/// Per node: connects its pairs' second members, then their first members, then opens the
/// pairs' rooms. Pair p lives on node p mod n.
async fn set_up_pairs(args: &ReconnectStormArgs, nodes: &[Target], run_id: &str) -> Result<Vec<PairSetup>> {
    let pairs = args.clients / 2;
    let setup = Instant::now();
    let mut with_rooms = Vec::with_capacity(pairs);
    for (n, target) in nodes.iter().enumerate() {
        let mine: Vec<usize> = (0..pairs).filter(|p| p % nodes.len() == n).collect();
        let bs: Vec<String> = mine.iter().map(|p| format!("lt-{run_id}-p{p}-b")).collect();
        let a_s: Vec<String> = mine.iter().map(|p| format!("lt-{run_id}-p{p}-a")).collect();
        let b_conns = connect_all(target, bs.clone(), args.common.connect_concurrency).await?;
        let a_conns = connect_all(target, a_s, args.common.connect_concurrency).await?;
        let rooms = open_direct_rooms(a_conns, bs, args.common.connect_concurrency).await?;
        for ((p, (a, room)), b) in mine.into_iter().zip(rooms).zip(b_conns) {
            with_rooms.push((p, n, a, b, room));
        }
    }
    eprintln!("set up {} clients in {:.1} s", args.clients, setup.elapsed().as_secs_f64());
    Ok(with_rooms)
}

/// Per pair, every seq acked to either member must be held by both: returns the seqs missing
/// from a member (lost) and the messages stored.
fn losses(outcomes: &[ClientOutcome]) -> (u64, u64) {
    let mut by_pair: HashMap<usize, Vec<&ClientOutcome>> = HashMap::new();
    for o in outcomes {
        by_pair.entry(o.pair).or_default().push(o);
    }
    let (mut lost, mut stored) = (0u64, 0u64);
    for members in by_pair.values() {
        let all: BTreeSet<i64> = members.iter().flat_map(|m| m.acked.iter().copied()).collect();
        stored += all.len() as u64;
        for m in members {
            lost += all.iter().filter(|&&s| !m.held.holds(s)).count() as u64;
        }
    }
    (lost, stored)
}

fn report(args: &ReconnectStormArgs, run_id: &str, nodes: &[Target], outcomes: &[ClientOutcome]) -> Value {
    let (lost, stored) = losses(outcomes);
    let mut back = LatencyRecorder::new();
    let mut errors = ErrorCounts::default();
    let mut not_back = 0u64;
    let mut back_max = Duration::ZERO;
    let sum = |f: fn(&ClientOutcome) -> u64| outcomes.iter().map(f).sum::<u64>();
    for o in outcomes {
        errors.merge(&o.errors);
        match o.back_after {
            Some(d) => {
                back.record(d);
                back_max = back_max.max(d);
            }
            None => not_back += 1,
        }
    }
    let mut params = args.common.params(&nodes[0]);
    params["nodes"] = json!(nodes.iter().map(Target::endpoint).collect::<Vec<_>>());
    params["clients"] = json!(args.clients);
    params["rate"] = json!(args.rate);
    params["before_secs"] = json!(args.before);
    params["after_secs"] = json!(args.after);
    params["grace_secs"] = json!(args.grace);
    params["reconnect_concurrency"] = json!(args.reconnect_concurrency);
    json!({
        "scenario": "reconnect-storm",
        "run_id": run_id,
        "params": params,
        "clients_back": outcomes.len() as u64 - not_back,
        "clients_not_back": not_back,
        "all_back_secs": if not_back == 0 { json!(round3(back_max.as_secs_f64())) } else { Value::Null },
        "back_ms": back.summary(),
        "messages_stored": stored,
        "lost": lost,
        "duplicates": sum(|o| o.held.duplicates),
        "sent": sum(|o| o.sent),
        "resent": sum(|o| o.resent),
        "unacked": sum(|o| o.unacked),
        "skipped_while_away": sum(|o| o.skipped),
        "redundant_pushes": sum(|o| o.redundant_pushes),
        "gap_fills": sum(|o| o.gap_fills),
        "reconnect_attempts": sum(|o| o.reconnect_attempts),
        "errors": errors.to_json(),
    })
}

fn print(r: &Value) {
    println!(
        "reconnect-storm  run {}  {} clients  back {} (all within {} s), not back {}",
        r["run_id"].as_str().unwrap_or("?"),
        r["params"]["clients"],
        r["clients_back"],
        r["all_back_secs"],
        r["clients_not_back"]
    );
    println!("  back      {}", describe_latency(&r["back_ms"]));
    println!(
        "  stored {}  lost {}  duplicates {}  sent {}  resent {}  unacked {}  skipped while away {}  redundant pushes {}  gap fills {}  reconnect attempts {}  errors {}",
        r["messages_stored"],
        r["lost"],
        r["duplicates"],
        r["sent"],
        r["resent"],
        r["unacked"],
        r["skipped_while_away"],
        r["redundant_pushes"],
        r["gap_fills"],
        r["reconnect_attempts"],
        r["errors"]["total"]
    );
    print_errors_by_kind(&r["errors"]);
}

struct Client {
    index: usize,
    pair: usize,
    target: Target,
    room: String,
    prefix: String,
    plan: Plan,
    progress: Arc<Progress>,
    gate: Arc<Semaphore>,
    back: Arc<watch::Sender<usize>>,
}

/// What an outstanding request was for.
enum Pending {
    Send(usize),
    History,
}

struct State {
    out: ClientOutcome,
    /// client_id → (seq once acked); index = the n in `prefix + n`.
    mine: Vec<Option<i64>>,
    pending: HashMap<i64, Pending>,
    /// A history read is under way (a resync or a gap fill).
    reading: bool,
    away_since: Option<Instant>,
}

impl Client {
    async fn run(self, conn: Connection) -> (ClientOutcome, Option<Connection>) {
        let mut st = State {
            out: ClientOutcome { pair: self.pair, ..ClientOutcome::default() },
            mine: Vec::new(),
            pending: HashMap::new(),
            reading: false,
            away_since: None,
        };
        let mut conn = Some(conn);
        let mut k = 0u64;
        let mut next_at = self.send_time(0);
        let mut stormed = false;
        loop {
            let sending = next_at < self.plan.send_end;
            if !sending && Instant::now() >= self.plan.grace_end {
                break;
            }
            if !sending
                && st.away_since.is_none()
                && !st.reading
                && st.pending.is_empty()
                && Instant::now() > self.plan.send_end + Duration::from_secs(1)
            {
                break;
            }
            let Some(c) = conn.as_mut() else { break };
            tokio::select! {
                _ = sleep_until(self.plan.storm_at), if !stormed => {
                    stormed = true;
                    conn.take().expect("connected").abort().await;
                    st.pending.clear();
                    st.reading = false;
                    st.away_since = Some(Instant::now());
                    conn = self.reconnect(&mut st).await;
                }
                _ = sleep_until(next_at), if sending => {
                    if st.away_since.is_some() {
                        st.out.skipped += 1;
                    } else {
                        let n = st.mine.len();
                        st.mine.push(None);
                        self.send_message(c, &mut st, n);
                        st.out.sent += 1;
                    }
                    k += 1;
                    next_at = self.send_time(k);
                }
                _ = sleep_until(self.plan.grace_end) => break,
                inbound = c.recv() => match inbound {
                    None => break,
                    Some(Inbound { frame, .. }) => self.on_frame(c, &mut st, frame),
                },
            }
        }
        st.out.unacked = st.mine.iter().filter(|s| s.is_none()).count() as u64;
        (st.out, conn)
    }

    fn send_time(&self, k: u64) -> Instant {
        self.plan.cadence.at(self.index, k)
    }

    fn send_message(&self, c: &mut Connection, st: &mut State, n: usize) {
        let data = text_message(&self.room, "storm", format!("{}{n}", self.prefix));
        if let Ok(id) = c.send("message.send", data) {
            st.pending.insert(id, Pending::Send(n));
            Progress::bump(&self.progress.sent);
        }
    }

    fn read_history(&self, c: &mut Connection, st: &mut State, after: i64) {
        if let Ok(id) = c.send("message.history", json!({"room_id": self.room, "after_seq": after, "limit": PAGE})) {
            st.pending.insert(id, Pending::History);
            st.reading = true;
        }
    }

    /// Reconnects (retrying refusals), then starts the resync.
    async fn reconnect(&self, st: &mut State) -> Option<Connection> {
        let _permit = self.gate.acquire().await.expect("never closed");
        loop {
            st.out.reconnect_attempts += 1;
            match Connection::connect(&self.target, &self.user(), SETUP_TIMEOUT).await {
                Ok(mut c) => {
                    let have = st.out.held.have();
                    self.read_history(&mut c, st, have);
                    return Some(c);
                }
                Err(e) => {
                    st.out.errors.add(format!("reconnect: {}", failure_kind(&e)));
                    if Instant::now() >= self.plan.grace_end {
                        return None;
                    }
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
    }

    fn user(&self) -> String {
        let k = if self.index.is_multiple_of(2) { "a" } else { "b" };
        // The run id is the prefix's first segment.
        let run = self.prefix.split('-').next().unwrap_or("");
        format!("lt-{run}-p{}-{k}", self.pair)
    }

    fn on_frame(&self, c: &mut Connection, st: &mut State, frame: Frame) {
        match frame {
            Frame::Event { event, data } if event == "message.new" => {
                let m = &data["message"];
                let Some(seq) = m["seq"].as_i64() else { return };
                let have = st.out.held.have();
                if !st.out.held.hold(seq, m["client_id"].as_str()) {
                    st.out.redundant_pushes += 1;
                    return;
                }
                Progress::bump(&self.progress.delivered);
                if seq > have + 1 && !st.reading && st.away_since.is_none() {
                    st.out.gap_fills += 1;
                    self.read_history(c, st, have);
                }
            }
            Frame::Ack(a) => match st.pending.remove(&a.id) {
                Some(Pending::Send(n)) => {
                    if a.ok {
                        if let Some(seq) = a.data["message"]["seq"].as_i64() {
                            st.mine[n] = Some(seq);
                            st.out.acked.push(seq);
                            let id = format!("{}{n}", self.prefix);
                            st.out.held.hold(seq, Some(&id));
                        }
                        Progress::bump(&self.progress.acked);
                    } else {
                        note_refused(a.error_code, &mut st.out.errors, &self.progress);
                    }
                }
                Some(Pending::History) => {
                    if !a.ok {
                        st.out.errors.add(format!("history:{}", a.error_code.unwrap_or_default()));
                        st.reading = false;
                        return;
                    }
                    let mut last = None;
                    for m in a.data["messages"].as_array().into_iter().flatten() {
                        if let Some(seq) = m["seq"].as_i64() {
                            st.out.held.hold(seq, m["client_id"].as_str());
                            last = Some(seq);
                        }
                    }
                    if a.data["has_more"].as_bool() == Some(true)
                        && let Some(last) = last
                    {
                        self.read_history(c, st, last);
                        return;
                    }
                    st.reading = false;
                    if let Some(since) = st.away_since.take() {
                        // Back: history read. Resend what was never acked, with its client_id.
                        st.out.back_after = Some(since.elapsed());
                        self.back.send_modify(|n| *n += 1);
                        for n in 0..st.mine.len() {
                            if st.mine[n].is_none() {
                                st.out.resent += 1;
                                self.send_message(c, st, n);
                            }
                        }
                    }
                }
                None => st.out.errors.add("unknown_ack"),
            },
            other => {
                let _ = note_unexpected(other, &mut st.out.errors, &self.progress);
            }
        }
    }
}
