#!/usr/bin/env python3
"""The figures of loadtest/cost.sh: a message's CPU cost per delivery, side by side.

  cost-table.py record --name N --server S --rate R --run K --ticks-per-sec HZ \
      --start FILE --end FILE --perf FILE --report CHAT_MIX.json --out N.cost.json
      one measurement: the CPU readings at the window's start and end (cost.sh's snapshot
      files), `perf stat -x,` output for the server, and the generator's report (one step)
  cost-table.py table [--json FILE] N.cost.json…
      the markdown tables (stdout) and their figures (FILE): per server and rate, the median
      over the runs of server, database and total CPU µs per delivery, with the lowest and
      highest run; the ratios; then every run with how busy the machine was.
"""
import argparse
import json
import statistics
import sys

# The issue's figures for Switchboard (2 December 2026), shown beside the measured ones.
ISSUE_FIGURES = {"server": 180, "database": 194, "total": 374}


def read_snapshot(path):
    """cost.sh's snapshot: `name value` lines, and `cpuN busy total` per core."""
    values, cores = {}, []
    for line in open(path):
        parts = line.split()
        if parts[0].startswith("cpu"):
            cores.append((int(parts[1]), int(parts[2])))
        else:
            values[parts[0]] = float(parts[1])
    return values, cores


def read_perf(path):
    """`perf stat -x,` output: {event: value}; events perf could not count are left out."""
    counts = {}
    try:
        lines = open(path).read().splitlines()
    except FileNotFoundError:
        return counts
    for line in lines:
        fields = line.split(",")
        if len(fields) > 2 and fields[0] and fields[0][0].isdigit():
            counts[fields[2].split(":")[0]] = float(fields[0])
    return counts


def record(a):
    (v0, c0), (v1, c1) = read_snapshot(a.start), read_snapshot(a.end)
    hz = a.ticks_per_sec
    cpu = {k: round((v1[k] - v0[k]) / hz, 3) for k in ("server", "postgres", "generator", "redis")}
    busy_ticks = sum(b1 - b0 for (b0, _), (b1, _) in zip(c0, c1))
    cpu["others"] = round(busy_ticks / hz - sum(cpu.values()), 3)
    core_busy = [round((b1 - b0) / (t1 - t0), 3) if t1 > t0 else None for (b0, t0), (b1, t1) in zip(c0, c1)]
    perf = read_perf(a.perf)
    report = json.load(open(a.report))
    step = report["steps"][0]
    secs = report["params"]["step_secs"]
    deliveries = round(step["deliveries_per_sec"] * secs)
    per = (lambda x: round(x * 1e6 / deliveries, 1)) if deliveries else (lambda x: None)
    instructions = perf.get("instructions")
    syscalls = perf.get("raw_syscalls")
    out = {
        "name": a.name,
        "server": a.server,
        "rate": a.rate,
        "run": a.run,
        "window_secs": round(v1["time"] - v0["time"], 2),
        "cpu_secs": cpu,
        "core_busy": core_busy,
        "server_perf": {
            "task_clock_secs": round(perf["task-clock"] / 1e3, 3) if "task-clock" in perf else None,
            "instructions": instructions,
            "syscalls": syscalls,
        },
        "events_sent": round(step["sent_per_sec"] * secs),
        "deliveries": deliveries,
        "per_delivery_us": {
            "server": per(cpu["server"]),
            "database": per(cpu["postgres"]),
            "total": per(cpu["server"] + cpu["postgres"]),
        },
        "instructions_per_delivery": round(instructions / deliveries) if instructions and deliveries else None,
        "syscalls_per_delivery": round(syscalls / deliveries, 2) if syscalls and deliveries else None,
        "delivery_ms": {k: step["delivery_ms"].get(k) for k in ("p50", "p99")},
        "passed": step["passed"],
        "missing_at_judgement": step["missing_at_judgement"],
        "lost": report["lost"],
        "duplicates": report["duplicates"],
        "refused": report["refused"],
        "errors": report["errors"]["total"],
    }
    json.dump(out, open(a.out, "w"), indent=2)


def num(x, digits=0):
    return "-" if x is None else f"{x:,.{digits}f}"


def spread(values, digits=0):
    """`median (lowest–highest)` of the values that are known."""
    values = [v for v in values if v is not None]
    if not values:
        return "-", None
    m = statistics.median(values)
    text = num(m, digits)
    if len(values) > 1:
        text += f" ({num(min(values), digits)}–{num(max(values), digits)})"
    return text, m


def summary(runs):
    """One server at one rate over its runs: medians, lowest and highest."""
    def figures(get):
        values = [get(r) for r in runs if get(r) is not None]
        if not values:
            return None
        return {"median": statistics.median(values), "lowest": min(values), "highest": max(values)}
    return {
        "server": runs[0]["server"],
        "rate": runs[0]["rate"],
        "runs": len(runs),
        "sustained_runs": sum(1 for r in runs if r["passed"]),
        "server_us_per_delivery": figures(lambda r: r["per_delivery_us"]["server"]),
        "database_us_per_delivery": figures(lambda r: r["per_delivery_us"]["database"]),
        "total_us_per_delivery": figures(lambda r: r["per_delivery_us"]["total"]),
        "instructions_per_delivery": figures(lambda r: r["instructions_per_delivery"]),
        "syscalls_per_delivery": figures(lambda r: r.get("syscalls_per_delivery")),
        "deliveries": figures(lambda r: r["deliveries"]),
        "delivery_p99_ms": figures(lambda r: r["delivery_ms"]["p99"]),
    }


