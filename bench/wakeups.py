#!/usr/bin/env python3
"""The most CPU pmtr's loop spends in one wake-up, by operation, with N jobs
(issue 16: none above 50 ms at 10 000 jobs, so that a control request is
never kept waiting long by other work).

    python3 bench/wakeups.py [--jobs 10000] [--ours PMTR]

`perf sched record` (Debian's linux-perf) traces every context switch while
pmtr starts N jobs (`helpers/ready`), answers `pmtr-ctl status --json`,
reloads its file with one job changed (written in place), brings back 10 %
of its jobs killed at once, and shuts down. A wake-up is pmtr's time on CPU
between two voluntary sleeps (switched out in state S: epoll_wait); waiting
for a child's execve (state D) or being preempted (R) does not end one, and
only time on CPU counts. Timestamps are CLOCK_MONOTONIC, so each wake-up is
given to the operation whose window holds it.
"""
import argparse
import os
import random
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import build_ours, tmpfs_dir  # noqa: E402
from engine import Subject, become_subreaper, build_helpers  # noqa: E402
from scale import rewrite  # noqa: E402


def wakeups(trace, pid):
    """(end time, CPU ms) of each wake-up of thread `pid`, from `perf sched
    timehist --state`: run time summed until a switch out in state S."""
    out = subprocess.run(
        ["perf", "sched", "timehist", "--state", "-i", trace, "--tid", str(pid)],
        check=True, capture_output=True, text=True,
    ).stdout
    result, running = [], 0.0
    for line in out.splitlines():
        fields = line.split()
        # time cpu task wait sch-delay run state
        if len(fields) < 7 or not fields[0][0].isdigit() or f"[{pid}]" not in fields[2]:
            continue
        running += float(fields[5])
        if fields[6] == "S":
            result.append((float(fields[0]), running))
            running = 0.0
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--ours")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    become_subreaper()
    n = args.jobs
    programs = {"pmtr": args.ours or build_ours()}
    ctl = os.path.join(os.path.dirname(programs["pmtr"]), "pmtr-ctl")
    work = tmpfs_dir("pmtr-bench-wakeups-")
    helpers = build_helpers(work)
    trace = os.path.join(work, "sched.data")
    perf = subprocess.Popen(
        ["perf", "sched", "record", "-k", "CLOCK_MONOTONIC", "-o", trace],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    time.sleep(1)  # perf has started tracing
    windows = []

    def window(name, begin):
        windows.append((name, begin, time.monotonic()))

    s = Subject("pmtr", programs, helpers, work, n)
    try:
        begin = time.monotonic()
        s.wait_started()
        window("start", begin)
        socket = os.path.join(s.dir, "pmtr.sock")
        time.sleep(0.5)
        begin = time.monotonic()
        subprocess.run([ctl, "--socket", socket, "status", "--json"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        window("status --json", begin)
        # Past the rapid-restart guard (10 s), which delays a changed job.
        time.sleep(10.5)
        changed = n // 2
        begin = time.monotonic()
        rewrite(s, helpers["ready"], changed)
        s.job_pids += s.fifo.pids(1, timeout=60)
        window("reload, one job changed", begin)
        # Among the jobs that run now: the changed job's first pid is gone.
        running = [p for p in s.job_pids if os.path.exists(f"/proc/{p}")]
        victims = random.Random(1).sample(running, max(1, n // 10))
        time.sleep(0.5)
        begin = time.monotonic()
        hit = 0
        for victim in victims:
            try:
                os.kill(victim, signal.SIGKILL)
                hit += 1
            except ProcessLookupError:
                pass
        s.fifo.pids(hit, timeout=120)
        window("10 % killed, back", begin)
        time.sleep(0.5)
        begin = time.monotonic()
        s.stop(timeout=120)
        window("shutdown", begin)
        pid = s.process.pid
    finally:
        s.cleanup()
        perf.send_signal(signal.SIGINT)
        perf.wait()
    found = wakeups(trace, pid)
    print(f"{n} jobs: the longest wake-ups of pmtr's loop, CPU ms")
    print("| operation | wake-ups | longest | total CPU |")
    print("|---|---|---|---|")
    for name, begin, end in windows:
        inside = [ms for t, ms in found if begin <= t <= end + 0.05]
        longest = max(inside, default=0.0)
        print(f"| {name} | {len(inside)} | {longest:.1f} ms | {sum(inside):.0f} ms |")


if __name__ == "__main__":
    main()
