//! What a node says about itself, read from outside: counters from its `/metrics` (plain
//! HTTP/1.0 on the node's own host:port), its process's CPU time from `/proc/PID/stat`, and
//! how busy each core of the machine was (`/proc/stat`), to tell a quiet machine from a shared one.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::SETUP_TIMEOUT;

/// `GET /metrics`; the samples whose name `keep` accepts, summed over their label sets.
pub async fn scrape(authority: &str, keep: impl Fn(&str) -> bool) -> Result<BTreeMap<String, f64>> {
    let read = async {
        let mut stream = tokio::net::TcpStream::connect(authority).await?;
        stream.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {authority}\r\n\r\n").as_bytes()).await?;
        let mut text = String::new();
        stream.read_to_string(&mut text).await?;
        anyhow::Ok(text)
    };
    let text = tokio::time::timeout(SETUP_TIMEOUT, read)
        .await
        .with_context(|| format!("http://{authority}/metrics: no answer within {SETUP_TIMEOUT:?}"))?
        .with_context(|| format!("reading http://{authority}/metrics"))?;
    let (head, body) = text.split_once("\r\n\r\n").context("no HTTP header end")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!("http://{authority}/metrics: {}", head.lines().next().unwrap_or(head));
    }
    let mut values = BTreeMap::new();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap_or("");
        if !name.is_empty() && keep(name) {
            let value: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
            *values.entry(name.to_owned()).or_insert(0.0) += value;
        }
    }
    Ok(values)
}

/// Clock ticks per second of `/proc/PID/stat`'s times (`getconf CLK_TCK`; 100 when that
/// cannot be run, which is Linux's USER_HZ on every common architecture).
pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|&t| t > 0.0)
        .unwrap_or(100.0)
}

/// CPU seconds a process has used so far: utime + stime (its own threads, not its children).
pub fn cpu_secs(pid: u32, ticks_per_sec: f64) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading pid {pid}"))?;
    // The command name may hold spaces and parentheses: fields are counted after its last ')'.
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).context("no ')' in /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15 (1-based, man proc).
    let field = |n: usize| -> Result<f64> {
        fields.get(n - 3).and_then(|v| v.parse::<f64>().ok()).with_context(|| format!("pid {pid}: field {n}"))
    };
    Ok((field(14)? + field(15)?) / ticks_per_sec)
}

/// Busy and total clock ticks of each core so far (`cpuN` lines of `/proc/stat`; busy is
/// everything but idle and iowait).
pub fn core_ticks() -> Result<Vec<(u64, u64)>> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let mut cores = Vec::new();
    for line in stat.lines().filter(|l| l.starts_with("cpu") && !l.starts_with("cpu ")) {
        let ticks: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
        let total: u64 = ticks.iter().take(8).sum();
        let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
        cores.push((total - idle, total));
    }
    Ok(cores)
}

/// Each core's busy share between two `core_ticks` readings (0 to 1).
pub fn core_busy(before: &[(u64, u64)], after: &[(u64, u64)]) -> Vec<f64> {
    before
        .iter()
        .zip(after)
        .map(|(&(b0, t0), &(b1, t1))| if t1 > t0 { (b1 - b0) as f64 / (t1 - t0) as f64 } else { 0.0 })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_cpu_time_reads_and_grows() {
        let ticks = super::clock_ticks();
        let pid = std::process::id();
        let before = super::cpu_secs(pid, ticks).expect("own stat");
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let after = super::cpu_secs(pid, ticks).expect("own stat");
        assert!(before >= 0.0 && after >= before, "{before} then {after}");
    }
}
