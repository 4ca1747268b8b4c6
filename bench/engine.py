#!/usr/bin/env python3
"""Benchmark of the supervision engine: pmtr beside the original C pmtr and
s6 (and, for starts, the floor: a bare fork+exec loop), in one run, on
tmpfs, median of 3.

Every job is `helpers/ready`: as cheap as `sleep`, but it writes its pid to
a FIFO when it runs, so the benchmark learns each start the moment it
happens, without polling.

    python3 bench/engine.py [--runs 3] [--only start,pss,idle,restart,storm,shutdown]
                            [--before PMTR]    # an earlier pmtr binary, side by side

Cases:
  start N      time from launching the supervisor until N jobs run (N = 100, 1000)
  pss N        PSS of the supervisor (s6: svscan + every s6-supervise) with N jobs
  idle         CPU time and voluntary context switches over 20 s with 100 jobs
  restart      from SIGKILL of a job that ran >= 10 s until its new instance runs
  storm        500 jobs that ran >= 10 s killed at once, until all 500 are back
  shutdown     SIGTERM with 100 jobs until the supervisor exited and no job is left;
               again with one job that ignores SIGTERM
"""
import argparse
import ctypes
import os
import shutil
import select
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import SETTLE, build_ours, build_original, proc_status, proc_ticks, tmpfs_dir  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper():
    """Jobs a supervisor leaves behind are re-parented to us, so we can
    tell when they are really gone (and reap them)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def kill_jobs(pids):
    """SIGKILL to each pid and its process group (the jobs a benchmark
    started lead their own), then reap what that left to us."""
    for pid in pids:
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    reap()


def stop_supervisor(process, pids, timeout=30):
    """SIGTERM to the supervisor's session (it leads it), SIGKILL if it
    does not exit within `timeout`, then every job pid it reported."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
    kill_jobs(pids)


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def build_helpers(work):
    out = {}
    for name, src, flags in (
        ("ready", "ready.c", []),
        ("ready-stubborn", "ready.c", ["-DSTUBBORN"]),
        ("floor", "floor.c", []),
        ("clone_latency", "clone_latency.c", ["-pthread"]),
    ):
        path = os.path.join(work, name)
        subprocess.run(["cc", "-O2", *flags, "-o", path, os.path.join(HERE, "helpers", src)], check=True)
        out[name] = path
    return out


class Fifo:
    """The FIFO the jobs report on; held open for reading and writing so
    that it never reads end-of-file."""

    def __init__(self, path):
        os.mkfifo(path)
        self.path = path
        self.fd = os.open(path, os.O_RDWR)
        self.buffer = b""

    def pids(self, count, timeout=120.0):
        """Blocks until `count` more pids have been reported."""
        got = []
        deadline = time.perf_counter() + timeout
        while len(got) < count:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{len(got)} of {count} jobs reported")
            while len(self.buffer) < 4:
                left = deadline - time.perf_counter()
                if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                    raise TimeoutError(f"{len(got)} of {count} jobs reported")
                self.buffer += os.read(self.fd, 65536)
            usable = len(self.buffer) // 4 * 4
            chunk, self.buffer = self.buffer[:usable], self.buffer[usable:]
            got.extend(int.from_bytes(chunk[i:i + 4], "little") for i in range(0, usable, 4))
        self.buffer = b"".join(p.to_bytes(4, "little") for p in got[count:]) + self.buffer
        return got[:count]

    def close(self):
        os.close(self.fd)


