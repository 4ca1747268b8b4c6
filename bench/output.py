#!/usr/bin/env python3
"""Benchmark of job output (SPEC 11.5, 11.6), side by side in one run, on
tmpfs, median of 3.

    python3 bench/output.py [--runs 3] [--mb 1024] [--line 100]

One job writes MB megabytes of LINE-byte lines as fast as it can
(`helpers/lines.c`, 64 KiB writes); the time until it has written the last
one (`time`, what the job sees), until the last one is in the file (`in
file`: pmtr may still hold up to a pipe's worth when the job is done), and
pmtr's CPU time for it:

  direct          `out FILE`: the job writes its file itself (as the original)
  pass-through    `out stdout`: pmtr's own stdout, a file; pmtr copies nothing
  timestamps      `out FILE`, `log timestamps`, `log rotate 100M 3`: pmtr
                  reads the pipe and writes the file, a timestamp per line
  rotate only     `out FILE`, `log rotate 100M 3`

Throughput is MB/s of the job's output; pmtr's CPU is per MB written.
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import build_ours, proc_ticks, tmpfs_dir  # noqa: E402
from engine import become_subreaper, median  # noqa: E402
from readiness import Pmtr  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mb", type=int, default=1024)
    parser.add_argument("--line", type=int, default=100)
    parser.add_argument("--ours")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    become_subreaper()
    pmtr = args.ours or build_ours()
    work = tmpfs_dir("pmtr-bench-output-")
    lines = os.path.join(work, "lines")
    subprocess.run(["cc", "-O2", "-o", lines, os.path.join(HERE, "helpers", "lines.c")], check=True)
    count = args.mb * 1024 * 1024 // args.line
    cases = {
        "direct": "out job.out\n",
        "pass-through": "out stdout\n",
        "timestamps": "out job.out\n log timestamps\n log rotate 100M 3\n",
        "rotate only": "out job.out\n log rotate 100M 3\n",
    }
    tick = os.sysconf("SC_CLK_TCK")
    print(f"# output benchmark: {args.mb} MB of {args.line}-byte lines, median of {args.runs}, on {work}\n# pmtr: {pmtr}")
    results = {}
    try:
        for name, options in cases.items():
            samples = []
            for _ in range(args.runs):
                text = f"job {{\n name writer\n cmd {lines} {count} {args.line}\n {options}}}\n"
                stdout_file = os.path.join(work, "pmtr.stdout")
                stdout = open(stdout_file, "wb")
                p = Pmtr(pmtr, work, text, stdout=stdout)
                stdout.close()
                try:
                    seconds = p.wait_reported(1)
                    target = stdout_file if name == "pass-through" else os.path.join(p.dir, "job.out")
                    in_file = wait_last_line(target, count, p.started_at)
                    cpu = proc_ticks(p.process.pid) / tick
                    samples.append((seconds, cpu, in_file))
                finally:
                    p.close()
                    for leftover in os.listdir(work):
                        if leftover.startswith("pmtr-"):
                            shutil.rmtree(os.path.join(work, leftover), ignore_errors=True)
                    if os.path.exists(stdout_file):
                        os.unlink(stdout_file)
            results[name] = samples
        base = median([s for s, _, _ in results["direct"]])
        base_in_file = median([f for _, _, f in results["direct"]])
        print(f"\n{'case':<14} {'time':>9} {'MB/s':>8} {'of direct':>10} {'in file':>9} {'of direct':>10} {'pmtr CPU/MB':>12}")
        for name, samples in results.items():
            seconds = median([s for s, _, _ in samples])
            in_file = median([f for _, _, f in samples])
            cpu = median([c for _, c, _ in samples])
            print(f"{name:<14} {seconds:>8.2f}s {args.mb / seconds:>8.0f} {base / seconds:>9.0%} {in_file:>8.2f}s {base_in_file / in_file:>9.0%} {cpu * 1000 / args.mb:>9.2f} ms   samples {[round(s, 2) for s, _, _ in samples]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def wait_last_line(path, count, started_at):
    """Seconds from pmtr's launch until the job's last line is in `path`."""
    last = f"{count - 1:010d} ".encode()
    while True:
        try:
            with open(path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 8192))
                tail = f.read()
            if last in tail.rsplit(b"\n", 2)[-2]:
                return time.perf_counter() - started_at
        except (OSError, IndexError):
            pass
        time.sleep(0.001)


if __name__ == "__main__":
    main()
