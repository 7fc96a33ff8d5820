//! `loadtest`: Switchboard's load generator. Thin: parse the command line, run one scenario,
//! write its JSON report and an HTML page with plots next to it. Scenarios live in
//! `scenario/`, the wire client (native and Socket.IO framing) in `client`, the measuring in
//! `stats`, the HTML/SVG in `report`.

mod client;
mod report;
mod scenario;
mod stats;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::Value;

use scenario::chaos::ChaosArgs;
use scenario::chat_mix::ChatMixArgs;
use scenario::cluster_cost::ClusterCostArgs;
use scenario::connect::{ConnectArgs, WorkerArgs};
use scenario::group_fanout::GroupFanoutArgs;
use scenario::latency::LatencyArgs;
use scenario::live::LiveArgs;
use scenario::reconnect_storm::ReconnectStormArgs;
use scenario::throughput::ThroughputArgs;

#[derive(Parser)]
#[command(name = "loadtest", version, about = "Load generator for the Switchboard chat server")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Open-loop send→delivery and send→ack latency between pairs of users.
    Latency(LatencyArgs),
    /// Closed-loop durable message throughput (acks per second).
    Throughput(ThroughputArgs),
    /// One host's live comments fanned out to many viewers: deliveries/s and latency.
    Live(LiveArgs),
    /// Cluster: which nodes receive a group's messages (from the nodes' /metrics).
    GroupFanout(GroupFanoutArgs),
    /// Cluster: per node, bus messages and bytes received against messages addressed to its
    /// users, and CPU per delivery (Switchboard or the instrumented Socket.IO peer).
    ClusterCost(ClusterCostArgs),
    /// N idle authenticated connections: server memory per connection.
    Connect(ConnectArgs),
    /// 1:1, groups and typing at stepped offered rates until delivery p99 passes a limit.
    ChatMix(ChatMixArgs),
    /// N chatting clients drop at once, reconnect and resync by history: time back, losses.
    ReconnectStorm(ReconnectStormArgs),
    /// The chat mix through a load balancer while scheduled commands inject faults: losses,
    /// duplicates, time back and presence, per fault.
    Chaos(ChaosArgs),
    /// HTML page (inline SVG plots) from JSON reports; several chat-mix reports are compared.
    Report(ReportArgs),
    /// Internal: one worker process of `connect`.
    #[command(hide = true)]
    ConnectWorker(WorkerArgs),
}

#[derive(Args)]
struct ReportArgs {
    /// JSON reports; with several chat-mix reports, the first is compared with the others.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// The HTML file to write.
    #[arg(long)]
    out: PathBuf,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let (report, out) = match cli.scenario {
        Scenario::Latency(args) => {
            let out = (args.common.out.clone(), args.common.label.clone());
            (scenario::latency::run(args).await?, out)
        }
        Scenario::Throughput(args) => {
            let out = (args.common.out.clone(), args.common.label.clone());
            (scenario::throughput::run(args).await?, out)
        }
        Scenario::Live(args) => {
            let out = (args.common.out.clone(), args.common.label.clone());
            (scenario::live::run(args).await?, out)
        }
        Scenario::GroupFanout(args) => {
            let out = (args.common.out.clone(), args.common.label.clone());
            (scenario::group_fanout::run(args).await?, out)
        }
        Scenario::ClusterCost(args) => {
            let out = (args.common.out.clone(), args.common.label.clone());
            (scenario::cluster_cost::run(args).await?, out)
        }
        Scenario::Connect(args) => {
            let out = (args.common.out.clone(), args.common.label.clone());
            (scenario::connect::run(args).await?, out)
        }
        Scenario::ChatMix(args) => {
            let out = (args.common.out.clone(), args.common.label.clone());
            (scenario::chat_mix::run(args).await?, out)
        }
        Scenario::ReconnectStorm(args) => {
            let out = (args.common.out.clone(), args.common.label.clone());
            (scenario::reconnect_storm::run(args).await?, out)
        }
        Scenario::Chaos(args) => {
            let out = (args.common.out.clone(), args.common.label.clone());
            (scenario::chaos::run(args).await?, out)
        }
        Scenario::ConnectWorker(args) => return scenario::connect::worker(args).await,
        Scenario::Report(args) => return write_html(&args),
    };
    let (out, label) = out;
    let mut report = report;
    if let Some(label) = label {
        report["label"] = Value::String(label);
    }
    if let Some(path) = out {
        stats::write_report(&path, &report)?;
        let html = path.with_extension("html");
        std::fs::write(&html, report::html(std::slice::from_ref(&report)))?;
        eprintln!("report written to {} and {}", path.display(), html.display());
    }
    Ok(())
}

fn write_html(args: &ReportArgs) -> Result<()> {
    let reports: Vec<Value> = args
        .inputs
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
        })
        .collect::<Result<_>>()?;
    let chat: Vec<Value> = reports.iter().filter(|r| r["scenario"] == "chat-mix").cloned().collect();
    if chat.len() > 1 {
        println!("{:<40} {:>22} {:>14}", "server", "max events/s (p99 ok)", "first ÷ this");
        for (name, best, ratio) in report::comparison(&chat) {
            println!(
                "{:<40} {:>22} {:>14}",
                name,
                best.map_or("none".into(), |b| format!("{b:.0}")),
                ratio.map_or("-".into(), |r| format!("{r:.2}"))
            );
        }
    }
    std::fs::write(&args.out, report::html(&reports)).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("report written to {}", args.out.display());
    Ok(())
}
