#!/usr/bin/env python3
"""Benchmark of containment and the handover (issue 14, SPEC 11.7-11.8),
release build, on tmpfs, median of --runs.

    python3 bench/handover.py [--runs 5] [--jobs 1000] [--only reexec,cgroup,clone]

Cases:
  reexec   pmtr with N running jobs: from sending `reexec` on the control
           socket until the new pmtr has answered `status` (the old one
           answers `reexec`, then execs; the status request waits in the
           listener's backlog for the new one). Checks that every pid is
           unchanged.
  cgroup   time from launching pmtr until N jobs run (each job writes its pid
           to a FIFO when it runs): with a cgroup per job (--cgroup DIR on this
           machine's cgroup v2 mount) beside process groups only
           (--cgroup off), with pmtr started in its leaf already (as
           systemd's DelegateSubgroup= starts it: no move of its own, which
           waits for an RCU grace period), and with every job's cgroup made
           before pmtr starts (as a pmtr before it leaves them), alternated,
           in one run. Also the CPU the starting process used (every thread,
           kernel included; its children once they are tasks of their own
           are not counted) until the last job ran: what a cgroup adds per
           job to pmtr, against what it adds to the bare loop.
  clone    the kernel's part (helpers/clone_latency.c): how long one start
           holds the parent — clone3 with and without a new cgroup per
           child, returning at once (fork) or once the child has exec'd
           (vfork, as pmtr starts jobs), with the cgroups made before
           the clock starts (as a second thread making them ahead of the
           starts would), and waiting for the exec from two threads side
           by side (as pmtr makes a batch) — N starts each, --runs times.
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import build_ours, threads_cpu_ms, tmpfs_dir  # noqa: E402
from engine import Fifo, build_helpers, kill_jobs, become_subreaper  # noqa: E402
from reload import config  # noqa: E402


def ask(sock_path, line):
    """One request on the control socket: its JSON lines."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(sock_path)
        s.sendall(line.encode() + b"\n")
        data = b""
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            data += chunk
    return [json.loads(x) for x in data.decode().splitlines() if x.strip()]


def pids(sock_path):
    answer = ask(sock_path, "status")
    return {j["name"]: j.get("pid") for j in answer[0]["jobs"]}


def start(binary, work, helpers, jobs, cgroup, in_leaf=False):
    """pmtr with N jobs, timed until every job ran. in_leaf: pmtr starts in
    CGROUP/supervisor already, as systemd's DelegateSubgroup= starts it;
    the move there is made before the clock starts."""
    run = os.path.join(work, f"run-{time.monotonic_ns()}")
    os.makedirs(run)
    fifo = Fifo(os.path.join(run, "ready.fifo"))
    conf = os.path.join(run, "pmtr.conf")
    with open(conf, "w") as f:
        f.write(config(helpers["ready"], jobs))
    sock = os.path.join(run, "pmtr.sock")
    env = dict(os.environ, READY_FIFO=fifo.path)
    argv = [binary, "-F", "-c", conf, "--socket", sock, "--cgroup", cgroup]
    options = dict(cwd=run, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   start_new_session=True)
    if in_leaf:
        leaf = os.path.join(cgroup, "supervisor")
        os.makedirs(leaf, exist_ok=True)
        enter = f'echo $$ > {leaf}/cgroup.procs && read go && exec "$0" "$@"'
        process = subprocess.Popen(["/bin/sh", "-c", enter] + argv, stdin=subprocess.PIPE, **options)
        while str(process.pid) not in open(os.path.join(leaf, "cgroup.procs")).read().split():
            time.sleep(0.001)
        started = time.perf_counter()
        process.stdin.write(b"go\n")
        process.stdin.close()
    else:
        started = time.perf_counter()
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, **options)
    job_pids = fifo.pids(jobs)
    elapsed = time.perf_counter() - started
    return process, sock, fifo, job_pids, elapsed


def stop(process, job_pids):
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
    kill_jobs(job_pids)


