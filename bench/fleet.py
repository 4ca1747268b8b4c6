#!/usr/bin/env python3
"""Benchmark of the fleet page's traffic and the collector's cost with
viewers, at 10 000 hosts of 5 jobs reporting every 10 s on 127.0.0.1.

Measures the bytes of one poll (nothing changed: a 304; 1 % of hosts
changed; ?problems=1), then the collector's CPU for 60 s with 10 viewers
polling every 2 s as the page does (?since + ETag + gzip), side by side with
10 viewers polling the whole /status.json as the page before issue 18 did.
It also times a normal client beside 1 000 connections that never finish
their headers (a slowloris). With --page, also runs the Chromium test in release and reports the page's
own timing (first render, work and long tasks per update).

    python3 bench/fleet.py [--hosts 10000] [--seconds 60] [--viewers 10] [--page]
"""
import argparse
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import TOP, proc_ticks, start_collector  # noqa: E402


def http(port, path, headers=()):
    """One GET: (status, headers dict, body decoded, bytes on the wire)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        request += "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
        s.sendall(request.encode())
        chunks = []
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if fields.get("transfer-encoding") == "chunked":
        body = dechunk(body)
    if fields.get("content-encoding") == "gzip":
        body = gzip.decompress(body)
    return status, fields, body, len(raw)


def dechunk(data):
    out = b""
    while data:
        size, _, rest = data.partition(b"\r\n")
        n = int(size.split(b";")[0], 16)
        if n == 0:
            break
        out += rest[:n]
        data = rest[n + 2:]
    return out


START = time.monotonic()


def report(h, jobs, round_):
    """Uptimes grow with the clock: a job whose uptime stood still would
    read as restarted."""
    name = f"host{h:05d}"
    elapsed = int(time.monotonic() - START)
    header = f"report {name} 10.0.{round_ % 250}.7" if h % 100 == 7 else f"report {name}"
    lines = [header] + [f"job{j} e {h * 7 + j + elapsed} {10000 + j} /usr/bin/service{j}" for j in range(jobs)]
    return ("\n".join(lines) + "\n").encode()


class Reporter(threading.Thread):
    """Every host's report every 10 s (1 % of hosts change each round)."""

    def __init__(self, port, hosts, jobs):
        super().__init__(daemon=True)
        self.port, self.hosts, self.jobs, self.stop = port, hosts, jobs, threading.Event()

    def run(self):
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rate = self.hosts / 10.0
        start, sent = time.perf_counter(), 0
        while not self.stop.is_set():
            due = int((time.perf_counter() - start) * rate) + 1
            while sent < due:
                sender.sendto(report(sent % self.hosts, self.jobs, sent // self.hosts), ("127.0.0.1", self.port))
                sent += 1
            self.stop.wait(0.005)


def viewer(port, light, stop, totals, loaded):
    """Polls every 2 s as the page does (light) or as the old page did.
    The first load (the whole fleet) is left out of the totals."""
    generation, tag, first = None, None, True
    while not stop.is_set():
        if not light:
            _, _, _, size = http(port, "/status.json")
        else:
            path = "/status.json" if generation is None else f"/status.json?since={generation}"
            headers = [("Accept-Encoding", "gzip")] + ([("If-None-Match", tag)] if tag else [])
            status, fields, body, size = http(port, path, headers)
            if status == 200:
                generation, tag = json.loads(body)["generation"], fields.get("etag")
        if first:
            first = False
            loaded.release()
        else:
            totals.append(size)
        stop.wait(2.0)


def cpu_with_viewers(port, pid, viewers, light, seconds):
    stop, totals, loaded = threading.Event(), [], threading.Semaphore(0)
    threads = [threading.Thread(target=viewer, args=(port, light, stop, totals, loaded), daemon=True) for _ in range(viewers)]
    for t in threads:
        t.start()
    for _ in threads:
        loaded.acquire()
    ticks0, start = proc_ticks(pid), time.perf_counter()
    time.sleep(seconds)
    wall = time.perf_counter() - start
    cpu = (proc_ticks(pid) - ticks0) / os.sysconf("SC_CLK_TCK")
    stop.set()
    for t in threads:
        t.join()
    return cpu, wall, totals


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--jobs-per-host", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--viewers", type=int, default=10)
    parser.add_argument("--slowloris", type=int, default=1000, help="connections that never finish their headers")
    parser.add_argument("--page", action="store_true", help="also run the Chromium test in release")
    args = parser.parse_args()
    process, udp, port = start_collector("pmtr-bench-fleet-")
    try:
        # Every host once, acknowledged batch by batch: none lost.
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for first in range(0, args.hosts, 50):
            for h in range(first, min(first + 50, args.hosts)):
                sender.sendto(report(h, args.jobs_per_host, 0), ("127.0.0.1", udp))
            while json.loads(http(port, "/status.json?problems=1")[2])["datagrams_received"] < min(first + 50, args.hosts):
                time.sleep(0.001)
        gz = [("Accept-Encoding", "gzip")]
        _, fields, body, plain_size = http(port, "/status.json")
        generation, tag = json.loads(body)["generation"], fields["etag"]
        _, _, _, full_gz = http(port, "/status.json", gz)
        status, _, _, unchanged = http(port, f"/status.json?since={generation}", gz + [("If-None-Match", tag)])
        assert status == 304, status
        changed = args.hosts // 100
        for h in range(changed):
            sender.sendto(report(h * 100 + 7, args.jobs_per_host, 1), ("127.0.0.1", udp))
        time.sleep(0.5)
        status, _, body, one_percent = http(port, f"/status.json?since={generation}", gz + [("If-None-Match", tag)])
        delta_hosts = len(json.loads(body)["hosts"])
        _, _, _, one_percent_plain = http(port, f"/status.json?since={generation}")
        _, _, _, problems = http(port, "/status.json?problems=1", gz)
        _, _, _, metrics_plain = http(port, "/metrics")
        _, _, _, metrics_gz = http(port, "/metrics", gz)
        print(f"# pmtr-rptserver --http: {args.hosts} hosts x {args.jobs_per_host} jobs on 127.0.0.1, bytes on the wire per request")
        print(f"whole /status.json                 {plain_size:>10} B plain, {full_gz:>9} B gzip")
        print(f"poll, nothing changed (304)        {unchanged:>10} B")
        print(f"poll, {changed} hosts changed ({delta_hosts} sent)  {one_percent:>10} B gzip, {one_percent_plain:>9} B plain")
        print(f"?problems=1 (no problem)           {problems:>10} B gzip")
        print(f"/metrics                           {metrics_plain:>10} B plain, {metrics_gz:>9} B gzip")

        for stalled_count in (0, args.slowloris):
            stalled = []
            for _ in range(stalled_count):
                c = socket.create_connection(("127.0.0.1", port), timeout=10)
                c.sendall(b"GET /status.json HTTP/1.1\r\nHost: 127.")
                stalled.append(c)
            times = {}
            for path in ("/status.json?problems=1", "/status.json"):
                samples = []
                for _ in range(10):
                    t = time.perf_counter()
                    http(port, path, gz)
                    samples.append(1000 * (time.perf_counter() - t))
                times[path] = sorted(samples)[len(samples) // 2]
            print(f"beside {stalled_count} stalled headers: {path} gzip answered in {times['/status.json']:.1f} ms, "
                  f"?problems=1 in {times['/status.json?problems=1']:.2f} ms (median of 10)")
            for c in stalled:
                c.close()
        reporter = Reporter(udp, args.hosts, args.jobs_per_host)
        reporter.start()
        # One round first: hosts that went stale while the bytes were
        # measured come back before the viewers start.
        time.sleep(12)
        cpu, wall, _ = cpu_with_viewers(port, process.pid, 0, True, args.seconds)
        print(f"no viewer, reports alone: collector CPU {cpu:.2f} s in {wall:.0f} s = {100 * cpu / wall:.2f} % of one core")
        for light in (True, False):
            cpu, wall, totals = cpu_with_viewers(port, process.pid, args.viewers, light, args.seconds)
            kind = "as the page polls (since+ETag+gzip)" if light else "whole /status.json every 2 s (before)"
            rate = sum(totals) / wall
            print(f"{args.viewers} viewers, {kind}: collector CPU after the first loads {cpu:.2f} s in {wall:.0f} s = {100 * cpu / wall:.2f} % of one core; "
                  f"{len(totals)} polls, {rate / 1024:.1f} KiB/s in all")
        reporter.stop.set()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
    if args.page:
        subprocess.run(["cargo", "test", "-q", "--release", "-p", "pmtr-rptserver", "--test", "integration",
                        "--", "a_fleet_of_10_000_hosts_in_a_browser"], cwd=TOP, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(os.path.join(TOP, "target", "fleet-page-10000.json")) as f:
            timing = json.load(f)
        updates = timing["updates"]
        print(f"page at {args.hosts} hosts (Chromium, release collector): problems drawn at {timing['first_render_ms']:.0f} ms, "
              f"whole fleet at {timing['complete_ms']:.0f} ms after navigation start")
        print(f"  long tasks of the load: {timing['long_tasks_ms']} ms")
        for u in updates:
            print(f"  update {u['status']}: work {u['work_ms']:.1f} ms, long tasks {u['long_tasks_ms']:.0f} ms")


if __name__ == "__main__":
    main()
