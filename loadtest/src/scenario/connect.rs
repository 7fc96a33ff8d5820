//! `connect`: N idle, authenticated connections, and what they cost the server: resident
//! memory (VmRSS of the `--server-pid`s before and after) and kernel socket memory
//! (`/proc/net/sockstat`), per connection.
//!
//! One process may hold only as many sockets as its open-files limit allows (20,000 on the
//! machine this was written on, and it cannot be raised there), so the connections are held
//! by `--processes` worker processes (this same binary, `connect-worker`), each connecting its
//! share and answering heartbeats (WebSocket pings by tungstenite, Engine.IO pings with `3`).
//! A worker reports progress on stdout and holds its sockets until its stdin closes. The
//! server side has the same limit: spread 50,000 connections over several nodes (`--node-url`).

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::{Common, SETUP_TIMEOUT};
use crate::client::{Framing, Socket, Target};
use crate::stats::{round3, setup_bar};

#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub common: Common,

    /// Further nodes (repeatable); connection i goes to node i mod n, --url being node 0.
    #[arg(long = "node-url")]
    pub node_urls: Vec<String>,

    /// Idle connections to open.
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,

    /// Worker processes holding them (0: one per 18,000 connections).
    #[arg(long, default_value_t = 0)]
    pub processes: usize,

    /// Server process whose memory to measure (repeatable: one per node).
    #[arg(long = "server-pid")]
    pub server_pids: Vec<u32>,

    /// Seconds to hold every connection open before measuring (lets allocators settle and a
    /// heartbeat or two pass).
    #[arg(long, default_value_t = 20)]
    pub hold: u64,
}

/// The hidden worker: connects its share, then holds it until stdin closes.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long = "node-url")]
    pub node_urls: Vec<String>,
    #[arg(long)]
    pub run_id: String,
    #[arg(long)]
    pub offset: usize,
    #[arg(long)]
    pub count: usize,
}

/// VmRSS of a process, in bytes.
fn rss(pid: u32) -> Result<u64> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("reading pid {pid}"))?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .context("no VmRSS")?;
    Ok(kb * 1024)
}

/// `/proc/net/sockstat`'s TCP line: sockets in use and buffer memory (pages).
fn sockstat() -> Value {
    let text = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    let Some(line) = text.lines().find(|l| l.starts_with("TCP:")) else { return Value::Null };
    let fields: Vec<&str> = line.split_whitespace().skip(1).collect();
    let mut out = serde_json::Map::new();
    for pair in fields.chunks(2) {
        if let [k, v] = pair {
            out.insert((*k).to_owned(), json!(v.parse::<u64>().unwrap_or(0)));
        }
    }
    Value::Object(out)
}

fn total_rss(pids: &[u32]) -> Result<u64> {
    pids.iter().map(|&p| rss(p)).sum()
}

/// What the servers use: total RSS, each one's RSS, and the kernel's TCP socket stats.
struct Memory {
    rss: u64,
    per_server: Vec<u64>,
    sockstat: Value,
}

impl Memory {
    fn read(pids: &[u32]) -> Result<Self> {
        let rss_total = total_rss(pids)?;
        let per_server = pids.iter().map(|&p| rss(p)).collect::<Result<_>>()?;
        Ok(Self { rss: rss_total, per_server, sockstat: sockstat() })
    }
}

/// The lines the workers print, each tagged with its worker's index.
type WorkerLines = mpsc::UnboundedReceiver<(usize, String)>;

/// The workers' reports added up: connections made and failed, failures by kind.
struct Connected {
    ok: u64,
    bad: u64,
    failure_kinds: serde_json::Map<String, Value>,
}

pub async fn run(args: ConnectArgs) -> Result<Value> {
    let nodes = args.common.targets(&args.node_urls)?;
    let processes = if args.processes == 0 { args.connections.div_ceil(18_000).max(1) } else { args.processes };
    let run_id = super::new_run_id();
    eprintln!(
        "connect run {run_id}: {} idle connections over {} node(s), {processes} worker process(es), {} framing",
        args.connections,
        nodes.len(),
        args.common.framing.name()
    );
    let before = Memory::read(&args.server_pids)?;

    let started = Instant::now();
    let (workers, lines) = spawn_workers(&args, &run_id, processes)?;
    let connected = follow_workers(lines, processes, args.connections).await?;
    let setup_secs = started.elapsed().as_secs_f64();
    eprintln!("{} connected, {} failed in {setup_secs:.1} s; holding {} s", connected.ok, connected.bad, args.hold);
    tokio::time::sleep(Duration::from_secs(args.hold)).await;

    let after = Memory::read(&args.server_pids)?;
    let generator_rss: u64 = workers.iter().filter_map(|c| c.id()).filter_map(|p| rss(p).ok()).sum();
    stop_workers(workers).await;
    let rss_released = total_rss(&args.server_pids).ok();

    let mut report = report(&args, &run_id, &nodes, processes, &connected, &before, &after);
    report["setup_secs"] = json!(round3(setup_secs));
    report["connects_per_sec"] = json!(round3(connected.ok as f64 / setup_secs));
    report["server_rss_after_close"] = json!(rss_released);
    report["generator_rss"] = json!(generator_rss);
    print(&report, setup_secs);
    Ok(report)
}

