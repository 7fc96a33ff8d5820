//! `loadtest`: Switchboard's load generator. Thin: parse the command line, run one scenario,
//! write its JSON report. Scenarios live in `scenario/`, the wire client in `client`, the
//! measuring and reporting in `stats`.

mod client;
mod scenario;
mod stats;

use anyhow::Result;
use clap::{Parser, Subcommand};

use scenario::group_fanout::GroupFanoutArgs;
use scenario::latency::LatencyArgs;
use scenario::live::LiveArgs;
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
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let (report, out) = match cli.scenario {
        Scenario::Latency(args) => {
            let out = args.common.out.clone();
            (scenario::latency::run(args).await?, out)
        }
        Scenario::Throughput(args) => {
            let out = args.common.out.clone();
            (scenario::throughput::run(args).await?, out)
        }
        Scenario::Live(args) => {
            let out = args.common.out.clone();
            (scenario::live::run(args).await?, out)
        }
        Scenario::GroupFanout(args) => {
            let out = args.common.out.clone();
            (scenario::group_fanout::run(args).await?, out)
        }
    };
    if let Some(path) = out {
        stats::write_report(&path, &report)?;
        eprintln!("report written to {}", path.display());
    }
    Ok(())
}
