#!/usr/bin/env python3
"""A flood of UDP control datagrams (no `udp key`, the original-compatible
default) at a pmtr of 1 000 jobs: 2 KB datagrams naming jobs to disable
(the same ones again and again) and jobs that do not exist, as fast as
one sender can for SECONDS. Measures pmtr's CPU during the flood and the
log lines it wrote, against the changes of state there were.

    python3 bench/control_flood.py [--jobs 1000] [--seconds 3]
"""
import argparse
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import build_ours, proc_ticks, tmpfs_dir  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    pmtr = build_ours()
    work = tmpfs_dir("pmtr-bench-flood-")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = os.path.join(work, "pmtr.conf")
    with open(config, "w") as f:
        f.write(f"listen on udp://127.0.0.1:{port}\n")
        for n in range(args.jobs):
            f.write(f"job {{\n name j{n}\n cmd /bin/sleep 1000000\n}}\n")
    log = open(os.path.join(work, "stderr.log"), "w+")
    process = subprocess.Popen([pmtr, "-F", "-c", config, "--socket", os.path.join(work, "pmtr.sock")],
                               stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            log.seek(0)
            if log.read().count("started job") >= args.jobs:
                break
            time.sleep(0.2)
        log.seek(0, os.SEEK_END)
        before_lines = log.tell()
        # The first 100 jobs named again and again, and unknown names.
        disable = "disable"
        n = 0
        while len(disable) < 1990 and n < 100:
            disable += f" j{n}"
            n += 1
        ghosts = "enable" + "".join(f" ghost{g}" for g in range(250))[:1990]
        datagrams = [disable.encode(), ghosts.encode()]
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        ticks0 = proc_ticks(process.pid)
        start = time.perf_counter()
        sent = 0
        while time.perf_counter() - start < args.seconds:
            sender.sendto(datagrams[sent % 2], ("127.0.0.1", port))
            sent += 1
        wall = time.perf_counter() - start
        time.sleep(1.0)  # what pmtr still had queued
        cpu = (proc_ticks(process.pid) - ticks0) / os.sysconf("SC_CLK_TCK")
        log.seek(before_lines)
        lines = log.read().splitlines()
        changes = n  # each named job disabled once
        disabling = sum("disabling job" in line for line in lines)
        stops = sum("sending SIGTERM" in line for line in lines)
        unknown = sum("no job named" in line for line in lines)
        print(f"# control flood: {args.jobs} jobs, {sent} datagrams of ~2 KB in {wall:.1f} s from one sender, no udp key")
        print(f"pmtr CPU {cpu:.2f} s in {wall + 1:.1f} s = {100 * cpu / (wall + 1):.1f} % of one core")
        print(f"log lines {len(lines)}: {disabling} 'disabling' and {stops} stops for {changes} jobs disabled "
              f"(changes of state), {unknown} about unknown names, {len(lines) - disabling - stops - unknown} others")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


if __name__ == "__main__":
    main()
