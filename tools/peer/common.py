"""Process lifetime, ports, CPU accounting, machine facts and small statistics."""

from __future__ import annotations

import glob
import hashlib
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from typing import Callable, Optional

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


LOG_PREFIX = "peer_compare"  # a tool that reuses these modules may set its own name


def log(msg: str) -> None:
    print(f"{LOG_PREFIX}: {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    """A port the kernel just handed out on 127.0.0.1 (closed again, so a server can bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(probe: Callable[[], bool], timeout: float, what: str, proc: Optional[subprocess.Popen] = None) -> None:
    """Polls `probe` until it is true; fails after `timeout` s or when `proc` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with status {proc.returncode}")
        try:
            if probe():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what}: not ready after {timeout:.0f} s")


class Processes:
    """Every server this run started, by Popen handle: cleanup stops exactly these, never
    anything found by name."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen, int]] = []

    def start(self, name: str, argv: list[str], log_path: str, stop_signal: int = signal.SIGTERM,
              **popen_kw) -> subprocess.Popen:
        logf = open(log_path, "ab")
        # A new session: a Ctrl-C in the terminal reaches this script, which then stops the
        # servers in order, instead of every server at once.
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                start_new_session=True, **popen_kw)
        logf.close()
        self.procs.append((name, proc, stop_signal))
        return proc

    def stop(self, proc: subprocess.Popen, timeout: float = 30) -> None:
        for i, (name, p, sig) in enumerate(self.procs):
            if p is proc:
                del self.procs[i]
                _stop(name, p, sig, timeout)
                return

    def stop_all(self) -> None:
        while self.procs:
            name, p, sig = self.procs.pop()
            _stop(name, p, sig, 30)


def _stop(name: str, proc: subprocess.Popen, sig: int, timeout: float) -> None:
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log(f"{name} (pid {proc.pid}) did not stop within {timeout:.0f} s; killing it")
        proc.kill()
        proc.wait(timeout=10)


def _proc_stat(pid: int) -> Optional[list[str]]:
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # fields from `state` on; comm may hold spaces


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process, its reaped children and its live descendants (PostgreSQL
    backends are processes; Banyan's and Redis's threads are in their own process's figure)."""
    children: dict[int, list[int]] = {}
    for path in glob.glob("/proc/[0-9]*/stat"):
        child = int(path.split("/")[2])
        st = _proc_stat(child)
        if st:
            children.setdefault(int(st[1]), []).append(child)
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        st = _proc_stat(p)
        if st:
            # utime, stime, cutime, cstime: fields 14-17 of proc(5), here 11-14 counted from `state`.
            total += sum(int(x) for x in st[11:15]) / CLOCK_TICKS
        todo.extend(children.get(p, []))
    return total


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            mem_gib = int(f.readline().split()[1]) / 1024 / 1024
    except (OSError, ValueError, IndexError):
        mem_gib = float("nan")
    return {"nproc": str(os.cpu_count()), "cpu": model, "kernel": platform.release(),
            "memory": f"{mem_gib:.0f} GiB", "loadavg": "%.2f %.2f %.2f" % os.getloadavg()}


def cpu_pressure() -> str:
    """The kernel's CPU pressure (share of time some task waited for a CPU, last 60 s): other
    work on the machine makes every figure noisier, so the report says how busy it was."""
    try:
        with open("/proc/pressure/cpu") as f:
            some = f.readline().split()
        return dict(x.split("=") for x in some[1:])["avg60"] + "%"
    except (OSError, KeyError, ValueError, IndexError):
        return "n/a"


def file_identity(path: str) -> str:
    """Short sha256 and mtime of a file (which build of the binary was measured)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    mtime = time.strftime("%Y-%m-%d %H:%M", time.localtime(os.path.getmtime(path)))
    return f"sha256 {h.hexdigest()[:12]}, built {mtime}"


def filesystem(path: str) -> str:
    """"ext4 /dev/vda" for the mount holding `path` (an fsync on tmpfs costs nothing, which
    would make every durable figure meaningless)."""
    best, desc = "", "unknown"
    real = os.path.realpath(path)
    try:
        with open("/proc/mounts") as f:
            for line in f:
                dev, mnt, fstype = line.split()[:3]
                if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                    best, desc = mnt, f"{fstype} {dev}"
    except OSError:
        pass
    return desc



def run_info(root: str) -> dict[str, str]:
    """The machine, the filesystem `root` is on and the CPU pressure, for a report's header;
    warns when `root` is in memory, where fsync costs nothing."""
    info = machine()
    info["fs"] = filesystem(root)
    info["pressure"] = cpu_pressure()
    if info["fs"].startswith(("tmpfs", "ramfs")):
        log(f"warning: {root} is on {info['fs']}: fsync costs nothing there; set TMPDIR to a disk")
    return info

def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = max(0, min(len(s) - 1, int(round(q * (len(s) - 1)))))
    return s[k]


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}"


def fmt_ms(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"
