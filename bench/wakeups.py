#!/usr/bin/env python3
"""The most CPU pmtr's loop spends in one turn, by operation, with N jobs
(issue 16: none above 50 ms at 10 000 jobs, so that a control request is
never kept waiting long by other work).

    python3 bench/wakeups.py [--jobs 10000] [--ours PMTR]

`perf record` (Debian's linux-perf) traces pmtr's `epoll_wait` calls and
every context switch while pmtr starts N jobs (`helpers/ready`), answers
`pmtr-ctl status --json`, reloads its file with one job changed (written in
place), brings back 10 % of its jobs killed at once, and shuts down. A turn
of the loop runs from one `epoll_wait`'s return to the next call: it is
the longest a new request waits before pmtr looks. Its CPU is that time
less the time pmtr was switched out (waiting for a child's `execve`,
preempted). Timestamps are CLOCK_MONOTONIC, so each turn is given to the
operation whose window holds it.
"""
import argparse
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import build_ours, tmpfs_dir  # noqa: E402
from engine import Subject, become_subreaper, build_helpers  # noqa: E402
from scale import rewrite, storm  # noqa: E402


def turns(trace, pid):
    """(end time, CPU ms, wall ms) of each turn of thread `pid`'s loop."""
    out = subprocess.run(
        ["perf", "script", "-i", trace, "-F", "tid,time,event,trace"],
        check=True, capture_output=True, text=True,
    ).stdout
    result = []
    began = None  # the last epoll_wait return
    off = 0.0  # time switched out since
    out_at = None
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        tid, at, event = int(fields[0]), float(fields[1].rstrip(":")), fields[2]
        if event == "sched:sched_switch:":
            if f"prev_pid={pid} " in line:
                out_at = at
            elif f"next_pid={pid} " in line and out_at is not None:
                off += at - out_at
                out_at = None
            continue
        if tid != pid:
            continue
        if event == "syscalls:sys_exit_epoll_wait:":
            began, off = at, 0.0
        elif event == "syscalls:sys_enter_epoll_wait:" and began is not None:
            wall = at - began
            result.append((at, (wall - off) * 1000, wall * 1000))
            began = None
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--ours")
    parser.add_argument("--detail", action="store_true", help="list each operation's 3 longest turns")
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
        ["perf", "record", "-a", "-m", "4096", "-k", "CLOCK_MONOTONIC", "-o", trace,
         "-e", "syscalls:sys_enter_epoll_wait", "-e", "syscalls:sys_exit_epoll_wait",
         "-e", "sched:sched_switch"],
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
        begin = time.monotonic()
        rewrite(s, helpers["ready"], n // 2)
        s.job_pids += s.fifo.pids(1, timeout=60)
        window("reload, one job changed", begin)
        time.sleep(0.5)
        begin = time.monotonic()
        storm(s, 1)
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
    found = turns(trace, pid)
    # Lost events (perf's buffers overflowed) hide switches out: a turn
    # then looks longer on CPU than it was.
    stats = subprocess.run(["perf", "report", "-i", trace, "--stats"],
                           capture_output=True, text=True).stdout
    lost = [line.strip() for line in stats.splitlines() if "LOST" in line and not line.strip().endswith(" 0")]
    if lost:
        print("perf lost events, figures may be high: " + "; ".join(lost))
    print(f"{n} jobs: the longest turns of pmtr's loop (one epoll_wait to the next)")
    print("| operation | turns | longest, CPU | longest, wall | total CPU |")
    print("|---|---|---|---|---|")
    for name, begin, end in windows:
        inside = [(cpu, wall) for t, cpu, wall in found if begin <= t <= end + 0.05]
        longest = max((cpu for cpu, _ in inside), default=0.0)
        longest_wall = max((wall for _, wall in inside), default=0.0)
        total = sum(cpu for cpu, _ in inside)
        print(f"| {name} | {len(inside)} | {longest:.1f} ms | {longest_wall:.1f} ms | {total:.0f} ms |")
        if args.detail:
            top = sorted(((cpu, wall, t - begin) for t, cpu, wall in found if begin <= t <= end + 0.05), reverse=True)[:3]
            for cpu, wall, at in top:
                print(f"    {cpu:.1f} ms CPU, {wall:.1f} ms wall, ending {at * 1000:.0f} ms in")


if __name__ == "__main__":
    main()
