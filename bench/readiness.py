#!/usr/bin/env python3
"""Benchmark of readiness and health (SPEC 11.3, 11.4), side by side in one
run, on tmpfs, median of 3.

    python3 bench/readiness.py [--runs 3] [--only chain,flood,health] [--jobs 1000]
                               [--idle-seconds 60]

Cases:
  chain    N jobs, each `after` the one before: time until the last one is
           ready, with `ready notify` (each job sends READY=1 by sd_notify)
           beside the same chain without readiness (ready once started),
           N independent jobs, and the floor: a C loop that forks and execs
           each job and waits for its READY=1 before the next
  flood    N jobs started while another job floods pmtr's notify socket with
           10 000 datagrams a second, beside the same start without it
  health   100 jobs with `health tcp PORT` every 30 s, against a listener of
           this script: pmtr's CPU time and wake-ups (voluntary context
           switches) over 60 s, beside the same 100 jobs without checks

Every job is `helpers/notify` (or `helpers/ready`): it reports its pid on a
FIFO the moment it runs (after READY=1 for `notify`), so the benchmark
learns each start without polling.
"""
import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import build_ours, proc_status, proc_ticks, tmpfs_dir  # noqa: E402
from engine import Fifo, become_subreaper, kill_jobs, median, ms, reap  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def build_helpers(work):
    out = {}
    for name, src in (("notify", "notify.c"), ("ready", "ready.c"), ("chain-floor", "chain-floor.c")):
        path = os.path.join(work, name)
        subprocess.run(["cc", "-O2", "-o", path, os.path.join(HERE, "helpers", src)], check=True)
        out[name] = path
    return out


class Pmtr:
    """pmtr with a configuration, in a scratch directory of its own (or,
    with `argv`, another program in pmtr's place)."""

    def __init__(self, pmtr, work, text, argv=None, stdout=None):
        self.dir = os.path.join(work, f"pmtr-{time.monotonic_ns()}")
        os.makedirs(self.dir)
        self.fifo = Fifo(os.path.join(self.dir, "ready.fifo"))
        conf = os.path.join(self.dir, "pmtr.conf")
        with open(conf, "w") as f:
            f.write(text)
        env = dict(os.environ, READY_FIFO=self.fifo.path)
        env.pop("NOTIFY_SOCKET", None)
        self.started_at = time.perf_counter()
        argv = argv or [pmtr, "-F", "-c", conf, "--socket", os.path.join(self.dir, "pmtr.sock")]
        self.process = subprocess.Popen(
            argv,
            cwd=self.dir, env=env, stdin=subprocess.DEVNULL,
            stdout=stdout or subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        self.job_pids = []

    def wait_reported(self, count):
        """Seconds from pmtr's launch until `count` jobs reported."""
        self.job_pids += self.fifo.pids(count)
        return time.perf_counter() - self.started_at

    def cpu_and_switches(self):
        pid = self.process.pid
        return proc_ticks(pid), proc_status(pid, "voluntary_ctxt_switches")

    def close(self):
        try:
            os.kill(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        kill_jobs([self.process.pid] + self.job_pids)
        reap()
        self.fifo.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def jobs_text(count, cmd, options=lambda i: "", first=""):
    parts = [first]
    for i in range(count):
        parts.append(f"job {{\n name job{i}\n cmd {cmd}\n{options(i)}}}\n")
    return "".join(parts)


def measure(runs, body):
    samples = [body() for _ in range(runs)]
    return median(samples), samples


def start_time(pmtr, work, text, count, runs, argv=None):
    """Median seconds (and samples) from launch until `count` jobs run."""
    def once():
        p = Pmtr(pmtr, work, text, argv)
        try:
            return p.wait_reported(count)
        finally:
            p.close()
    return measure(runs, once)


def chain(pmtr, work, helpers, runs, jobs):
    notify = f"{helpers['notify']} ready"
    ready = helpers["ready"]
    after = lambda i: f" after job{i - 1}\n" if i else ""  # noqa: E731
    cases = {
        "chain, ready notify": jobs_text(jobs, notify, lambda i: after(i) + " ready notify\n"),
        "chain, no readiness": jobs_text(jobs, ready, after),
        "independent jobs": jobs_text(jobs, ready),
    }
    print(f"\n{jobs} jobs: from pmtr's launch until the last is ready")
    results = {}
    floor_argv = [helpers["chain-floor"], str(jobs), helpers["notify"]]
    cases["floor: fork, exec, READY=1, in a row"] = ""
    for name, text in cases.items():
        results[name] = start_time(pmtr, work, text, jobs, runs, None if text else floor_argv)
    base = results["chain, no readiness"][0]
    for name, (m, samples) in results.items():
        print(f"  {name:<22} {ms(m):>10}   x{m / base:.2f} of the chain without readiness   samples {[round(s * 1000, 1) for s in samples]}")


def flood(pmtr, work, helpers, runs, jobs):
    ready = helpers["ready"]
    flooder = f"job {{\n name flood\n cmd {helpers['notify']} flood 10000\n ready notify\n order -1\n}}\n"
    cases = {
        "quiet": (jobs_text(jobs, ready), jobs),
        "one job floods": (jobs_text(jobs, ready, first=flooder), jobs + 1),
    }
    print(f"\n{jobs} jobs started, with and without a job sending 10 000 sd_notify datagrams/s")
    results = {}
    for name, (text, count) in cases.items():
        results[name] = start_time(pmtr, work, text, count, runs)
    base = results["quiet"][0]
    for name, (m, samples) in results.items():
        print(f"  {name:<16} {ms(m):>10}   x{m / base:.2f}   samples {[round(s * 1000, 1) for s in samples]}")


class Listener:
    """A TCP listener that accepts and closes, counting connections."""

    def __init__(self):
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(1024)
        self.port = self.socket.getsockname()[1]
        self.count = 0
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.count += 1
            connection.close()


def health(pmtr, work, helpers, idle_seconds):
    listener = Listener()
    ready = helpers["ready"]
    checked = lambda i: f" health tcp {listener.port}\n health every 30s\n"  # noqa: E731
    cases = {
        "no checks": jobs_text(100, ready),
        "health tcp every 30s": jobs_text(100, ready, checked),
    }
    print(f"\nidle {idle_seconds:.0f} s with 100 jobs: pmtr's CPU ticks and wake-ups (voluntary context switches)")
    for name, text in cases.items():
        p = Pmtr(pmtr, work, text)
        try:
            p.wait_reported(100)
            time.sleep(1.0)  # the start settles
            connections = listener.count
            ticks, switches = p.cpu_and_switches()
            time.sleep(idle_seconds)
            ticks2, switches2 = p.cpu_and_switches()
            checks = listener.count - connections
            millis = (ticks2 - ticks) * 1000 / os.sysconf("SC_CLK_TCK")
            print(f"  {name:<22} cpu {ticks2 - ticks} ticks ({millis:.0f} ms)   wake-ups {switches2 - switches}   checks {checks}")
        finally:
            p.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--only", default="chain,flood,health")
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--ours")
    args = parser.parse_args()
    only = set(args.only.split(","))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    become_subreaper()
    pmtr = args.ours or build_ours()
    work = tmpfs_dir("pmtr-bench-readiness-")
    helpers = build_helpers(work)
    print(f"# readiness benchmark, median of {args.runs}, on {work}\n# pmtr: {pmtr}")
    try:
        if "chain" in only:
            chain(pmtr, work, helpers, args.runs, args.jobs)
        if "flood" in only:
            flood(pmtr, work, helpers, args.runs, args.jobs)
        if "health" in only:
            health(pmtr, work, helpers, args.idle_seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
