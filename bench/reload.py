#!/usr/bin/env python3
"""Benchmark of live reload: 1000 running jobs, one of them changed in the
file, beside the original C pmtr in one run. Measures the time from the save
to the changed job's new pid, and counts the pids left untouched.

    python3 bench/reload.py [--runs 3] [--jobs 1000]

Two ways of saving: written in place (the original watches for that), and a
new file renamed over the old one (vim, sed -i; the original watches the
file's inode, not its directory, so it never sees this save).
"""
import argparse
import os
import signal
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import build_ours, build_original, tmpfs_dir  # noqa: E402
from engine import Fifo, alive, become_subreaper, build_helpers, stop_supervisor  # noqa: E402
import subprocess  # noqa: E402


def config(ready, jobs, changed=None):
    lines = []
    for i in range(jobs):
        extra = "  env CHANGED=1\n" if i == changed else ""
        lines.append(f"job {{\n  name job{i}\n  cmd {ready}\n{extra}}}\n")
    return "".join(lines)


def one_run(binary, helpers, work, jobs, how):
    d = os.path.join(work, f"run-{time.monotonic_ns()}")
    os.makedirs(d)
    fifo = Fifo(os.path.join(d, "ready.fifo"))
    path = os.path.join(d, "pmtr.conf")
    with open(path, "w") as f:
        f.write(config(helpers["ready"], jobs))
    process = subprocess.Popen(
        [binary, "-F", "-c", path], cwd=d, env=dict(os.environ, READY_FIFO=fifo.path),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    pids = []
    try:
        pids = fifo.pids(jobs)
        # Past the 10 s rapid-restart guard, which the original applies to
        # a job it restarts for a change.
        time.sleep(10.5)
        changed = jobs // 2
        text = config(helpers["ready"], jobs, changed)
        saved = time.perf_counter()
        if how == "in place":
            with open(path, "w") as f:
                f.write(text)
        else:
            with open(path + ".new", "w") as f:
                f.write(text)
            os.rename(path + ".new", path)
        try:
            new = fifo.pids(1, timeout=5.0)
            took = time.perf_counter() - saved
        except TimeoutError:
            new, took = [], None
        time.sleep(0.5)
        # Jobs report in the order they run, not in file order: count the
        # old pids still alive; all but the changed job's should be.
        untouched = sum(1 for p in pids if alive(p))
        return took, untouched, new
    finally:
        stop_supervisor(process, pids, timeout=15)
        fifo.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--ours")
    parser.add_argument("--original")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    become_subreaper()
    programs = {"pmtr": args.ours or build_ours(), "original": args.original or build_original()}
    work = tmpfs_dir("pmtr-bench-reload-")
    helpers = build_helpers(work)
    print(f"# reload: {args.jobs} running jobs, one changed; median of {args.runs}; on {work}")
    for how in ("in place", "rename"):
        print(f"\nsaved {how}: time from the save to the changed job's new pid; untouched pids")
        for kind, binary in programs.items():
            results = [one_run(binary, helpers, work, args.jobs, how) for _ in range(args.runs)]
            times = [t for t, _, _ in results if t is not None]
            untouched = min(u for _, u, _ in results)
            applied = len(times)
            shown = f"{statistics.median(times) * 1000:8.1f} ms" if times else "   never"
            print(f"  {kind:<9} {shown}   untouched {untouched} of {args.jobs - 1}   applied in {applied} of {args.runs} runs"
                  f"   samples {[round(t * 1000, 1) for t in times]}")


if __name__ == "__main__":
    main()