/// Starts the worker processes, each with its share of the connections; returns them and
/// the lines they print, tagged with the worker's index.
fn spawn_workers(args: &ConnectArgs, run_id: &str, processes: usize) -> Result<(Vec<Child>, WorkerLines)> {
    let exe = std::env::current_exe()?;
    let (tx, rx) = mpsc::unbounded_channel::<(usize, String)>();
    let mut workers = Vec::new();
    let share = args.connections.div_ceil(processes);
    for w in 0..processes {
        let offset = w * share;
        let count = share.min(args.connections.saturating_sub(offset));
        let mut cmd = Command::new(&exe);
        cmd.arg("connect-worker")
            .args(["--url", &args.common.url, "--jwt-secret", &args.common.jwt_secret])
            .args(["--framing", args.common.framing.name()])
            .args(["--source-ips", &args.common.source_ips.to_string()])
            .args(["--connect-concurrency", &args.common.connect_concurrency.to_string()])
            .args(["--run-id", run_id, "--offset", &offset.to_string(), "--count", &count.to_string()]);
        for url in &args.node_urls {
            cmd.args(["--node-url", url]);
        }
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).kill_on_drop(true).spawn()?;
        let stdout = child.stdout.take().expect("piped");
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send((w, line));
            }
        });
        workers.push(child);
    }
    Ok((workers, rx))
}

/// Follows the workers' lines (`progress OK BAD`, `failure KIND`, `done OK BAD`) on a bar
/// until every worker is done.
async fn follow_workers(mut lines: WorkerLines, processes: usize, connections: usize) -> Result<Connected> {
    let bar = setup_bar(connections as u64, "connections");
    let mut connected = vec![0u64; processes];
    let mut failed = vec![0u64; processes];
    let mut done = vec![false; processes];
    let mut failure_kinds = serde_json::Map::new();
    while done.iter().any(|d| !d) {
        let Some((w, line)) = lines.recv().await else { bail!("a worker ended before connecting its share") };
        let mut parts = line.splitn(4, ' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("progress"), Some(ok), Some(bad)) => {
                connected[w] = ok.parse().unwrap_or(0);
                failed[w] = bad.parse().unwrap_or(0);
            }
            (Some("done"), Some(ok), Some(bad)) => {
                connected[w] = ok.parse().unwrap_or(0);
                failed[w] = bad.parse().unwrap_or(0);
                done[w] = true;
            }
            (Some("failure"), Some(_), _) => {
                let kind = line.split_once(' ').map_or("", |(_, k)| k).to_owned();
                let n = failure_kinds.get(&kind).and_then(Value::as_u64).unwrap_or(0);
                failure_kinds.insert(kind, json!(n + 1));
            }
            _ => {}
        }
        bar.set_position(connected.iter().sum());
    }
    bar.finish_and_clear();
    Ok(Connected { ok: connected.iter().sum(), bad: failed.iter().sum(), failure_kinds })
}

