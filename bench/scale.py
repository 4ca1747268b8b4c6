#!/usr/bin/env python3
"""How pmtr's costs grow with the number of jobs, beside the original C pmtr
and a bare fork+exec loop (the floor), in one run, on tmpfs.

    python3 bench/scale.py [--sizes 100,1000,3000,10000] [--runs 1]
                           [--before PMTR] [--plot docs/scale.svg]

For each number of jobs N (every job is `helpers/ready`, which reports its
pid on a FIFO when it runs):

  start      from launching the supervisor until N jobs run; and the
             supervisor's own CPU for it (/proc/PID/task/*/schedstat),
             per start
  pss        PSS of the supervising processes with N jobs running, at
             rest: 10 s after the start (pmtr gives memory back a second
             after start-up; docs/PERFORMANCE.md, "Fixed memory")
  status     `pmtr-ctl status --json` with N jobs (pmtr only: the original
             has no local control)
  reload     one job's definition changed, the file written in place (the
             original sees only that), until the job's new pid
  storm      10 % of the jobs, which ran >= 10 s, SIGKILLed at once, until
             all are back
  shutdown   SIGTERM until the supervisor exited and no job is left

Writes the figures as a table, and with --plot a log-log plot of each
measure against N (matplotlib, from PyPI: `pip install matplotlib`).
"""
import argparse
import os
import random
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import TOP, build_original, build_ours, threads_cpu_ms, tmpfs_dir  # noqa: E402
from engine import Subject, become_subreaper, build_helpers  # noqa: E402


def rewrite(subject, ready, changed):
    """The configuration with job `changed` given `env CHANGED=1`, written in
    place (open, truncate, write, close)."""
    conf = os.path.join(subject.dir, "pmtr.conf")
    text = "".join(
        f"job {{\n  name job{i}\n  cmd {ready}\n{'  env CHANGED=1' + chr(10) if i == changed else ''}}}\n"
        for i in range(subject.jobs)
    )
    started = time.perf_counter()
    with open(conf, "w") as f:
        f.write(text)
    return started