def cell(f, digits=0):
    if f is None:
        return "-"
    text = num(f["median"], digits)
    return text if f["lowest"] == f["highest"] else f"{text} ({num(f['lowest'], digits)}–{num(f['highest'], digits)})"


def ratio(groups, a, b, key, rate):
    """a ÷ b of one figure: of the medians, and per run (runs paired by their number)."""
    ra, rb = groups.get((a, rate)), groups.get((b, rate))
    if not ra or not rb:
        return None
    fa = {r["run"]: r["per_delivery_us"][key] for r in ra}
    fb = {r["run"]: r["per_delivery_us"][key] for r in rb}
    per_run = [fa[k] / fb[k] for k in sorted(fa) if k in fb and fa[k] and fb[k]]
    ma = statistics.median([v for v in fa.values() if v is not None])
    mb = statistics.median([v for v in fb.values() if v is not None])
    return {"of": f"{a} ÷ {b}", "figure": key, "rate": rate, "of_medians": round(ma / mb, 2) if mb else None,
            "per_run": [round(x, 2) for x in per_run]}


def table(a):
    runs = [json.load(open(p)) for p in a.files]
    groups = {}
    for r in runs:
        groups.setdefault((r["server"], r["rate"]), []).append(r)
    summaries = [summary(g) for g in groups.values()]
    many = max(len(g) for g in groups.values()) > 1
    counted = any(r["instructions_per_delivery"] for r in runs)
    print(f"CPU per delivery{' (median over the runs, lowest–highest)' if many else ''}; deliveries are "
          "the `message.new` and `typing` pushes the generator received in the window.")
    print()
    shares = [r["cpu_secs"]["others"] / (r["window_secs"] * len(r["core_busy"])) for r in runs]
    print(f"The machine: everything but the server, PostgreSQL, the generator and Redis (other jobs, kernel "
          f"time charged to no process) kept {min(shares):.0%}–{max(shares):.0%} of both cores busy over the "
          f"windows, median {statistics.median(shares):.0%} (`others` below).")
    print()
    print("| server | offered events/s | server CPU per delivery | database CPU per delivery | total "
          "| instructions per delivery | system calls per delivery | deliveries | delivery p99 ms "
          "| sustained (p99 ≤ 50 ms) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for s in summaries:
        instr = cell(s["instructions_per_delivery"]) if counted else "not counted"
        print(f"| {s['server']} | {num(s['rate'])} | **{cell(s['server_us_per_delivery'])} µs** "
              f"| {cell(s['database_us_per_delivery'])} µs | **{cell(s['total_us_per_delivery'])} µs** | {instr} "
              f"| {cell(s['syscalls_per_delivery'], 2)} "
              f"| {cell(s['deliveries'])} | {cell(s['delivery_p99_ms'], 1)} | {s['sustained_runs']} of {s['runs']} |")
    f = ISSUE_FIGURES
    print(f"| Switchboard, the issue's figures (2 December) | | {f['server']} µs | {f['database']} µs | {f['total']} µs "
          "| | | | | |")
    print()
    ratios = []
    for rate in sorted({r["rate"] for r in runs}):
        for r in (ratio(groups, "switchboard", "bare-relay", "server", rate),
                  ratio(groups, "switchboard", "socket.io", "total", rate),
                  ratio(groups, "switchboard", "socket.io", "server", rate)):
            if r:
                ratios.append(r)
                per_run = ", ".join(f"{x:.2f}" for x in r["per_run"])
                print(f"- {r['of']}, {r['figure']} CPU per delivery at {num(rate)} events/s: "
                      f"**{num(r['of_medians'], 2)}** of the medians (per run: {per_run})")
    if not counted:
        print("- instructions: `perf stat -e instructions` is not supported in this VM (no hardware "
              "counters); CPU time only")
    print()
    print("Every run: the window, each core's busy share over it, the CPU seconds of the server, "
          "PostgreSQL, the generator, Redis and everything else on the machine (the other core's jobs "
          "included), the server's task-clock by `perf stat` (a cross-check: perf attaches a moment "
          "after the window opens, so it reads a little less).")
    print()
    print("| run | window s | cores busy | server CPU s | perf task-clock s | PostgreSQL CPU s | generator CPU s "
          "| Redis CPU s | others CPU s | events sent | deliveries | p50 / p99 ms | lost | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        c = r["cpu_secs"]
        busy = " / ".join(num(b, 2) for b in r["core_busy"])
        d = r["delivery_ms"]
        print(f"| {r['name']} | {r['window_secs']:.1f} | {busy} | {c['server']:.2f} "
              f"| {num(r['server_perf']['task_clock_secs'], 2)} | {c['postgres']:.2f} | {c['generator']:.2f} "
              f"| {c['redis']:.2f} | {c['others']:.2f} | {num(r['events_sent'])} | {num(r['deliveries'])} "
              f"| {num(d['p50'], 2)} / {num(d['p99'], 2)} | {r['lost']} | {r['errors']} |")
    if a.json:
        json.dump({"summaries": summaries, "ratios": ratios, "issue_figures_switchboard_us": ISSUE_FIGURES,
                   "runs": runs}, open(a.json, "w"), indent=2)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("record")
    for flag in ("name", "server", "start", "end", "perf", "report", "out"):
        r.add_argument(f"--{flag}", required=True)
    r.add_argument("--rate", type=float, required=True)
    r.add_argument("--run", type=int, required=True)
    r.add_argument("--ticks-per-sec", type=float, required=True)
    t = sub.add_parser("table")
    t.add_argument("--json")
    t.add_argument("files", nargs="+")
    a = p.parse_args()
    record(a) if a.command == "record" else table(a)


if __name__ == "__main__":
    sys.exit(main())
