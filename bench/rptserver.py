#!/usr/bin/env python3
"""Benchmark of pmtr-rptserver: reports from 10 000 simulated hosts at the
10 s cadence (1 000 datagrams/s) on 127.0.0.1 for 60 s. Measures the
collector's CPU share, its memory, and datagrams lost.

    python3 bench/rptserver.py [--hosts 10000] [--seconds 60] [--jobs-per-host 5] [--flood 100000]

With --flood N, N made-up hosts of 1 000 jobs each (19 KB datagrams) are
then sent as fast as the collector takes them, and its memory measured
again: the limits (--max-hosts, --max-jobs) must keep it bounded.
"""
import argparse
import json
import os
import signal
import socket
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import proc_status, proc_ticks, start_collector  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--jobs-per-host", type=int, default=5)
    parser.add_argument("--flood", type=int, default=0, help="made-up hosts of 1 000 jobs sent after the run")
    args = parser.parse_args()
    process, udp, http = start_collector("pmtr-bench-rptserver-")
    try:
        reports = []
        for h in range(args.hosts):
            lines = [f"report host{h:05d}"]
            for j in range(args.jobs_per_host):
                lines.append(f"job{j} e {h * 7 + j} {10000 + j} /usr/bin/service{j}")
            reports.append(("\n".join(lines) + "\n").encode())
        rate = args.hosts / 10.0
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        target = ("127.0.0.1", udp)
        sent = 0
        ticks0 = proc_ticks(process.pid)
        start = time.perf_counter()
        while True:
            elapsed = time.perf_counter() - start
            if elapsed >= args.seconds:
                break
            due = int(elapsed * rate) + 1
            while sent < due:
                sender.sendto(reports[sent % args.hosts], target)
                sent += 1
            time.sleep(0.005)
        wall = time.perf_counter() - start
        ticks1 = proc_ticks(process.pid)
        time.sleep(1.0)
        before_http = proc_status(process.pid, 'VmRSS')
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/status.json") as response:
            status = json.load(response)
        received = status["datagrams_received"] + status["datagrams_refused"]
        hz = os.sysconf("SC_CLK_TCK")
        cpu = (ticks1 - ticks0) / hz
        print(f"# pmtr-rptserver: {args.hosts} hosts x {args.jobs_per_host} jobs, {rate:.0f} datagrams/s for {wall:.0f} s on 127.0.0.1")
        print(f"datagrams sent {sent}, received {received}, lost {sent - received}")
        print(f"CPU {cpu:.2f} s over {wall:.0f} s = {100 * cpu / wall:.2f} % of one core")
        print(f"RSS {before_http} KiB before any HTTP request, {proc_status(process.pid, 'VmRSS')} KiB after /status.json (peak {proc_status(process.pid, 'VmHWM')} KiB); hosts known {len(status['hosts'])}")
        if args.flood:
            jobs = "".join(f"job{j:04d} e 1 {j + 2} /usr/bin/x\n" for j in range(1000))
            sent = 0
            for f in range(args.flood):
                sender.sendto(f"report fake{f:06d}\n{jobs}".encode(), target)
                sent += 1
                if sent % 200 == 0:
                    time.sleep(0.01)
            time.sleep(1.0)
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics") as response:
                metrics = response.read().decode()
            dropped = [line for line in metrics.splitlines() if line.startswith(("pmtr_fleet_reports_dropped_total", "pmtr_fleet_jobs_dropped_total", "pmtr_fleet_hosts "))]
            print(f"after a flood of {args.flood} made-up hosts of 1 000 jobs: RSS {proc_status(process.pid, 'VmRSS')} KiB "
                  f"(peak {proc_status(process.pid, 'VmHWM')} KiB); {'; '.join(dropped)}")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
