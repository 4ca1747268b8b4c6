#!/usr/bin/env python3
"""Benchmark of a configuration that spans files (SPEC 11.10): 10 000 jobs
as 1 000 included files of 10 jobs each, beside one file of the same
10 000 jobs, in one run, on tmpfs.

    python3 bench/include.py [--runs 5] [--files 1000] [--per-file 10]

  pmtr -t    wall time (median) and peak RSS (ru_maxrss) of `pmtr -t`
  reload     a running pmtr; one job's definition changed in its file (the
             included file, or the one big file), saved by rename: time from
             the save to that job's new pid (median), and pmtr's peak RSS
             (VmHWM) at the end

All jobs but the one changed are `disable`d, so that the figures are the
configuration's path (read, parse, diff) and not 10 000 forks, which
bench/engine.py measures.
"""
import argparse
import os
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check import measure  # noqa: E402
from common import build_ours, tmpfs_dir  # noqa: E402
from engine import Fifo, become_subreaper, build_helpers, stop_supervisor  # noqa: E402


def job(i, ready, probe, changed):
    if i != probe:
        return f"job {{\n  name job{i}\n  cmd /bin/sleep {1000 + i}\n  dir /tmp\n  env MODE=bench\n  disable\n}}\n"
    extra = "  env CHANGED=1\n" if changed else ""
    return f"job {{\n  name job{i}\n  cmd {ready}\n  dir /tmp\n{extra}}}\n"


def layout(d, kind, files, per_file, ready, changed):
    """Writes the configuration; returns (main file, file holding the probe
    job). With `changed`, only the holder's new text is written, to
    HOLDER.tmp, for the caller to rename over it (the save)."""
    total = files * per_file
    probe = total // 2
    main = os.path.join(d, "pmtr.conf")
    save = prepare if changed else write
    if kind == "one file":
        save(main, "".join(job(i, ready, probe, changed) for i in range(total)))
        return main, main
    os.makedirs(os.path.join(d, "pmtr.d"), exist_ok=True)
    write(main, "include pmtr.d/*.conf\n")
    holder = None
    for f in range(files):
        path = os.path.join(d, "pmtr.d", f"f{f:05}.conf")
        jobs = range(f * per_file, (f + 1) * per_file)
        if probe in jobs:
            holder = path
        if changed and probe not in jobs:
            continue
        save(path, "".join(job(i, ready, probe, changed) for i in jobs))
    return main, holder


def prepare(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)


def write(path, text):
    """Written to a temporary file and renamed over: how a save lands."""
    prepare(path, text)
    os.rename(path + ".tmp", path)


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def reload_run(binary, work, kind, files, per_file, ready):
    d = os.path.join(work, f"run-{time.monotonic_ns()}")
    os.makedirs(d)
    fifo = Fifo(os.path.join(d, "ready.fifo"))
    main, _ = layout(d, kind, files, per_file, ready, changed=False)
    process = subprocess.Popen(
        [binary, "-F", "-c", main, "--socket", os.path.join(d, "pmtr.sock")],
        cwd=d, env=dict(os.environ, READY_FIFO=fifo.path),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    pids = []
    try:
        pids = fifo.pids(1, timeout=60.0)
        # Past the burst rule of the first read, and settled.
        time.sleep(1.0)
        _, holder = layout(d, kind, files, per_file, ready, changed=True)
        saved = time.perf_counter()
        os.rename(holder + ".tmp", holder)
        new = fifo.pids(1, timeout=30.0)
        took = time.perf_counter() - saved
        pids += new
        return took, vm_hwm_kib(process.pid)
    finally:
        stop_supervisor(process, pids, timeout=30)
        fifo.close()
        subprocess.run(["rm", "-rf", d], check=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--per-file", type=int, default=10)
    parser.add_argument("--ours")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    become_subreaper()
    binary = args.ours or build_ours()
    work = tmpfs_dir("pmtr-bench-include-")
    ready = build_helpers(work)["ready"]
    total = args.files * args.per_file
    print(f"# {total} jobs: {args.files} included files of {args.per_file} jobs, or one file; median of {args.runs}; on {work}")
    print(f"{'layout':<12} {'pmtr -t':>10} {'-t peak RSS':>12} {'reload':>10} {'pmtr peak RSS':>14}")
    for kind in ("one file", f"{args.files} files"):
        d = os.path.join(work, "check")
        os.makedirs(d, exist_ok=True)
        main_file, _ = layout(d, "one file" if kind == "one file" else "files", args.files, args.per_file, ready, False)
        checks = [measure([binary, "-t", "-c", main_file], d) for _ in range(args.runs)]
        if any(code != 0 for _, _, code in checks):
            sys.exit(f"pmtr -t failed on {kind}")
        subprocess.run(["rm", "-rf", d], check=True)
        reloads = [reload_run(binary, work, "one file" if kind == "one file" else "files",
                              args.files, args.per_file, ready) for _ in range(args.runs)]
        t_check = statistics.median(t for t, _, _ in checks) * 1000
        rss_check = max(r for _, r, _ in checks) / 1024
        t_reload = statistics.median(t for t, _ in reloads) * 1000
        rss_pmtr = max(r for _, r in reloads) / 1024
        print(f"{kind:<12} {t_check:8.1f} ms {rss_check:9.1f} MB {t_reload:8.1f} ms {rss_pmtr:11.1f} MB"
              f"   reload samples {[round(t * 1000, 1) for t, _ in reloads]}")


if __name__ == "__main__":
    main()
