"""The machine around a run: its description, the CPU the hypervisor steals and the
CPU of every process outside the run, read from ``/proc``."""

from __future__ import annotations

import contextlib
import math
import os
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from compare_base import CORES, DISTURBED_SHARE, ROOT


STORE_SERVERS = ("mariadbd", "mysqld", "redis-server")
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine_info() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu_model": model, "cores": CORES, "host": socket.gethostname()}


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        )
        commit = out.stdout.strip() or "unknown"
        return commit + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@dataclass(frozen=True)
class ProcInfo:
    ppid: int
    comm: str
    start: int  # start time in ticks since boot: tells a reused pid apart
    cpu_s: float
    kernel: bool


def read_procs() -> dict[int, ProcInfo]:
    """Every process's parent, name, start time and CPU seconds (user + system)."""
    out: dict[int, ProcInfo] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        open_, close = stat.index(b"("), stat.rindex(b")")
        comm = stat[open_ + 1 : close].decode(errors="replace")
        fields = stat[close + 2 :].split()
        pid, ppid = int(name), int(fields[1])
        flags = int(fields[6])
        kernel = pid == 2 or ppid == 2 or bool(flags & 0x00200000)  # PF_KTHREAD
        cpu = (int(fields[11]) + int(fields[12])) / _CLK_TCK
        out[pid] = ProcInfo(ppid, comm, int(fields[19]), cpu, kernel)
    return out


def read_stat() -> Optional[tuple[int, int, int]]:
    """(total, steal, idle + iowait) ticks of /proc/stat's cpu line."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("cpu "):
                f = [int(x) for x in line.split()[1:9]]
                return sum(f), f[7], f[3] + f[4]
    return None


def descendants(procs: dict[int, ProcInfo], root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, info in procs.items():
        children.setdefault(info.ppid, []).append(pid)
    out, stack = set(), [root]
    while stack:
        pid = stack.pop()
        if pid in out:
            continue
        out.add(pid)
        stack.extend(children.get(pid, ()))
    return out


class Watch:
    """Who used the machine's CPU while it runs: the run's process tree (``root``),
    the upstream, the store servers, this script, kernel threads and everything else.

    /proc is scanned once a second in a thread, so processes that end during the
    run are counted up to their last sample and processes that start are counted
    from zero."""

    def __init__(
        self, root: Optional[int], upstream_pid: Optional[int], interval: float = 1.0, mysql_pid: Optional[int] = None
    ) -> None:
        self.root = root
        self.upstream_pid = upstream_pid
        #: The private MariaDB's pid: then any other mysqld/mariadbd is someone else's load.
        self.mysql_pid = mysql_pid
        self._first = read_procs()
        self._last: dict[tuple[int, int], ProcInfo] = {}
        self._tree: set[tuple[int, int]] = set()
        self._stat0 = read_stat()
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def attach(self, root: int) -> None:
        self.root = root

    def _sample(self) -> None:
        procs = read_procs()
        for pid, info in procs.items():
            self._last[(pid, info.start)] = info
        if self.root is not None and self.root in procs:
            for pid in descendants(procs, self.root):
                self._tree.add((pid, procs[pid].start))

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def finish(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        self._sample()
        wall = time.monotonic() - self._t0
        stat1 = read_stat()
        first = {(pid, i.start): i for pid, i in self._first.items()}
        me = os.getpid()
        cpu = {"run": 0.0, "upstream": 0.0, "stores": 0.0, "harness": 0.0, "kernel": 0.0, "other": 0.0}
        others: dict[str, float] = {}
        for key, info in self._last.items():
            before = first.get(key)
            delta = info.cpu_s - (before.cpu_s if before else 0.0)
            if delta <= 0:
                continue
            pid = key[0]
            if key in self._tree:
                cpu["run"] += delta
            elif pid == self.upstream_pid:
                cpu["upstream"] += delta
            elif info.comm in STORE_SERVERS and not (
                self.mysql_pid is not None and info.comm != "redis-server" and pid != self.mysql_pid
            ):
                cpu["stores"] += delta
            elif pid == me:
                cpu["harness"] += delta
            elif info.kernel:
                cpu["kernel"] += delta
            else:
                cpu["other"] += delta
                others[f"{info.comm}[{pid}]"] = others.get(f"{info.comm}[{pid}]", 0.0) + delta
        machine_s = wall * CORES
        out = {f"{k}_cpu_s": round(v, 3) for k, v in cpu.items()}
        out["wall_s"] = round(wall, 3)
        top = sorted(others.items(), key=lambda kv: -kv[1])[:3]
        out["other_top"] = ", ".join(f"{name} {sec:.2f} s" for name, sec in top if sec > 0)
        out["other_cpu"] = cpu["other"] / machine_s if machine_s > 0 else math.nan
        out["steal"] = math.nan
        if self._stat0 and stat1 and stat1[0] > self._stat0[0]:
            out["steal"] = (stat1[1] - self._stat0[1]) / (stat1[0] - self._stat0[0])
        return out


def quiet_check(upstream_pid: Optional[int], seconds: float = 1.0, mysql_pid: Optional[int] = None) -> dict[str, float]:
    """Steal and other processes' CPU over ``seconds`` with nothing of ours running."""
    w = Watch(None, upstream_pid, interval=seconds, mysql_pid=mysql_pid)
    time.sleep(seconds)
    return w.finish()


def is_disturbed(steal: float, other_cpu: float, limit: float = DISTURBED_SHARE) -> bool:
    return (math.isfinite(steal) and steal > limit) or (math.isfinite(other_cpu) and other_cpu > limit)