class Subject:
    """One supervisor (or the floor) with N jobs, in a scratch directory."""

    def __init__(self, kind, programs, helpers, work, jobs, stubborn=0):
        self.kind = kind
        self.dir = os.path.join(work, f"{kind}-{time.monotonic_ns()}")
        os.makedirs(self.dir)
        self.fifo = Fifo(os.path.join(self.dir, "ready.fifo"))
        self.jobs = jobs
        env = dict(os.environ, READY_FIFO=self.fifo.path)
        ready = helpers["ready"]
        stubborn_ready = helpers["ready-stubborn"]
        if kind in ("pmtr", "before", "original"):
            conf = os.path.join(self.dir, "pmtr.conf")
            with open(conf, "w") as f:
                for i in range(jobs):
                    cmd = stubborn_ready if i < stubborn else ready
                    f.write(f"job {{\n  name job{i}\n  cmd {cmd}\n}}\n")
            argv = [programs[kind], "-F", "-c", conf]
            if kind != "original":
                argv += ["--socket", os.path.join(self.dir, "pmtr.sock")]
        elif kind == "s6":
            scan = os.path.join(self.dir, "scan")
            os.makedirs(scan)
            for i in range(jobs):
                service = os.path.join(scan, f"job{i}")
                os.makedirs(service)
                os.symlink(stubborn_ready if i < stubborn else ready, os.path.join(service, "run"))
            # -c: room for more services than s6-svscan's default of 1000.
            argv = ["s6-svscan", "-c", str(jobs + 100), scan]
        elif kind == "floor":
            argv = [helpers["floor"], str(jobs), ready]
        else:
            raise ValueError(kind)
        self.started_at = time.perf_counter()
        self.process = subprocess.Popen(
            argv, cwd=self.dir, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        self.job_pids = []

    def wait_started(self):
        self.job_pids = self.fifo.pids(self.jobs)
        return time.perf_counter() - self.started_at

    def tree(self):
        """The supervising processes: the supervisor, plus for s6 every
        s6-supervise, and for the original its logger and dependency
        monitor (`pmtr-log`, `pmtr-dep`)."""
        pids = [self.process.pid]
        with open(f"/proc/{self.process.pid}/task/{self.process.pid}/children") as f:
            children = [int(p) for p in f.read().split()]
        for child in children:
            try:
                with open(f"/proc/{child}/comm") as f:
                    comm = f.read().strip()
            except FileNotFoundError:
                continue
            if comm in ("s6-supervise", "pmtr-log", "pmtr-dep"):
                pids.append(child)
        return pids

    def pss_kib(self):
        total = 0
        for pid in self.tree():
            try:
                with open(f"/proc/{pid}/smaps_rollup") as f:
                    for line in f:
                        if line.startswith("Pss:"):
                            total += int(line.split()[1])
            except (FileNotFoundError, ProcessLookupError):
                pass  # a helper process that just ended
        return total

    def cpu_and_switches(self):
        tree = self.tree()
        return sum(proc_ticks(p) for p in tree), sum(proc_status(p, "voluntary_ctxt_switches") for p in tree)

    def stop(self, timeout=15.0):
        """SIGTERM; seconds until the supervisor exited and every job is
        gone, and how many jobs were left behind at the timeout."""
        asked = time.perf_counter()
        try:
            os.kill(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = asked + timeout
        while time.perf_counter() < deadline:
            reap()
            exited = self.process.poll() is not None
            left = [p for p in self.job_pids if alive(p)]
            if exited and not left:
                return time.perf_counter() - asked, 0
            time.sleep(0.0005)
        left = [p for p in self.job_pids if alive(p)]
        return None, len(left)

    def cleanup(self):
        kill_jobs([self.process.pid] + self.job_pids)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        reap()
        self.fifo.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ms(seconds):
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def run_case(kinds, runs, body):
    results = {}
    for kind in kinds:
        samples = []
        for _ in range(runs):
            samples.append(body(kind))
        results[kind] = samples
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="start,pss,idle,restart,storm,shutdown")
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--ours")
    parser.add_argument("--original")
    parser.add_argument("--before", help="an earlier pmtr binary, measured beside this one")
    args = parser.parse_args()
    only = set(args.only.split(","))
    # A SIGTERM (timeout, Ctrl-C) unwinds through the `finally` clauses, so
    # no supervisor or job of a subject is left running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    become_subreaper()
    programs = {"pmtr": args.ours or build_ours(), "original": args.original or build_original()}
    have_s6 = shutil.which("s6-svscan") is not None
    if args.before:
        programs["before"] = args.before
    supervisors = ["pmtr"] + (["before"] if args.before else []) + ["original"] + (["s6"] if have_s6 else [])
    work = tmpfs_dir("pmtr-bench-engine-")
    helpers = build_helpers(work)

    def subject(kind, jobs, stubborn=0):
        return Subject(kind, programs, helpers, work, jobs, stubborn)

    print(f"# engine benchmark, median of {args.runs}, on {work}")
    print(f"# pmtr: {programs['pmtr']}\n# before: {args.before}\n# original: {programs['original']}\n# s6: {shutil.which('s6-svscan')}")

    if "start" in only:
        for n in (100, 1000):
            def start(kind):
                s = subject(kind, n)
                try:
                    return s.wait_started()
                finally:
                    if kind != "floor":  # the floor's jobs do not stop with it
                        s.stop()
                    s.cleanup()
            results = run_case(["floor"] + supervisors, args.runs, start)
            floor = median(results["floor"])
            print(f"\nstart {n} jobs")
            for kind, samples in results.items():
                m = median(samples)
                print(f"  {kind:<9} {ms(m):>10}   x{m / floor:.2f} of the floor   samples {[round(s * 1000, 1) for s in samples]}")

    if "pss" in only:
        print("\nPSS with 1 and 1000 jobs (s6: svscan + every supervise)")
        for n in (1, 1000):
            def pss(kind):
                s = subject(kind, n)
                try:
                    s.wait_started()
                    time.sleep(SETTLE)
                    return s.pss_kib()
                finally:
                    s.stop()
                    s.cleanup()
            for kind, samples in run_case(supervisors, args.runs, pss).items():
                print(f"  {n:>4} jobs  {kind:<9} {median(samples):>8.0f} KiB")

    if "idle" in only:
        print(f"\nidle {args.idle_seconds:.0f} s with 100 jobs: CPU ticks and voluntary context switches")
        def idle(kind):
            s = subject(kind, 100)
            try:
                s.wait_started()
                time.sleep(SETTLE)
                ticks0, switches0 = s.cpu_and_switches()
                time.sleep(args.idle_seconds)
                ticks1, switches1 = s.cpu_and_switches()
                return ticks1 - ticks0, switches1 - switches0
            finally:
                s.stop()
                s.cleanup()
        for kind, samples in run_case(supervisors, args.runs, idle).items():
            ticks = median([t for t, _ in samples])
            switches = median([w for _, w in samples])
            millis = ticks * 1000 / os.sysconf("SC_CLK_TCK")
            print(f"  {kind:<9} cpu {ticks:.0f} ticks ({millis:.0f} ms)   wakeups {switches:.0f}   samples {samples}")

    if "restart" in only:
        print("\nrestart latency after SIGKILL of a job that ran >= 10 s")
        def restart(kind):
            s = subject(kind, 1)
            try:
                s.wait_started()
                samples = []
                for _ in range(args.runs):
                    time.sleep(10.3)
                    victim = s.job_pids[-1]
                    killed = time.perf_counter()
                    os.kill(victim, signal.SIGKILL)
                    new = s.fifo.pids(1)
                    samples.append(time.perf_counter() - killed)
                    s.job_pids += new
                return samples
            finally:
                s.stop()
                s.cleanup()
        for kind in supervisors:
            samples = restart(kind)
            print(f"  {kind:<9} {ms(median(samples)):>10}   samples {[round(x * 1000, 2) for x in samples]}")

    if "storm" in only:
        print("\nstorm: 500 jobs that ran >= 10 s killed at once, until all are back")
        def storm(kind):
            s = subject(kind, 500)
            try:
                s.wait_started()
                time.sleep(10.3)
                killed = time.perf_counter()
                for pid in s.job_pids:
                    os.kill(pid, signal.SIGKILL)
                new = s.fifo.pids(500)
                took = time.perf_counter() - killed
                s.job_pids += new
                return took
            finally:
                s.stop()
                s.cleanup()
        results = run_case(supervisors, args.runs, storm)
        for kind, samples in results.items():
            print(f"  {kind:<9} {ms(median(samples)):>10}   samples {[round(x * 1000, 1) for x in samples]}")

    if "shutdown" in only:
        for stubborn in (0, 1):
            label = "with one job ignoring SIGTERM" if stubborn else ""
            print(f"\nshutdown of 100 jobs {label}: until the supervisor exited and no job is left")
            def shutdown(kind):
                s = subject(kind, 100, stubborn)
                try:
                    s.wait_started()
                    time.sleep(0.5)
                    return s.stop(timeout=15.0)
                finally:
                    s.cleanup()
            for kind, samples in run_case(supervisors, args.runs, shutdown).items():
                times = [t for t, _ in samples]
                left = max(l for _, l in samples)
                note = f"   LEFT {left} job(s) running after 15 s" if left else ""
                print(f"  {kind:<9} {ms(median(times)):>10}{note}   samples {[None if t is None else round(t * 1000, 1) for t in times]}")

    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
