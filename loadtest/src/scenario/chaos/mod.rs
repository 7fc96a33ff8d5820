//! `chaos`: the chat mix at a fixed rate through a load balancer in front of a cluster, while
//! a schedule of shell commands injects faults (a node killed, frozen or cut off from its
//! back ends, Redis or PostgreSQL restarted). Users are pairs and groups, one room each,
//! spread over the nodes by the load balancer (`hello` tells which node each reached); each
//! reconnects and resyncs by `after_seq` as a real client does (`user`). Idle probes and a
//! watcher check presence (`presence`). Afterwards every room's history is read and the rule
//! is checked per fault (`verify`): acked ⇒ delivered to every member and in history, exactly
//! once. Also per fault: disconnects and the time back to live delivery, errors by code.

mod faults;
mod presence;
mod user;
mod verify;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::{Cadence, Common, SETUP_TIMEOUT, close_all, connect_all, drive_all, print_errors_by_kind};
use crate::client::{Connection, Target};
use crate::stats::{describe_latency, round3};
use faults::Schedule;
use user::{Plan, User};

#[derive(Debug, Clone, Args)]
pub struct ChaosArgs {
    /// `--url` is the load balancer in front of the cluster.
    #[command(flatten)]
    pub common: Common,

    /// Direct (1:1) rooms.
    #[arg(long, default_value_t = 100)]
    pub pairs: usize,

    /// Group rooms.
    #[arg(long, default_value_t = 20)]
    pub groups: usize,

    /// Members per group, the creator included (at most 1 + the server's group limit).
    #[arg(long, default_value_t = 5)]
    pub group_size: usize,

    /// Messages per second over all users, open loop (each user sends in turn).
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,

    /// Seconds of traffic; fault offsets count from its start.
    #[arg(long, default_value_t = 300)]
    pub duration: u64,

    /// Seconds after the last send for replies, resends and resyncs to settle.
    #[arg(long, default_value_t = 20)]
    pub grace: u64,

    /// A fault: "AT_SECS:NAME:SHELL COMMAND", run with `sh -c` at that offset (repeatable).
    #[arg(long = "fault")]
    pub faults: Vec<String>,

    /// The end of a fault: "AT_SECS:NAME:SHELL COMMAND", NAME as in its --fault (optional).
    #[arg(long = "heal")]
    pub heals: Vec<String>,

    /// Idle users whose presence is checked once a second.
    #[arg(long, default_value_t = 30)]
    pub probes: usize,

    /// The nodes' SWITCHBOARD_NODE_TTL_SECS: a closed probe must be offline within TTL × 4/3 + 3 s.
    #[arg(long, default_value_t = 15)]
    pub node_ttl_secs: u64,

    /// Seconds a request may go unanswered before the client counts its connection as dead,
    /// drops it and reconnects.
    #[arg(long, default_value_t = 10)]
    pub request_timeout: u64,
}

/// A room as set up: its id and its members (user id, connection), the creator first.
type RoomSetup = (String, Vec<(String, Connection)>);