def reexec_case(binary, work, helpers, jobs, runs):
    process, sock, fifo, job_pids, _ = start(binary, work, helpers, jobs, "off")
    while not os.path.exists(sock):
        time.sleep(0.01)
    times = []
    try:
        for _ in range(runs):
            before = pids(sock)
            t0 = time.perf_counter()
            answer = ask(sock, "reexec")
            assert answer[0]["results"][0]["ok"], answer
            after = pids(sock)
            times.append((time.perf_counter() - t0) * 1000)
            assert after == before, "a pid changed across the reexec"
            assert process.poll() is None
            time.sleep(0.5)
    finally:
        stop(process, job_pids)
        fifo.close()
    print(f"reexec {jobs} jobs: request until the new pmtr answered status: "
          f"median {statistics.median(times):.1f} ms (min {min(times):.1f}, max {max(times):.1f}; {runs} runs); "
          f"every pid unchanged")
    return times


def cgroup_mount():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            if right.split()[0] == "cgroup2":
                return left.split()[4]
    return None


def floor(helpers, work, jobs, cgroups):
    """The bare fork+exec loop (helpers/floor.c), in new cgroups if given:
    milliseconds until every job ran, and the CPU milliseconds the loop
    used until then."""
    fifo = Fifo(os.path.join(work, f"floor-{time.monotonic_ns()}.fifo"))
    argv = [helpers["floor"], str(jobs), helpers["ready"]] + ([cgroups] if cgroups else [])
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=dict(os.environ, READY_FIFO=fifo.path), start_new_session=True)
    job_pids = fifo.pids(jobs)
    elapsed = (time.perf_counter() - started) * 1000
    cpu = threads_cpu_ms(process.pid)
    stop(process, job_pids)
    fifo.close()
    return elapsed, cpu


def remove_cgroups(directory):
    """Removes a benchmark's cgroups, waiting for processes killed a moment
    ago to have left them (rmdir says EBUSY until then)."""
    deadline = time.monotonic() + 10
    for entry in os.listdir(directory) + [""]:
        path = os.path.join(directory, entry) if entry else directory
        if not os.path.isdir(path):
            continue
        while True:
            try:
                os.rmdir(path)
                break
            except OSError as error:
                if error.errno != 16 or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)


def dying_cgroups(mount):
    """How many removed cgroups the kernel is still tearing down under
    `mount` (cgroup.stat: nr_dying_descendants)."""
    with open(os.path.join(mount, "cgroup.stat")) as f:
        for line in f:
            key, value = line.split()
            if key == "nr_dying_descendants":
                return int(value)
    return 0


def settle(mount, baseline):
    """Waits until the cgroups of the last case are torn down: the kernel
    does it in workers after rmdir, and they would take CPU from the next
    case."""
    deadline = time.monotonic() + 30
    while dying_cgroups(mount) > baseline and time.monotonic() < deadline:
        time.sleep(0.01)


