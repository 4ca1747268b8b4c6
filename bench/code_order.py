#!/usr/bin/env python3
"""Writes pmtr/code-order.txt: the functions pmtr runs, in the order the
linker lays them out at the start of pmtr's code (docs/PERFORMANCE.md,
"Fixed memory").

    python3 bench/code_order.py [--check]

The kernel maps a binary's code 64 KiB around each page that faults, so
pmtr's resident code is every such window its work touches. Laid out in
release order, what pmtr runs is spread over all of its 1.5 MiB; laid out
first, together, it fills a few hundred KiB. The script runs the release
pmtr under valgrind's callgrind through two workloads and lists every
function of pmtr's binary that ran:

  1. the common case: one job started, `status`, `status --json`, a
     restart, a saved change, shutdown;
  2. the rest an operator meets: captured and filed output, restarts with
     backoff, `wait`/`once`/`after`, readiness and health checks,
     instances, enable/disable, UDP reports and control, metrics, SIGHUP,
     SIGUSR1, a reload by rename, a cgroup per job where one can be made.

Functions of (1) come first — within it, what runs after pmtr drops its
code pages (sys/code.rs), then control requests, the saved change,
start-up's own code, shutdown — then those only (2) ran, then the code
that runs in a new child before exec (callgrind follows no child). Valgrind
cannot run the `clone(CLONE_VM|CLONE_VFORK)` start, so every job reads a
FIFO, which makes pmtr start it with `fork`.

The symbol names carry hashes that Cargo derives from each crate's
version, dependencies and compiler, not from its source, so the list stays
good across most edits; names that no longer exist are skipped by the
linker (and that code goes back to the default order). `--check` reports,
without writing, how many listed names the release binary lacks and how
much of what pmtr runs now the list still covers. Regenerate after a
dependency or compiler update.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from common import SETTLE, TOP, argv_has, build_ours, child_runs, free_port, wait_for

ORDER_FILE = os.path.join(TOP, "pmtr", "code-order.txt")
CGROUP2 = "/sys/fs/cgroup/unified"

HEADER = """\
# Functions of pmtr's binary in the order the linker lays them out first
# (lld's --symbol-ordering-file, passed by pmtr/build.rs in release
# builds): what the common case runs, then what the rest of pmtr's work
# runs, then the child's code before exec. Written by
# `python3 bench/code_order.py`; see docs/PERFORMANCE.md, "Fixed memory".
"""


class Profiled:
    """pmtr under callgrind in a scratch directory, its jobs fed by a FIFO."""

    def __init__(self, pmtr, work, name, extra_args=(), valgrind_args=()):
        self.pmtr, self.work = pmtr, work
        self.ctl_path = os.path.join(os.path.dirname(pmtr), "pmtr-ctl")
        self.socket = os.path.join(work, "sock")
        self.config = os.path.join(work, "pmtr.conf")
        # A child that fails before exec also writes a profile: %p keeps
        # each process's apart.
        self.out = os.path.join(work, f"{name}.%p.callgrind")
        self.fifo = os.path.join(work, "in")
        if not os.path.exists(self.fifo):
            os.mkfifo(self.fifo)
            os.chmod(self.fifo, 0o666)
        # Held open read-write, so a job opening the FIFO never waits.
        self.fifo_fd = os.open(self.fifo, os.O_RDWR)
        self.extra_args = list(extra_args)
        self.valgrind_args = list(valgrind_args)
        self.process = None

    def write_config(self, text, rename=False):
        if rename:
            with open(self.config + ".new", "w") as f:
                f.write(text)
            os.rename(self.config + ".new", self.config)
        else:
            with open(self.config, "w") as f:
                f.write(text)

    def start(self):
        argv = ["valgrind", "--tool=callgrind", "--demangle=no", f"--callgrind-out-file={self.out}", *self.valgrind_args,
                self.pmtr, "-F", "-c", self.config, "--socket", self.socket, *self.extra_args]
        self.log = open(os.path.join(self.work, "pmtr.log"), "w")
        self.process = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: os.path.exists(self.socket), "pmtr's control socket")

    def ctl(self, *args):
        return subprocess.run([self.ctl_path, "--socket", self.socket, *args],
                              capture_output=True, text=True, timeout=120).stdout

    def jobs(self):
        try:
            return {job["name"]: job for job in json.loads(self.ctl("status", "--json"))}
        except ValueError:
            return {}

    def wait_jobs(self, predicate, what):
        wait_for(lambda: predicate(self.jobs()), what)

    def runs(self, name, word):
        """Whether job `name` runs a process with `word` in its argv."""
        return argv_has(self.jobs().get(name, {}).get("pid"), word)

    def dump(self, phase):
        """Ends a part of the profile, the one before `phase`: callgrind
        writes what ran since the last part to a file of its own (OUT.1,
        OUT.2, ...)."""
        subprocess.run(["callgrind_control", f"--dump={phase}", str(self.process.pid)], capture_output=True, check=True)
        wait_for(lambda: any(trigger(part) == f"dump {phase}" for part in self.parts()), "callgrind's dump")

    def parts(self):
        base = os.path.basename(self.out.replace("%p", str(self.process.pid)))
        found = [name for name in os.listdir(self.work) if name.startswith(base + ".")]
        return sorted((os.path.join(self.work, name) for name in found), key=lambda path: int(path.rsplit(".", 1)[1]))

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=120)
        self.log.close()
        os.close(self.fifo_fd)
        return self.out.replace("%p", str(self.process.pid))


def job(name, cmd, fifo, *lines):
    body = "".join(f"  {line}\n" for line in lines)
    return f"job {{\n  name {name}\n  cmd {cmd}\n  in {fifo}\n{body}}}\n"


def common_case(pmtr, work):
    """The parts of a profile of the common case, by phase (COMMON_PARTS).
    pmtr drops its code pages (sys/code.rs) once start-up and once the
    saved change are over: callgrind ends a part there too, so what runs
    after the drop until pmtr idles — what comes back — is a part of its
    own."""
    p = Profiled(pmtr, work, "common", valgrind_args=["--dump-before=*release_code_pages*"])
    p.write_config(job("one", "/bin/sleep 86400", p.fifo))
    p.start()
    wait_for(lambda: child_runs(p.process.pid, "86400"), "job one running")
    time.sleep(SETTLE)  # pmtr drops its pages a second after the work
    p.dump("control")
    p.ctl("status")
    p.ctl("restart", "one")
    p.wait_jobs(lambda jobs: jobs["one"]["restarts"] == 1 and jobs["one"]["pid"], "job one restarted")
    p.dump("reload")
    p.write_config(job("one", "/bin/sleep 86401", p.fifo))
    wait_for(lambda: child_runs(p.process.pid, "86401"), "the saved change applied")
    time.sleep(SETTLE)  # pmtr drops its pages a second after the work
    p.dump("shutdown")
    final = p.stop()
    phases = {name: [] for name in COMMON_PARTS}
    phase, dropped = "start-up", False
    for part in p.parts() + [final]:
        phases["idle, after a drop" if dropped else phase].append(part)
        why = trigger(part)
        dropped = why.startswith("--dump-before")
        if why.startswith("dump "):
            phase = why[len("dump "):]
    return [phases[name] for name in COMMON_PARTS]


# The parts of the common case in the order their functions are laid out:
# what runs after pmtr drops its code pages first, start-up's own last.
COMMON_PARTS = ["idle, after a drop", "control", "reload", "start-up", "shutdown"]


def trigger(part):
    """Why callgrind wrote this part: `dump PHASE`, `--dump-before=...`,
    `Program termination`."""
    with open(part, errors="replace") as f:
        for line in f:
            if line.startswith("desc: Trigger: "):
                return line[len("desc: Trigger: "):].strip()
            if line.startswith(("fn=", "ob=")):
                break
    return ""


def the_rest(pmtr, work, cgroup):
    extra = ["--cgroup", cgroup] if cgroup else ["--cgroup", "off"]
    p = Profiled(pmtr, work, "rest" + ("-cgroup" if cgroup else ""), extra)
    ready = os.path.join(work, "ready")
    open(ready, "w").close()
    fifo = p.fifo

    def config(tick, copies):
        return (
            f"report to udp://127.0.0.1:9\nlisten on udp://127.0.0.1:{udp_port}\n"
            f"metrics to {work}/metrics.prom\n"
            + job("ticker", f'/bin/sh -c "while true; do echo {tick}; sleep 0.2; done"', fifo)
            + job("flaky", '/bin/sh -c "echo working; echo giving up >&2; exit 1"', fifo, "backoff 100ms 200ms")
            + job("setup", '/bin/sh -c "echo preparing; echo ready"', fifo, "order -1", "wait", "once")
            + job("filed", '/bin/sh -c "echo to a file; exec sleep 86400"', fifo, f"out {work}/filed.out",
                  f"err {work}/filed.err", "log rotate 1M 2", "log timestamps")
            + job("web", "/bin/sleep 86400", fifo, "after setup", f"ready file {ready}", f"health tcp 127.0.0.1:{listener.getsockname()[1]}",
                  "health every 200ms", "limit memory 100M", "env FOO=bar", "user nobody", "stop timeout 2s")
            + job("pool", "/bin/sleep 86400", fifo, f"instances {copies}")
            + job("spare", "/bin/sleep 3600", fifo, "disable")
        )

    udp_port = free_port(socket.SOCK_DGRAM)
    # Checks by command would be started with clone(CLONE_VM), which
    # valgrind cannot run: the health check connects to this listener.
    listener = socket.create_server(("127.0.0.1", 0))
    p.write_config(config("tick", 3))
    p.start()
    wait_for(lambda: re.search(r"web\s+running, healthy", p.ctl("status")), "job web healthy")
    p.wait_jobs(lambda jobs: jobs["pool.3"]["pid"], "the pool running")
    p.ctl("status")
    p.ctl("logs", "ticker")
    p.ctl("disable", "pool")
    p.ctl("enable", "pool")
    subprocess.run([p.ctl_path, "-s", "127.0.0.1", "-p", str(udp_port), "enable", "spare"], capture_output=True)
    p.wait_jobs(lambda jobs: jobs["spare"]["pid"], "spare enabled over UDP")
    p.write_config(config("tock", 3))
    wait_for(lambda: p.runs("ticker", "tock"), "the saved change applied")
    p.write_config(config("tock", 2), rename=True)
    p.wait_jobs(lambda jobs: "pool.3" not in jobs, "the renamed file applied")
    p.process.send_signal(signal.SIGHUP)
    p.process.send_signal(signal.SIGUSR1)
    p.ctl("reload")
    p.wait_jobs(lambda jobs: jobs["flaky"]["restarts"] >= 3, "flaky restarted a few times")
    listener.close()
    return p.stop()


def functions_run(callgrind_file, binary):
    """The functions of `binary` that ran, as callgrind names them."""
    names, objects, functions = [], {}, {}
    current_object = None
    for line in open(callgrind_file, errors="replace"):
        line = line.rstrip("\n")
        m = re.match(r"^(c?ob)=\((\d+)\)(?: (.*))?$", line)
        if m:
            kind, ident, path = m.groups()
            if path:
                objects[ident] = path
            if kind == "ob":
                current_object = objects.get(ident)
            continue
        m = re.match(r"^(c?fn)=\((\d+)\)(?: (.*))?$", line)
        if m:
            kind, ident, name = m.groups()
            if name:
                functions[ident] = name
            if kind == "fn" and current_object == binary:
                names.append(functions[ident])
    # Callgrind marks a function's recursive activations with 'N.
    return [re.sub(r"'\d+$", "", name) for name in names if not name.startswith(("0x", "("))]


def symbols(binary):
    out = subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True, check=True).stdout
    return [fields[2] for fields in (line.split() for line in out.splitlines())
            if len(fields) == 3 and fields[1] in "tTwW"]


def sizes(binary):
    out = subprocess.run(["nm", "-S", "--defined-only", binary], capture_output=True, text=True, check=True).stdout
    return {fields[3]: int(fields[1], 16) for fields in (line.split() for line in out.splitlines())
            if len(fields) == 4 and fields[2] in "tTwW"}


def stale_names(binary):
    """The names the order file lists that `binary` does not define."""
    present = set(symbols(binary))
    listed = [line.strip() for line in open(ORDER_FILE) if line.strip() and not line.startswith("#")]
    return [name for name in listed if name not in present]


def writable_cgroup():
    if not os.access(os.path.join(CGROUP2, "cgroup.procs"), os.W_OK):
        return None
    return tempfile.mkdtemp(prefix="pmtr-code-order-", dir=CGROUP2)


def remove_cgroup(path):
    for root, dirs, _ in os.walk(path, topdown=False):
        for d in dirs:
            os.rmdir(os.path.join(root, d))
    os.rmdir(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="report the checked-in list's coverage, write nothing")
    args = parser.parse_args()
    if args.check:
        stale = stale_names(build_ours())
        print(f"{ORDER_FILE}: {len(stale)} listed names are not in the release binary"
              + (" (a dependency, the compiler or Cargo.toml changed: regenerate)" if stale else ""))
    if not shutil.which("valgrind"):
        sys.exit("code_order: needs valgrind (apt install valgrind)")
    pmtr = build_ours()
    binary = os.path.realpath(pmtr)
    ordered = []

    def add(names):
        seen = set(ordered)
        for name in names:
            if name not in seen:
                seen.add(name)
                ordered.append(name)

    work = tempfile.mkdtemp(prefix="pmtr-code-order-")
    os.chmod(work, 0o755)  # for the job run as nobody
    cgroup = writable_cgroup()
    try:
        os.makedirs(os.path.join(work, "common"), mode=0o755)
        parts = []
        for name, files in zip(COMMON_PARTS, common_case(pmtr, os.path.join(work, "common"))):
            before = len(ordered)
            for part in files:
                add(functions_run(part, binary))
            parts.append((name, ordered[before:]))
        common = len(ordered)
        runs = [None]
        if cgroup:
            runs.append(cgroup)
        else:
            print("code_order: no writable cgroup2 at", CGROUP2, "- the cgroup paths are not profiled")
        for i, group in enumerate(runs):
            rest = os.path.join(work, f"rest{i}")
            os.makedirs(rest, mode=0o755)
            add(functions_run(the_rest(pmtr, rest, group), binary))
    finally:
        if cgroup:
            remove_cgroup(cgroup)
        shutil.rmtree(work, ignore_errors=True)
    add(name for name in symbols(binary) if name.startswith(("_ZN4pmtr3sys5child", "_ZN4pmtr3sys5spawn")))

    size = sizes(binary)
    ran = sum(size.get(name, 0) for name in ordered)
    print(f"{len(ordered)} functions ran ({common} in the common case): {ran // 1024} KiB "
          f"of {sum(size.values()) // 1024} KiB of code")
    for name, names in parts:
        print(f"  {name:<28} {len(names):>4} functions first run there, {sum(size.get(n, 0) for n in names) // 1024} KiB")
    if args.check:
        listed = set(line.strip() for line in open(ORDER_FILE) if line.strip() and not line.startswith("#"))
        missing = [name for name in ordered if name not in listed]
        print(f"{ORDER_FILE}: lists {len(ordered) - len(missing)} of them; "
              f"{sum(size.get(n, 0) for n in missing) // 1024} KiB of code that ran is not listed")
        return
    with open(ORDER_FILE, "w") as f:
        f.write(HEADER)
        f.write("\n".join(ordered) + "\n")
    print("wrote", ORDER_FILE)


if __name__ == "__main__":
    main()