def storm(subject, seed):
    """SIGKILLs 10 % of the subject's running jobs at once and waits until
    as many new ones report."""
    # Among the jobs that run now: a changed job's first pid is gone.
    running = [p for p in subject.job_pids if os.path.exists(f"/proc/{p}")]
    victims = random.Random(seed).sample(running, max(1, subject.jobs // 10))
    hit = 0
    for victim in victims:
        try:
            os.kill(victim, signal.SIGKILL)
            hit += 1
        except ProcessLookupError:
            pass
    subject.job_pids += subject.fifo.pids(hit, timeout=120)


def measure(kind, programs, helpers, work, n, seed):
    """Every measure for one supervisor (or the floor) with n jobs."""
    out = {}
    s = Subject(kind, programs, helpers, work, n)
    try:
        out["start"] = s.wait_started()
        if kind == "floor":
            return out
        pid = s.process.pid
        out["cpu_per_start"] = threads_cpu_ms(pid) / n
        if kind != "original":
            ctl = os.path.join(os.path.dirname(programs[kind]), "pmtr-ctl")
            socket = os.path.join(s.dir, "pmtr.sock")
            t = time.perf_counter()
            subprocess.run([ctl, "--socket", socket, "status", "--json"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            out["status"] = time.perf_counter() - t
        # Past the 10 s rapid-restart guard, which both apply to a job that
        # restarts, by itself or for a change.
        time.sleep(10.5)
        pss = s.pss_kib()
        if pss == 0:
            # The original at 10 000 jobs: its logger runs out of
            # descriptors, and the original ends with every job.
            print(f"{n} {kind}: ended before it came to rest", file=sys.stderr, flush=True)
            return out
        out["pss"] = pss / 1024
        changed = n // 2
        saved = rewrite(s, helpers["ready"], changed)
        s.job_pids += s.fifo.pids(1, timeout=60)
        out["reload"] = time.perf_counter() - saved
        killed = time.perf_counter()
        storm(s, seed)
        out["storm"] = time.perf_counter() - killed
        out["shutdown"], _ = s.stop(timeout=60)
        return out
    except TimeoutError as error:
        # A measure that did not finish is left out; the others stand.
        print(f"{n} {kind}: {error}", file=sys.stderr, flush=True)
        return out
    finally:
        s.cleanup()


MEASURES = [
    ("start", "start, s", 1),
    ("cpu_per_start", "supervisor CPU per start, ms", 1),
    ("pss", "PSS, MiB", 1),
    ("status", "status --json, s", 1),
    ("reload", "reload of one job, s", 1),
    ("storm", "10 % killed, back in, s", 1),
    ("shutdown", "shutdown, s", 1),
]


def plot(results, sizes, path):
    import matplotlib
    matplotlib.use("svg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(16, 7.5))
    styles = {"floor": ("k", ":"), "original": ("tab:orange", "--"), "before": ("tab:gray", "-."), "pmtr": ("tab:blue", "-")}
    for ax, (key, title, _) in zip(axes.flat, MEASURES):
        for kind, by_n in results.items():
            points = [(n, by_n[n].get(key)) for n in sizes if by_n[n].get(key) is not None]
            if points:
                color, line = styles.get(kind, ("tab:green", "-"))
                ax.plot(*zip(*points), marker="o", color=color, linestyle=line, label=kind)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("jobs")
        ax.grid(True, which="both", alpha=0.3)
    # The last panel: start time relative to the floor.
    ax = axes.flat[-1]
    for kind, by_n in results.items():
        if kind == "floor":
            continue
        points = [(n, by_n[n]["start"] / results["floor"][n]["start"]) for n in sizes]
        color, line = styles.get(kind, ("tab:green", "-"))
        ax.plot(*zip(*points), marker="o", color=color, linestyle=line, label=kind)
    ax.set_xscale("log")
    ax.set_title("start ÷ floor", fontsize=10)
    ax.set_xlabel("jobs")
    ax.grid(True, which="both", alpha=0.3)
    axes.flat[0].legend()
    fig.suptitle("pmtr, the original and a bare fork+exec loop, by number of jobs (log-log)")
    fig.tight_layout()
    fig.savefig(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,1000,3000,10000")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--ours")
    parser.add_argument("--original")
    parser.add_argument("--before", help="an earlier pmtr binary, measured beside this one")
    parser.add_argument("--plot", help="write a log-log plot (SVG) here")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    become_subreaper()
    sizes = [int(n) for n in args.sizes.split(",")]
    programs = {"pmtr": args.ours or build_ours(), "original": args.original or build_original()}
    if args.before:
        programs["before"] = args.before
    kinds = ["floor", "original"] + (["before"] if args.before else []) + ["pmtr"]
    work = tmpfs_dir("pmtr-bench-scale-")
    helpers = build_helpers(work)
    results = {kind: {} for kind in kinds}
    for n in sizes:
        for kind in kinds:
            runs = [measure(kind, programs, helpers, work, n, seed) for seed in range(args.runs)]
            # The median of each measure over the runs.
            keys = runs[0].keys()
            results[kind][n] = {k: sorted(r[k] for r in runs if r.get(k) is not None)[len(runs) // 2] for k in keys}
            shown = "  ".join(f"{k} {v:.4g}" for k, v in results[kind][n].items())
            print(f"{n:>6} {kind:<9} {shown}", flush=True)
    print()
    header = "| measure | jobs | " + " | ".join(kinds) + " |"
    print(header)
    print("|" + "---|" * (len(kinds) + 2))
    for key, title, _ in MEASURES:
        for n in sizes:
            cells = []
            for kind in kinds:
                v = results[kind][n].get(key)
                cells.append("-" if v is None else (f"{v * 1000:.1f} ms" if title.endswith(", s") else f"{v:.3g}"))
            print(f"| {title} | {n} | " + " | ".join(cells) + " |")
    if args.plot:
        plot(results, sizes, os.path.join(TOP, args.plot) if not os.path.isabs(args.plot) else args.plot)
        print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
