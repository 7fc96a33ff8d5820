#!/usr/bin/env python3
"""The markdown table of `loadtest cluster-cost` reports: one row per node, and a row for all
nodes of each run of more than one. Usage: cluster-cost-table.py REPORT.json…"""
import json
import sys


def num(x, digits=0):
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def row(server, nodes, node, n):
    addressed, received = n["addressed"], n["received"]
    ratio = received / addressed if addressed else None
    per_msg = n["received_bytes"] / addressed if addressed else None
    cpu, deliveries = n["cpu_secs"], n["deliveries"]
    per_delivery = cpu * 1e6 / deliveries if cpu is not None and deliveries else None
    return (f"| {server} | {nodes} | {node} | {num(n['users'])} | {num(addressed)} | {num(received)} "
            f"| **{num(ratio, 2)}** | {num(n['received_bytes'])} | {num(per_msg)} | {num(n['published'])} "
            f"| {num(n['published_bytes'])} | {num(deliveries)} | {num(cpu, 2)} | **{num(per_delivery)}** |")


def main(paths):
    print("| server | nodes | node | users | addressed | bus received | received ÷ addressed "
          "| bytes received | bytes received per addressed | published | bytes published "
          "| deliveries | CPU s | CPU µs per delivery |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for path in paths:
        r = json.load(open(path))
        server, nodes, per_node = r["server"], r["node_count"], r["per_node"]
        for n in per_node:
            print(row(server, nodes, n["node"], n))
        if len(per_node) > 1:
            keys = ["users", "addressed", "received", "received_bytes", "published", "published_bytes",
                    "deliveries"]
            total = {k: sum(n[k] for n in per_node) for k in keys}
            cpus = [n["cpu_secs"] for n in per_node]
            total["cpu_secs"] = None if None in cpus else sum(cpus)
            print(row(server, nodes, "all", total))


if __name__ == "__main__":
    main(sys.argv[1:])