pub async fn run(args: ChaosArgs) -> Result<Value> {
    if !(2..=64).contains(&args.group_size) || args.pairs + args.groups == 0 || args.rate.is_nan() || args.rate <= 0.0 {
        bail!("--group-size must be 2..=64, there must be rooms and --rate must be positive");
    }
    let schedule = Arc::new(Schedule::parse(&args.faults, &args.heals)?);
    let target = args.common.target()?;
    let run_id = super::new_run_id();
    let users = 2 * args.pairs + args.groups * args.group_size;
    eprintln!(
        "chaos run {run_id}: {} pairs + {} groups of {} ({users} users) through {}, {} msg/s for {} s, {} faults",
        args.pairs,
        args.groups,
        args.group_size,
        target.endpoint(),
        args.rate,
        args.duration,
        schedule.faults.len()
    );
    let rooms = set_up(&args, &target, &run_id).await?;
    let ttl = Duration::from_secs(args.node_ttl_secs);
    let monitor = presence::Monitor::set_up(&target, &run_id, args.probes, ttl).await?;

    let t0 = Instant::now() + Duration::from_millis(200);
    let send_end = t0 + Duration::from_secs(args.duration);
    let grace = Duration::from_secs(args.grace);
    let plan = Plan {
        cadence: Cadence::new(t0, args.rate, users),
        send_end,
        sync_at: send_end + grace / 2,
        grace_end: send_end + grace,
        request_timeout: Duration::from_secs(args.request_timeout),
    };
    let commands = tokio::spawn({
        let schedule = Arc::clone(&schedule);
        async move { faults::run_commands(&schedule, t0).await }
    });
    let presence = tokio::spawn(monitor.run(Arc::clone(&schedule), t0, send_end));
    let room_users: Vec<(String, String)> = rooms.iter().map(|(id, m)| (id.clone(), m[0].0.clone())).collect();
    let members = rooms.into_iter().enumerate().flat_map(|(r, (room_id, members))| {
        members.into_iter().enumerate().map(move |(m, (user, conn))| (r, m, room_id.clone(), user, conn))
    });
    let mut index = 0;
    let (results, timeline) = drive_all(t0, members, |(r, m, room_id, user, conn), progress| {
        index += 1;
        let prefix = format!("{run_id}-{r}-{m}-");
        let user = User { index: index - 1, room: r, room_id, user, prefix, target: target.clone(), plan, progress };
        user.run(conn)
    })
    .await?;
    let (outcomes, conns): (Vec<_>, Vec<_>) = results.into_iter().unzip();
    close_all(conns.into_iter().flatten().collect()).await;
    let commands = commands.await?;
    let presence = presence.await?;

    eprintln!("verifying: reading the history of {} rooms", room_users.len());
    let histories = verify::read_histories(&target, &room_users, args.common.connect_concurrency).await;
    let tally = verify::tally(&schedule, t0, &outcomes, &histories);
    let mut report = report(&args, &run_id, &target, &schedule, &tally, presence);
    report["commands"] = Value::Array(commands);
    report["timeline"] = timeline.to_json();
    print(&report);
    Ok(report)
}

