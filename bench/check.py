#!/usr/bin/env python3
"""Benchmark: `pmtr -t` on a generated file of 10 000 jobs, ours beside the
original C pmtr, in one run. Reports the median wall time of N runs and
the peak RSS (ru_maxrss of the child).

    bench/check.py [--ours target/release/pmtr] [--original PATH] [--runs 11]
"""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import build_ours, build_original, tmpfs_dir  # noqa: E402


def generate(path, jobs):
    with open(path, "w") as f:
        for i in range(jobs):
            f.write(
                "job {\n"
                f"  name job{i}\n"
                f"  cmd /bin/sleep {1000 + i}\n"
                "  dir /tmp\n"
                "  env MODE=bench\n"
                "  nice 5\n"
                "  ulimit -n 1024\n"
                "}\n"
            )


def measure(argv, cwd):
    """Wall seconds and peak RSS (KiB) of one run of argv."""
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.chdir(cwd)
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - start
    return elapsed, usage.ru_maxrss, os.waitstatus_to_exitcode(status)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ours")
    parser.add_argument("--original")
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--jobs", type=int, default=10_000)
    args = parser.parse_args()
    ours = args.ours or build_ours()
    original = args.original or build_original()
    work = tmpfs_dir("pmtr-bench-check-")
    conf = os.path.join(work, "pmtr.conf")
    generate(conf, args.jobs)
    print(f"pmtr -t on {args.jobs} jobs ({os.path.getsize(conf)} bytes), median of {args.runs} runs, on {work}")
    print(f"{'program':<10} {'median ms':>10} {'min ms':>8} {'peak RSS KiB':>13} {'exit':>5}")
    for label, binary in (("ours", ours), ("original", original)):
        runs = [measure([binary, "-t", "-c", conf], work) for _ in range(args.runs)]
        times = [r[0] * 1000 for r in runs]
        rss = max(r[1] for r in runs)
        print(f"{label:<10} {statistics.median(times):>10.1f} {min(times):>8.1f} {rss:>13} {runs[0][2]:>5}")


if __name__ == "__main__":
    main()
