#!/usr/bin/env python3
"""Where pmtr's fixed memory goes: PSS of pmtr with one job, per mapping,
with its code laid out in the order of pmtr/code-order.txt and without
(docs/PERFORMANCE.md, "Fixed memory").

    python3 bench/memory.py [--runs 3]

Builds the release pmtr as shipped, and again with PMTR_CODE_ORDER=off
into target/memory-unordered. Each run starts pmtr (`-F`, `--cgroup off`)
with one job `/bin/sleep`, measures PSS once pmtr is idle (2.5 s after
the job runs: pmtr gives memory back a second after start-up), then
right after `pmtr-ctl status`, `status --json`, a restart and a saved
change have each been served, then idle again. The original's three processes
are measured beside it, idle.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

from common import SETTLE, TOP, argv_has, build_original, build_ours, child_runs, wait_for
from engine import median

UNORDERED_DIR = os.path.join(TOP, "target", "memory-unordered")


def build_unordered():
    env = dict(os.environ, PMTR_CODE_ORDER="off")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "pmtr", "--bins", "--target-dir", UNORDERED_DIR],
                   cwd=TOP, env=env, check=True)
    return os.path.join(UNORDERED_DIR, "release", "pmtr")


def mappings(pid, binary):
    """PSS in KiB of one process, by the kind of mapping."""
    kinds = {}
    kind = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5 and ":" not in fields[0]:
                path = fields[5] if len(fields) > 5 else ""
                perms = fields[1]
                if path == binary:
                    kind = "code" if "x" in perms else "data"
                elif "libc.so" in path:
                    kind = "libc"
                elif "ld-linux" in path:
                    kind = "ld.so"
                elif "libgcc_s" in path:
                    kind = "libgcc_s"
                elif path.endswith(".so") or ".so." in path:
                    kind = "other libs"
                else:
                    kind = "anonymous"
            elif fields[0] == "Pss:":
                kinds[kind] = kinds.get(kind, 0) + int(fields[1])
    return kinds


class Pmtr:
    def __init__(self, pmtr, work):
        self.work = work
        self.ctl_path = os.path.join(os.path.dirname(pmtr), "pmtr-ctl")
        self.socket = os.path.join(work, "sock")
        self.config = os.path.join(work, "pmtr.conf")
        self.write_config("86400")
        self.process = subprocess.Popen([pmtr, "-F", "-c", self.config, "--socket", self.socket, "--cgroup", "off"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.binary = os.path.realpath(pmtr)

    def write_config(self, seconds):
        with open(self.config, "w") as f:
            f.write(f"job {{\n  name one\n  cmd /bin/sleep {seconds}.{os.getpid()}\n}}\n")

    def ctl(self, *args):
        return subprocess.run([self.ctl_path, "--socket", self.socket, *args],
                              capture_output=True, text=True, timeout=60).stdout

    def job(self):
        try:
            return json.loads(self.ctl("status", "--json"))[0]
        except (ValueError, IndexError):
            return {}

    def runs(self, word):
        return argv_has(self.job().get("pid"), word)

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)


def measure(pmtr):
    """(idle, after work, idle again) mappings of one pmtr with one job."""
    work = tempfile.mkdtemp(prefix="pmtr-memory-")
    p = Pmtr(pmtr, work)
    try:
        wait_for(lambda: child_runs(p.process.pid, "86400"), "the job running")
        time.sleep(SETTLE)
        idle = mappings(p.process.pid, p.binary)
        p.ctl("status")
        restarts = p.job()["restarts"]
        p.ctl("restart", "one")
        wait_for(lambda: p.job().get("restarts") == restarts + 1 and p.runs("86400"), "the restart")
        p.write_config("86401")
        wait_for(lambda: p.runs("86401"), "the saved change")
        busy = mappings(p.process.pid, p.binary)
        time.sleep(SETTLE)
        return idle, busy, mappings(p.process.pid, p.binary)
    finally:
        p.stop()
        shutil.rmtree(work, ignore_errors=True)


def original_idle(program):
    work = tempfile.mkdtemp(prefix="pmtr-memory-original-")
    config = os.path.join(work, "pmtr.conf")
    with open(config, "w") as f:
        f.write(f"job {{\n  name one\n  cmd /bin/sleep 86400.{os.getpid()}\n}}\n")
    process = subprocess.Popen([program, "-F", "-c", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def helpers():
            with open(f"/proc/{process.pid}/task/{process.pid}/children") as f:
                children = [int(c) for c in f.read().split()]
            comms = {c: open(f"/proc/{c}/comm").read().strip() for c in children}
            others = [c for c, comm in comms.items() if comm != "sleep"]
            return others if len(others) == 2 and len(children) == 3 else None
        pids = [process.pid] + wait_for(helpers, "the original's job and helpers")
        time.sleep(1.0)
        return sum(sum(mappings(pid, "").values()) for pid in pids)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    builds = {"ordered": build_ours(), "unordered": build_unordered()}
    kinds = ["code", "data", "libc", "ld.so", "libgcc_s", "other libs", "anonymous"]
    print(f"PSS in KiB of pmtr with one job, median of {args.runs} runs: "
          "idle / after status, restart, reload / idle again")
    print(f"  {'mapping':<12}" + "".join(f"{name:>24}" for name in builds))
    results = {name: [measure(binary) for _ in range(args.runs)] for name, binary in builds.items()}
    for kind in kinds + ["total"]:
        row = f"  {kind:<12}"
        for name in builds:
            def value(m):
                return sum(m.values()) if kind == "total" else m.get(kind, 0)
            row += "      " + " / ".join(f"{median([value(run[i]) for run in results[name]]):>4}" for i in range(3))
        print(row)
    try:
        original = build_original()
    except (subprocess.CalledProcessError, OSError) as e:
        print(f"  the original: not built ({e})")
        return
    print(f"  the original, idle (main, logger, dependency monitor): {median([original_idle(original) for _ in range(args.runs)])} KiB")


if __name__ == "__main__":
    main()
