#!/usr/bin/env python3
"""Benchmark of local control: `pmtr-ctl status --json` with 1000 jobs (the
whole command, and the bare socket round trip), and the idle cost of an
open `logs --follow` client.

    python3 bench/control.py [--runs 21] [--jobs 1000] [--idle-seconds 10]
"""
import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import TOP, build_ours, proc_status, tmpfs_dir  # noqa: E402
from engine import Fifo, become_subreaper, build_helpers, kill_jobs  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    become_subreaper()
    pmtr = build_ours()
    ctl = os.path.join(TOP, "target", "release", "pmtr-ctl")
    work = tmpfs_dir("pmtr-bench-control-")
    helpers = build_helpers(work)
    fifo = Fifo(os.path.join(work, "ready.fifo"))
    conf = os.path.join(work, "pmtr.conf")
    sock = os.path.join(work, "pmtr.sock")
    with open(conf, "w") as f:
        for i in range(args.jobs):
            f.write(f"job {{\n  name job{i}\n  cmd {helpers['ready']}\n}}\n")
    env = dict(os.environ, READY_FIFO=fifo.path, PMTR_SOCKET=sock)
    process = subprocess.Popen([pmtr, "-F", "-c", conf], env=env, stderr=subprocess.DEVNULL, start_new_session=True)
    pids = []
    try:
        pids = fifo.pids(args.jobs)
        time.sleep(1.0)
        whole = []
        for _ in range(args.runs):
            started = time.perf_counter()
            out = subprocess.run([ctl, "status", "--json"], env=env, capture_output=True, check=True)
            whole.append(time.perf_counter() - started)
        size = len(out.stdout)
        bare = []
        for _ in range(args.runs):
            started = time.perf_counter()
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(sock)
                s.sendall(b"status\n")
                while s.recv(1 << 16):
                    pass
            bare.append(time.perf_counter() - started)
        print(f"# local control, {args.jobs} jobs, median of {args.runs}, on {work}")
        print(f"pmtr-ctl status --json (the whole command): {statistics.median(whole) * 1000:.2f} ms ({size} bytes of JSON)")
        print(f"socket round trip of `status`:               {statistics.median(bare) * 1000:.2f} ms")

        follower = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        follower.connect(sock)
        follower.sendall(b"logs job0 10 follow\n")
        time.sleep(0.5)
        before = proc_status(process.pid, "voluntary_ctxt_switches")
        time.sleep(args.idle_seconds)
        after = proc_status(process.pid, "voluntary_ctxt_switches")
        follower.close()
        print(f"idle {args.idle_seconds:.0f} s with a follow client open: {after - before} wake-ups of pmtr")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
        kill_jobs(pids)


if __name__ == "__main__":
    main()
