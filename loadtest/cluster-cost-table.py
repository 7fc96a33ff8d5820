#!/usr/bin/env python3
"""The markdown tables of `loadtest cluster-cost` reports (cluster-cost.sh prints them).
Usage: cluster-cost-table.py REPORT.json…

The first table has one row per node, and a row for all nodes of each configuration of more
than one. Reports of the same server and node count (RUNS>1) are folded into one row per
node: the median of each column over the runs, and for CPU per delivery also the lowest and
highest run. The second table lists every run: its window, how busy each core of the machine
was meanwhile, and its delivery figures."""
import json
import statistics
import sys

COLUMNS = ["users", "addressed", "received", "received_bytes", "published", "published_bytes", "deliveries",
           "cpu_secs"]


def num(x, digits=0):
    return "-" if x is None else f"{x:,.{digits}f}"


def per_delivery(n):
    cpu, deliveries = n["cpu_secs"], n["deliveries"]
    return cpu * 1e6 / deliveries if cpu is not None and deliveries else None


def with_all(report):
    """The report's node rows, plus one summing them when there are several."""
    rows = [dict(n, node=str(n["node"])) for n in report["per_node"]]
    if len(rows) > 1:
        total = {k: sum(n[k] for n in rows) if None not in [n[k] for n in rows] else None for k in COLUMNS}
        rows.append(dict(total, node="all"))
    return rows


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def node_row(server, nodes, runs):
    """One node (or `all`) over its runs."""
    m = {k: median([r[k] for r in runs]) for k in COLUMNS}
    ratio = m["received"] / m["addressed"] if m["addressed"] else None
    per_msg = m["received_bytes"] / m["addressed"] if m["addressed"] else None
    cpus = [c for c in map(per_delivery, runs) if c is not None]
    cpu = num(median(cpus))
    if len(cpus) > 1:
        cpu += f" ({num(min(cpus))}–{num(max(cpus))})"
    return (f"| {server} | {nodes} | {runs[0]['node']} | {num(m['users'])} | {num(m['addressed'])} "
            f"| {num(m['received'])} | **{num(ratio, 2)}** | {num(m['received_bytes'])} | {num(per_msg)} "
            f"| {num(m['published'])} | {num(m['published_bytes'])} | {num(m['deliveries'])} "
            f"| {num(m['cpu_secs'], 2)} | **{cpu}** |")


def main(paths):
    reports = [json.load(open(p)) for p in paths]
    groups = {}
    for r in reports:
        groups.setdefault((r["server"], r["node_count"]), []).append(r)
    runs = max(len(g) for g in groups.values())
    print("| server | nodes | node | users | addressed | bus received | received ÷ addressed "
          "| bytes received | bytes received per addressed | published | bytes published "
          f"| deliveries | CPU s | CPU µs per delivery{' (runs: median, lowest–highest)' if runs > 1 else ''} |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (server, nodes), group in groups.items():
        per_run = [with_all(r) for r in group]
        for i in range(len(per_run[0])):
            print(node_row(server, nodes, [rows[i] for rows in per_run]))
    print()
    print("| server | nodes | run | window s | machine cores busy | deliveries (owed) | lost | duplicates "
          "| delivery p50 / p99 ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (server, nodes), group in groups.items():
        for i, r in enumerate(group, 1):
            busy = " / ".join(f"{b:.2f}" for b in r.get("machine_core_busy", []))
            d = r["delivery_ms"]
            print(f"| {server} | {nodes} | {i} | {r['window_secs']:.1f} | {busy or '-'} "
                  f"| {num(r['deliveries'])} ({num(r['deliveries_owed'])}) | {r['lost']} | {r['duplicates']} "
                  f"| {num(d.get('p50'), 2)} / {num(d.get('p99'), 2)} |")


if __name__ == "__main__":
    main(sys.argv[1:])