/// Connects every user through the load balancer, then per room: the creator opens it and
/// every other member reads its history once, so the member's node holds the room (and its
/// subscription) before traffic starts.
async fn set_up(args: &ChaosArgs, target: &Target, run_id: &str) -> Result<Vec<RoomSetup>> {
    let started = Instant::now();
    let sizes: Vec<usize> = (0..args.pairs).map(|_| 2).chain((0..args.groups).map(|_| args.group_size)).collect();
    let names: Vec<Vec<String>> =
        sizes.iter().enumerate().map(|(r, &n)| (0..n).map(|m| format!("lt-{run_id}-r{r}-m{m}")).collect()).collect();
    let mut conns = connect_all(target, names.iter().flatten().cloned().collect(), args.common.connect_concurrency)
        .await?
        .into_iter();
    let rooms: Vec<Vec<(String, Connection)>> =
        names.into_iter().map(|users| users.into_iter().zip(conns.by_ref()).collect()).collect();
    let rooms = futures_util::stream::iter(rooms.into_iter().enumerate())
        .map(|(r, members)| open_room(r, members))
        .buffered((args.common.connect_concurrency / 4).max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    eprintln!("set up {} rooms in {:.1} s", rooms.len(), started.elapsed().as_secs_f64());
    Ok(rooms)
}

async fn open_room(r: usize, mut members: Vec<(String, Connection)>) -> Result<RoomSetup> {
    let others: Vec<String> = members[1..].iter().map(|(u, _)| u.clone()).collect();
    let (event, data) = if others.len() == 1 {
        ("room.direct", json!({"user_id": others[0]}))
    } else {
        ("room.group.create", json!({"name": format!("chaos {r}"), "members": others}))
    };
    let created = members[0].1.request(event, data, SETUP_TIMEOUT).await?;
    let Some(id) = created["room"]["id"].as_str().map(str::to_owned) else {
        bail!("{event} ack without room.id: {created}");
    };
    for (_, conn) in members.iter_mut().skip(1) {
        conn.request("message.history", json!({"room_id": id, "limit": 1}), SETUP_TIMEOUT).await?;
    }
    Ok((id, members))
}

fn report(
    args: &ChaosArgs,
    run_id: &str,
    target: &Target,
    schedule: &Schedule,
    tally: &verify::Tally,
    presence: Vec<Value>,
) -> Value {
    let end = Duration::from_secs(args.duration);
    let periods: Vec<Value> = schedule
        .period_names()
        .into_iter()
        .zip(schedule.bounds(end))
        .zip(tally.periods.iter().zip(presence))
        .map(|((name, (start, stop)), (p, presence))| {
            let mut v = p.to_json();
            v["name"] = json!(name);
            v["start_secs"] = json!(round3(start.as_secs_f64()));
            v["end_secs"] = json!(round3(stop.as_secs_f64()));
            v["presence"] = presence;
            v
        })
        .collect();
    let mut params = args.common.params(target);
    params["pairs"] = json!(args.pairs);
    params["groups"] = json!(args.groups);
    params["group_size"] = json!(args.group_size);
    params["rate"] = json!(args.rate);
    params["duration_secs"] = json!(args.duration);
    params["grace_secs"] = json!(args.grace);
    params["probes"] = json!(args.probes);
    params["node_ttl_secs"] = json!(args.node_ttl_secs);
    params["presence_late_limit_secs"] = json!(presence::late_limit_secs(Duration::from_secs(args.node_ttl_secs)));
    params["request_timeout_secs"] = json!(args.request_timeout);
    params["faults"] = json!(args.faults);
    params["heals"] = json!(args.heals);
    json!({
        "scenario": "chaos",
        "run_id": run_id,
        "params": params,
        "users": 2 * args.pairs + args.groups * args.group_size,
        "rooms": args.pairs + args.groups,
        "ok": tally.ok,
        "periods": periods,
        "totals": tally.totals,
    })
}

fn print(r: &Value) {
    println!(
        "chaos  run {}  {} users in {} rooms  {} msg/s for {} s",
        r["run_id"].as_str().unwrap_or("?"),
        r["users"],
        r["rooms"],
        r["params"]["rate"],
        r["params"]["duration_secs"]
    );
    for p in r["periods"].as_array().into_iter().flatten() {
        println!(
            "  [{:>6} s] {:<14} acked {:>6}  lost {}  not in history {}  disconnects {} (not back {})  errors {}",
            p["start_secs"],
            p["name"].as_str().unwrap_or("?"),
            p["acked"],
            p["lost"],
            p["not_in_history"],
            p["disconnects"],
            p["not_back"],
            p["errors"]["total"]
        );
        if p["back_ms"]["count"].as_u64().unwrap_or(0) > 0 {
            println!("      back to live  {}", describe_latency(&p["back_ms"]));
        }
        print_errors_by_kind(&p["errors"]);
        let s = &p["presence"];
        println!(
            "      presence: probes closed {} on {}, offline after close p50 {} ms max {} ms, late {}, never {}; connected shown offline: {} polls, {} at period end; polls {} (unavailable {}, failed {})",
            s["probes_closed"],
            s["closed_on_nodes"],
            s["offline_after_close_ms"]["p50"],
            s["offline_after_close_ms"]["max"],
            s["offline_late"],
            s["never_offline"],
            s["polls_with_connected_probe_offline"],
            s["connected_probes_offline_at_end"],
            s["polls"],
            s["polls_unavailable"],
            s["polls_failed"]
        );
    }
    println!("  totals {}", r["totals"]);
    println!(
        "  acked ⇒ delivered to every member and in history, exactly once: {}",
        if r["ok"] == json!(true) { "held" } else { "VIOLATED" }
    );
}
