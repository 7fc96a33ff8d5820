#!/usr/bin/env python3
"""Where a server's CPU goes, by kind, from a `perf record --call-graph` of it (cost.sh with
PROFILE=1 writes one per measurement):

  perf script -F comm,tid,ip,sym -i runs/NAME.perf.data | loadtest/perf-split.py [--cpu-s S --deliveries N]

Each sample is put in the first kind its stack shows, in this order: waiting for work (parked
in `epoll_wait`, the switch back in included), waking another thread (an eventfd write or a
futex), writing to a socket, reading one, malloc/free, and the rest (the server's own work).
With the measurement's CPU seconds and deliveries (its cost.json), each kind is also given in
µs per delivery. Also the samples per thread."""
import argparse
import collections
import sys

KINDS = [
    ("waiting for work (epoll_wait)", lambda st: "epoll_wait" in st),
    ("waking another thread", lambda st: "mio::sys::unix::waker" in st or "Waker::wake" in st or "futex" in st),
    ("socket writes", lambda st: "sendto" in st or "writev" in st or "TcpStream as std::io::Write" in st),
    ("socket reads", lambda st: "recvfrom" in st or "TcpStream as std::io::Read" in st),
]


def samples(lines):
    sample = None
    for line in lines:
        if not line.strip():
            if sample:
                yield sample
            sample = None
        elif not line.startswith((" ", "\t")):
            parts = line.split()
            sample = {"thread": parts[0], "frames": []}
        elif sample is not None:
            parts = line.strip().split(None, 1)
            sample["frames"].append(parts[-1])
    if sample:
        yield sample


def kind(sample):
    stack = " ".join(sample["frames"])
    for name, test in KINDS:
        if test(stack):
            return name
    leaf = sample["frames"][0] if sample["frames"] else ""
    if any(f in leaf for f in ("malloc", "free", "realloc", "tcache")):
        return "malloc/free"
    return "the rest"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-s", type=float, help="the server's CPU seconds over the profile")
    parser.add_argument("--deliveries", type=int, help="deliveries over the profile")
    args = parser.parse_args()
    every = list(samples(sys.stdin))
    if not every:
        sys.exit("no samples on standard input")
    kinds = collections.Counter(kind(s) for s in every)
    threads = collections.Counter(s["thread"] for s in every)
    per = args.cpu_s / len(every) / args.deliveries * 1e6 if args.cpu_s and args.deliveries else None
    print(f"{len(every)} samples")
    print("| kind | samples | share |" + (" µs per delivery |" if per else ""))
    print("|---|---|---|" + ("---|" if per else ""))
    for name in [k for k, _ in KINDS] + ["malloc/free", "the rest"]:
        n = kinds.get(name, 0)
        print(f"| {name} | {n} | {100 * n / len(every):.1f} % |" + (f" {n * per:.1f} |" if per else ""))
    print()
    for thread, n in threads.most_common():
        print(f"thread {thread}: {n} samples, {100 * n / len(every):.1f} %")


if __name__ == "__main__":
    main()