def cgroup_case(binary, work, helpers, jobs, runs):
    mount = cgroup_mount()
    if mount is None:
        print("cgroup: SKIPPED (no cgroup v2 mount)")
        return
    baseline = dying_cgroups(mount)
    results = {"floor": [], "floor-cgroup": [], "off": [], "cgroup": [], "in-leaf": [], "made-ahead": []}
    cpu = {kind: [] for kind in results}
    for run in range(runs):
        for kind in results:
            directory = os.path.join(mount, f"pmtr-bench-{os.getpid()}-{run}-{kind}")
            if kind.startswith("floor"):
                if kind == "floor-cgroup":
                    os.makedirs(directory)
                elapsed, used = floor(helpers, work, jobs, directory if kind == "floor-cgroup" else None)
            else:
                if kind == "made-ahead":
                    # The jobs' cgroups as a previous pmtr would leave them.
                    for i in range(jobs):
                        os.makedirs(os.path.join(directory, f"job.job{i}"))
                arg = "off" if kind == "off" else directory
                in_leaf = kind == "in-leaf"
                process, _, fifo, job_pids, seconds = start(binary, work, helpers, jobs, arg, in_leaf)
                elapsed = seconds * 1000
                used = threads_cpu_ms(process.pid)
                stop(process, job_pids)
                fifo.close()
            results[kind].append(elapsed)
            cpu[kind].append(used)
            if os.path.isdir(directory):
                remove_cgroups(directory)
            settle(mount, baseline)
    median = {kind: statistics.median(times) for kind, times in results.items()}
    print(f"start {jobs} (medians of {runs}, ms): bare loop {median['floor']:.0f}, "
          f"bare loop with a new cgroup per child {median['floor-cgroup']:.0f} "
          f"({median['floor-cgroup'] / median['floor']:.2f}x); "
          f"pmtr, process groups only {median['off']:.0f}, a cgroup per job {median['cgroup']:.0f} "
          f"({median['cgroup'] / median['off']:.2f}x), started in its leaf {median['in-leaf']:.0f} "
          f"({median['in-leaf'] / median['off']:.2f}x), the jobs' cgroups made before pmtr starts "
          f"{median['made-ahead']:.0f} ({median['made-ahead'] / median['off']:.2f}x)")
    # The same run's cases follow each other within a second or two: their
    # ratio is spared the machine's slower and faster minutes.
    paired = {kind: statistics.median(t / o for t, o in zip(results[kind], results["off"]))
              for kind in ("cgroup", "in-leaf", "made-ahead")}
    print("  median of each run's ratio to process groups only: "
          + ", ".join(f"{kind} {ratio:.2f}x" for kind, ratio in paired.items()))
    # CPU a cgroup adds per job, each run's pair: pmtr's is the kernel's
    # work in its threads (mkdir, the new css_set at clone3) plus its own.
    def added_us(kind, base):
        return statistics.median((c - b) * 1000 / jobs for c, b in zip(cpu[kind], cpu[base]))
    print("  CPU of the starting process until the last job ran (medians, ms): "
          + ", ".join(f"{kind} {statistics.median(used):.1f}" for kind, used in cpu.items()))
    print(f"  CPU a cgroup adds per job (median of each run's difference): bare loop "
          f"{added_us('floor-cgroup', 'floor'):.0f} us, pmtr {added_us('cgroup', 'off'):.0f} us, "
          f"in its leaf {added_us('in-leaf', 'off'):.0f} us, made ahead {added_us('made-ahead', 'off'):.0f} us")
    for kind, times in results.items():
        print(f"  {kind}: {[round(x) for x in times]}")


def clone_case(helpers, jobs, runs):
    mount = cgroup_mount()
    if mount is None:
        print("clone: SKIPPED (no cgroup v2 mount)")
        return
    cases = [(vfork, 1, cgroups) for vfork in (False, True) for cgroups in ("none", "new", "made ahead")]
    cases += [(True, 2, cgroups) for cgroups in ("none", "new")]
    baseline = dying_cgroups(mount)
    for run in range(runs):
        for vfork, threads, cgroups in cases:
            argv = [helpers["clone_latency"], str(jobs)]
            directory = os.path.join(mount, f"pmtr-bench-{os.getpid()}-clone-{run}")
            in_cgroup = cgroups != "none"
            if in_cgroup:
                os.makedirs(directory)
                argv.append(directory)
            env = dict(os.environ)
            if vfork:
                env["VFORK"] = "1"
            if cgroups == "made ahead":
                env["PREMADE"] = "1"
            if threads == 2:
                env["THREADS"] = "2"
            out = subprocess.run(argv, env=env, check=True, capture_output=True, text=True)
            print("  " + out.stdout.strip())
            if in_cgroup:
                remove_cgroups(directory)
                settle(mount, baseline)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--only", default="reexec,cgroup,clone")
    args = parser.parse_args()
    become_subreaper()
    binary = build_ours()
    work = tmpfs_dir("pmtr-bench-handover-")
    try:
        helpers = build_helpers(work)
        cases = args.only.split(",")
        if "reexec" in cases:
            reexec_case(binary, work, helpers, args.jobs, args.runs)
        if "cgroup" in cases:
            cgroup_case(binary, work, helpers, args.jobs, args.runs)
        if "clone" in cases:
            clone_case(helpers, args.jobs, args.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
