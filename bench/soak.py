#!/usr/bin/env python3
"""Soak test of pmtr: 1 000 jobs, and for SECONDS seconds a random mix of
SIGKILLs of jobs, edits of the configuration (a job added, removed,
changed, a bad file), control requests (pmtr-ctl) and UDP datagrams
(control and junk). Then the file is put back as it began and reloaded,
and the end is checked:

- every job of the file runs exactly once (processes counted by argv), and
  no process of a removed or changed job is left;
- no zombie child of pmtr;
- pmtr's descriptor count back where it began, its RSS flat (the curve is
  printed);
- nothing logged at error level that the run did not provoke (a bad file).

It runs the debug build (what `cargo test` builds), whose log can be sent
to a socket of the soak's own (PMTR_TEST_SYSLOG) to read each line's
level. CI runs 60 s; a longer run is documented in docs/PERFORMANCE.md.

    python3 bench/soak.py [--seconds 60] [--jobs 1000] [--seed N]
"""
import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import TOP, proc_status, tmpfs_dir  # noqa: E402

PMTR = os.path.join(TOP, "target", "debug", "pmtr")
PMTR_CTL = os.path.join(TOP, "target", "debug", "pmtr-ctl")
# LOG_LOCAL0 (16) * 8 + LOG_ERR (3)
ERROR_PRIORITY = "<131>"


def job_text(name, argv):
    return f"job {{\n name {name}\n cmd {' '.join(argv)}\n}}\n"


# GNU sleep adds its arguments: the third makes each job's argv unique,
# the fourth (a fraction of a second) marks the processes of this soak run,
# the only ones it counts or kills.
MARK = f"0.{os.getpid()}"


def argv_of(n, variant=1):
    return ["/bin/sleep", f"{variant}000000", str(n), MARK]


def ours(argv):
    return len(argv) == 4 and argv[0] == "/bin/sleep" and argv[3] == MARK


class Syslog(threading.Thread):
    """Reads pmtr's log lines, with their priority, from a socket."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(path)
        self.socket.settimeout(0.5)
        self.lines = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                data = self.socket.recv(65536)
            except socket.timeout:
                continue
            self.lines.append((time.monotonic(), data.decode(errors="replace")))


def processes():
    """(pid, ppid, state, argv) of every process."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")[:-1]
        except OSError:
            continue
        found.append((int(entry), int(fields[1]), fields[0], [a.decode(errors="replace") for a in argv]))
    return found


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