/// Closes the workers' stdin: they exit and the kernel closes their sockets. Then gives the
/// servers a moment to free what the connections held.
async fn stop_workers(mut workers: Vec<Child>) {
    for child in &mut workers {
        drop(child.stdin.take());
    }
    for mut child in workers {
        let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
}

fn report(
    args: &ConnectArgs,
    run_id: &str,
    nodes: &[Target],
    processes: usize,
    connected: &Connected,
    before: &Memory,
    after: &Memory,
) -> Value {
    let ok = connected.ok;
    let per_conn = |before: u64, after: u64| {
        if ok == 0 { Value::Null } else { json!(round3((after as f64 - before as f64) / ok as f64)) }
    };
    let tcp_bytes = |m: &Memory| m.sockstat["mem"].as_u64().unwrap_or(0) * 4096;
    let mut params = args.common.params(&nodes[0]);
    params["nodes"] = json!(nodes.iter().map(Target::endpoint).collect::<Vec<_>>());
    params["connections"] = json!(args.connections);
    params["processes"] = json!(processes);
    params["server_pids"] = json!(args.server_pids);
    params["hold_secs"] = json!(args.hold);
    json!({
        "scenario": "connect",
        "run_id": run_id,
        "params": params,
        "connected": ok,
        "failed": connected.bad,
        "failures": connected.failure_kinds,
        "server_rss_before": before.rss,
        "server_rss_after": after.rss,
        "server_rss_per_server": args.server_pids.iter().enumerate().map(|(i, p)| json!({
            "pid": p, "before": before.per_server[i], "after": after.per_server[i]})).collect::<Vec<_>>(),
        "server_bytes_per_connection": per_conn(before.rss, after.rss),
        "sockstat_before": before.sockstat,
        "sockstat_after": after.sockstat,
        // Both ends of every connection are on this machine: this is client plus server side.
        "kernel_tcp_bytes_per_connection_both_ends": per_conn(tcp_bytes(before), tcp_bytes(after)),
    })
}

fn print(r: &Value, setup_secs: f64) {
    let ok = r["connected"].as_u64().unwrap_or(0);
    let mib = |v: &Value| v.as_u64().unwrap_or(0) as f64 / 1048576.0;
    println!(
        "connect  run {}  {} connected ({} failed) in {:.1} s ({:.0}/s)",
        r["run_id"].as_str().unwrap_or("?"),
        ok,
        r["failed"],
        setup_secs,
        ok as f64 / setup_secs
    );
    println!(
        "  server RSS {:.1} MiB -> {:.1} MiB: {} bytes per connection; kernel TCP memory (both ends) {} bytes per connection",
        mib(&r["server_rss_before"]),
        mib(&r["server_rss_after"]),
        r["server_bytes_per_connection"],
        r["kernel_tcp_bytes_per_connection_both_ends"]
    );
    println!("  sockstat before {}\n  sockstat after  {}", r["sockstat_before"], r["sockstat_after"]);
}

/// The worker's body: connect `count` users, report, hold until stdin closes.
pub async fn worker(args: WorkerArgs) -> Result<()> {
    let nodes = args.common.targets(&args.node_urls)?;
    let (ok_tx, mut ok_rx) = tokio::sync::mpsc::unbounded_channel::<Result<(), String>>();
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(args.common.connect_concurrency.max(1)));
    for i in args.offset..args.offset + args.count {
        let target = nodes[i % nodes.len()].clone();
        let user = format!("lt-{}-c{i}", args.run_id);
        let gate = std::sync::Arc::clone(&gate);
        let ok_tx = ok_tx.clone();
        tokio::spawn(async move {
            let socket = {
                let _permit = gate.acquire().await.expect("never closed");
                crate::client::open(&target, &user, SETUP_TIMEOUT).await
            };
            match socket {
                Ok(socket) => {
                    let _ = ok_tx.send(Ok(()));
                    hold(socket, target.framing()).await;
                }
                Err(e) => {
                    let _ = ok_tx.send(Err(format!("{e:#}")));
                }
            }
        });
    }
    drop(ok_tx);
    let (mut ok, mut bad) = (0u64, 0u64);
    let mut last = Instant::now();
    while ok + bad < args.count as u64 {
        let Some(result) = ok_rx.recv().await else { break };
        match result {
            Ok(()) => ok += 1,
            Err(e) => {
                bad += 1;
                // The error without its user-specific prefix, for the tally.
                let kind: String = e.rsplit(": ").next().unwrap_or(&e).chars().take(80).collect();
                println!("failure {kind}");
            }
        }
        if last.elapsed() >= Duration::from_millis(250) {
            println!("progress {ok} {bad}");
            last = Instant::now();
        }
    }
    println!("done {ok} {bad}");
    // Hold until the parent closes stdin.
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    Ok(())
}

/// An idle connection: read (tungstenite answers WebSocket pings while reading) and answer
/// Engine.IO pings, until the socket ends.
async fn hold(mut socket: Socket, framing: Framing) {
    while let Some(Ok(message)) = socket.next().await {
        if framing == Framing::Socketio && matches!(&message, Message::Text(t) if t.as_str() == "2") {
            let _ = socket.send(Message::Text("3".into())).await;
        }
    }
}
