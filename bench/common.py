"""Shared helpers of the benchmarks: building the programs compared, and a
scratch directory on tmpfs."""
import os
import socket
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# Seconds from the end of some work to a pmtr at rest: it gives memory
# back a second after start-up and after a reload (docs/PERFORMANCE.md,
# "Fixed memory").
SETTLE = 2.5


def build_ours():
    subprocess.run(["cargo", "build", "--release", "-q", "--bins"], cwd=TOP, check=True)
    return os.path.join(TOP, "target", "release", "pmtr")


def build_original():
    script = os.path.join(TOP, "..", "shared", "reference", "build-original.sh")
    out = subprocess.run([script], check=True, capture_output=True, text=True).stdout
    return out.strip().splitlines()[-1]


def tmpfs_dir(prefix):
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    return tempfile.mkdtemp(prefix=prefix, dir=base)


def proc_ticks(pid):
    """CPU time (user + system) of a process, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def threads_cpu_ms(pid):
    """CPU time of every thread of `pid`, kernel time included, in ms
    (/proc/PID/task/*/schedstat: nanoseconds on a CPU). Threads that ended
    are not counted; one ending while it is read is skipped."""
    total = 0
    task_dir = f"/proc/{pid}/task"
    for task in os.listdir(task_dir):
        try:
            with open(os.path.join(task_dir, task, "schedstat")) as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:
            pass
    return total / 1e6


def proc_status(pid, field):
    """A number of /proc/PID/status (voluntary_ctxt_switches, VmRSS, ...)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def wait_for(condition, what, timeout=60):
    """`condition()`'s first true value, polled until `timeout` seconds;
    the benchmark exits saying `what` it waited for if none comes."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            sys.exit(f"{os.path.basename(sys.argv[0])}: timed out waiting for {what}")
        time.sleep(0.05)
    return value


def argv_has(pid, word):
    """Whether process `pid` runs with `word` in its argv (False when gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return word.encode() in f.read()
    except OSError:
        return False


def child_runs(parent, word):
    """Whether a child of `parent` runs with `word` in its argv: asks
    /proc, not the supervisor, so that asking runs none of its code."""
    try:
        with open(f"/proc/{parent}/task/{parent}/children") as f:
            return any(argv_has(child, word) for child in f.read().split())
    except OSError:
        return False


def free_port(kind):
    """A port free on 127.0.0.1 for `kind` (socket.SOCK_DGRAM or _STREAM)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_collector(prefix):
    """A release pmtr-rptserver with --http on 127.0.0.1, in a scratch
    directory: (process, UDP port, HTTP port)."""
    build_ours()
    server = os.path.join(TOP, "target", "release", "pmtr-rptserver")
    work = tmpfs_dir(prefix)
    udp, http = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    process = subprocess.Popen([server, "-p", str(udp), "-f", os.path.join(work, "status.txt"), "--http", f"127.0.0.1:{http}"],
                               stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return process, udp, http
