"""Shared helpers of the benchmarks: building the programs compared, and a
scratch directory on tmpfs."""
import os
import subprocess
import tempfile

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