class Soak:
    def __init__(self, args):
        self.rng = random.Random(args.seed)
        self.work = tmpfs_dir("pmtr-soak-")
        self.config = os.path.join(self.work, "pmtr.conf")
        self.socket_path = os.path.join(self.work, "pmtr.sock")
        self.udp_port = self.free_port()
        self.jobs = {f"j{n}": argv_of(n) for n in range(args.jobs)}
        self.initial = dict(self.jobs)
        self.next_new = args.jobs
        self.bad_windows = []  # (from, to) monotonic times a bad file was in force
        self.bad_since = None
        self.counts = {"kill": 0, "add": 0, "remove": 0, "change": 0, "bad file": 0, "control": 0, "udp": 0}

    @staticmethod
    def free_port():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def text(self):
        head = f"listen on udp://127.0.0.1:{self.udp_port}\n"
        return head + "".join(job_text(name, argv) for name, argv in self.jobs.items())

    def save(self, text):
        # Written whole and renamed over, as an editor saves.
        temporary = self.config + ".new"
        with open(temporary, "w") as f:
            f.write(text)
        os.rename(temporary, self.config)

    def ctl(self, *words, timeout=30):
        env = dict(os.environ, PMTR_SOCKET=self.socket_path)
        return subprocess.run([PMTR_CTL, *words], env=env, capture_output=True, text=True, timeout=timeout)

    def status(self):
        out = self.ctl("status", "--json")
        return json.loads(out.stdout) if out.returncode == 0 else []

    def act(self, udp):
        action = self.rng.choices(
            ["kill", "add", "remove", "change", "bad file", "control", "udp"],
            weights=[30, 8, 8, 8, 3, 20, 20])[0]
        if action != "bad file" and self.bad_since is not None:
            self.bad_windows.append((self.bad_since, time.monotonic() + 2.0))
            self.bad_since = None
        if action == "kill":
            running = [j for j in self.status() if j.get("pid")]
            if running:
                try:
                    os.kill(self.rng.choice(running)["pid"], signal.SIGKILL)
                except ProcessLookupError:
                    pass
        elif action == "add":
            name = f"j{self.next_new}"
            self.jobs[name] = argv_of(self.next_new)
            self.next_new += 1
            self.save(self.text())
        elif action == "remove" and len(self.jobs) > 1:
            del self.jobs[self.rng.choice(list(self.jobs))]
            self.save(self.text())
        elif action == "change":
            name = self.rng.choice(list(self.jobs))
            n = int(name[1:])
            self.jobs[name] = argv_of(n, 2 if self.jobs[name] == argv_of(n) else 1)
            self.save(self.text())
        elif action == "bad file":
            self.save(self.text() + "job {\n name broken\n frobnicate yes\n")
            if self.bad_since is None:
                self.bad_since = time.monotonic()
        elif action == "control":
            verb = self.rng.choice(["enable", "disable", "restart", "status"])
            name = self.rng.choice(list(self.jobs) + ["ghost"])
            self.ctl(verb, name) if verb != "status" else self.ctl("status")
        elif action == "udp":
            words = self.rng.choice([
                f"disable {self.rng.choice(list(self.jobs))}",
                f"enable {self.rng.choice(list(self.jobs))}",
                "enable " + " ".join(f"ghost{i}" for i in range(50)),
                bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(1, 300))),
            ])
            udp.sendto(words if isinstance(words, bytes) else words.encode(), ("127.0.0.1", self.udp_port))
        self.counts[action] += 1


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()
    if not os.path.exists(PMTR):
        subprocess.run(["cargo", "build", "-q", "--bins"], cwd=TOP, check=True)
    soak = Soak(args)
    log_path = os.path.join(soak.work, "log.sock")
    syslog = Syslog(log_path)
    syslog.start()
    soak.save(soak.text())
    env = dict(os.environ, PMTR_TEST_SYSLOG=log_path)
    stderr = open(os.path.join(soak.work, "stderr.log"), "w")
    pmtr = subprocess.Popen([PMTR, "-F", "-c", soak.config, "--socket", soak.socket_path],
                            env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    failures = []
    curve = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and sum(1 for j in soak.status() if j.get("pid")) < args.jobs:
            time.sleep(0.2)
        start_fds, start_rss = fd_count(pmtr.pid), proc_status(pmtr.pid, "VmRSS")
        curve.append((0, start_fds, start_rss))
        print(f"# soak: {args.jobs} jobs, {args.seconds} s, seed {args.seed}; pmtr {pmtr.pid}: {start_fds} fds, {start_rss} KiB")
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        began = time.monotonic()
        next_sample = began + 5
        while time.monotonic() - began < args.seconds:
            soak.act(udp)
            time.sleep(soak.rng.uniform(0.01, 0.1))
            if time.monotonic() >= next_sample:
                curve.append((round(time.monotonic() - began), fd_count(pmtr.pid), proc_status(pmtr.pid, "VmRSS")))
                next_sample += 5
        # Back to the beginning: the first file, every override undone.
        if soak.bad_since is not None:
            soak.bad_windows.append((soak.bad_since, time.monotonic() + 2.0))
        soak.jobs = dict(soak.initial)
        soak.save(soak.text())
        reload = soak.ctl("reload")
        if reload.returncode != 0:
            failures.append(f"the final reload failed: {reload.stderr.strip()}")
        wanted = {tuple(argv) for argv in soak.initial.values()}

        def check():
            problems = []
            seen = {}
            for pid, ppid, state, argv in processes():
                if ours(argv):
                    seen.setdefault(tuple(argv), []).append(pid)
                if ppid == pmtr.pid and state == "Z":
                    problems.append(f"zombie {pid}")
            for argv in wanted:
                if len(seen.get(argv, [])) != 1:
                    problems.append(f"{' '.join(argv)} runs {len(seen.get(argv, []))} times")
            for argv, pids in seen.items():
                if argv not in wanted:
                    problems.append(f"left behind: {' '.join(argv)} {pids}")
            return problems

        deadline = time.monotonic() + 120
        problems = check()
        while problems and time.monotonic() < deadline:
            time.sleep(0.5)
            problems = check()
        failures.extend(problems[:20])
        end_fds, end_rss = fd_count(pmtr.pid), proc_status(pmtr.pid, "VmRSS")
        curve.append(("end", end_fds, end_rss))
        if end_fds > start_fds + 8:
            failures.append(f"descriptors: {start_fds} at the start, {end_fds} at the end, with the same jobs")
        if end_rss > start_rss + 16 * 1024:
            failures.append(f"RSS: {start_rss} KiB at the start, {end_rss} KiB at the end")
        time.sleep(1.0)  # the last log lines
        errors = [(t, line) for t, line in syslog.lines if line.startswith(ERROR_PRIORITY)]
        unprovoked = [line for t, line in errors if not any(a <= t <= b for a, b in soak.bad_windows)]
        for line in unprovoked[:10]:
            failures.append(f"logged at error level, not provoked: {line}")
        print("actions: " + ", ".join(f"{k} {v}" for k, v in soak.counts.items()))
        print("curve (s, fds, RSS KiB): " + " ".join(f"{t}:{f}/{r}" for t, f, r in curve))
        print(f"log lines {len(syslog.lines)}, at error level {len(errors)} (all during a bad file: {not unprovoked})")
    finally:
        pmtr.send_signal(signal.SIGTERM)
        try:
            pmtr.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pmtr.kill()
            failures.append("pmtr did not exit within 60 s of SIGTERM")
        syslog.stop.set()
    leftovers = [pid for pid, _, _, argv in processes() if ours(argv)]
    if leftovers:
        failures.append(f"processes left after pmtr exited: {leftovers[:10]}")
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if failures:
        print("SOAK FAILED:")
        for failure in failures:
            print("  " + failure)
        print(f"  pmtr's configuration and stderr are kept in {soak.work}")
        sys.exit(1)
    shutil.rmtree(soak.work, ignore_errors=True)
    print("soak passed")


if __name__ == "__main__":
    main()
