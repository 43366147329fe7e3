"""PZ-1: each model's ceiling found by bisection, Switchyard against the Python
peers, in one invocation on one machine.

Models (``--models``): Switchyard's ``hybrid``, ``hybrid/1`` and ``reactor-only``
(each run is ``switchyard bench --models M --json --timeline F`` against real
Redis and MySQL), ``gevent/<cores>`` (``gevent_peer.py --procs <cores>``),
``prefork/<W>`` (``prefork_peer.py --workers W``, 16 by default), and
``hybrid@eqcpu``: ``hybrid`` at the ``--rounds`` that make its CPU step alone cost
what Python's costs at the default 400 rounds (calibrated in this invocation).

For every model, the ceiling (the highest rate it sustains: throughput >= 99 %
of the offered rate and slowdown p99 <= 1.25) is bisected between a rate it
sustains and one it does not, from a start bracket per model (``--bracket``):
the lower end is halved while it fails, the upper doubled while it sustains,
then the geometric middle is tried until ``hi / lo <= --tolerance`` or
``--max-steps`` points. Each step runs one point per model still bisecting,
``--repeats`` times, models alternating order every round, so every ratio comes
from this invocation; a point is sustained when its median run is. A first step
runs every model at low load (``--low-load``, a quarter of its bracket's low
end): the charts' left end, and the runs the machine's CPU ceiling is taken
from. A last step runs ``hybrid@eqcpu`` at gevent's ceiling, where the
equal-CPU target reads its slowdown.

Before and during each run the machine is watched: the share of its CPU time
stolen by the hypervisor (``/proc/stat``) and the CPU of processes outside the
run (every ``/proc/*/stat`` but the run's process tree, the upstream, the Redis
and MySQL servers, this script and kernel threads), as shares of the machine's
CPU. With the private MariaDB, any other mysqld/mariadbd counts as other load;
Redis is shared, so another client's use of it shows as the servers' CPU, not as
a disturbance. A run where either exceeds 5 % is marked ``disturbed``, run again (at most
``--disturbed-retries`` times) and never enters a median.

By default MySQL is a private MariaDB on tmpfs (``/dev/shm``), started for the
invocation on a free port and deleted at the end (``--mysql-url`` uses another).

Writes ``results/<stamp>.jsonl`` (every run, raw), ``<stamp>.md`` (table,
ceilings, ratios, the machine's CPU ceiling), the charts
``<stamp>-{slowdown_p99,throughput,peak_memory}.svg`` and per-second timeline
charts of each model's runs at its ceiling and just above. ``--render
FILE.jsonl`` redraws an earlier invocation. ``run_comparison.sh`` is the one
command that sets up the venv and calls this.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import math
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import pz1

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CORES = os.cpu_count() or 1
#: A run is disturbed when the hypervisor stole, or processes outside the run used,
#: more than this share of the machine's CPU time during it.
DISTURBED_SHARE = 0.05
#: Start brackets (a rate expected to sustain, one expected not to) by model family.
DEFAULT_BRACKETS = {
    "hybrid": (400.0, 800.0),
    "hybrid/1": (300.0, 600.0),
    "reactor-only": (200.0, 500.0),
    "gevent": (15.0, 40.0),
    "prefork": (15.0, 40.0),
    "hybrid@eqcpu": (20.0, 80.0),
}
#: --smoke: warm-up 3 s > the 2 s poll period, so every zap's first (cheaper) poll finishes
#: before the window and the short window's throughput is not biased low.
SMOKE = {"duration": 8.0, "warmup": 3.0, "drain": 10.0, "repeats": 1, "max_steps": 1}
SMOKE_BRACKET = (10.0, 20.0)
#: Calibrations of Python's CPU step alone at the start; their median sets hybrid@eqcpu's rounds.
PY_CALIBRATIONS = 5
STORE_SERVERS = ("mariadbd", "mysqld", "redis-server")
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# The machine: /proc
# --------------------------------------------------------------------------


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


# --------------------------------------------------------------------------
# Services: the upstream and a private MariaDB
# --------------------------------------------------------------------------


class Upstream:
    """A ``switchyard upstream`` on a free port, stopped on exit."""

    def __init__(self, binary: Path, log_path: Path) -> None:
        self._log = log_path.open("w", encoding="utf-8")
        self.proc = subprocess.Popen(
            [str(binary), "upstream", "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self.url = self._read_address(timeout_s=15.0)
        threading.Thread(target=self._drain, daemon=True).start()

    def _read_address(self, timeout_s: float) -> str:
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self._log.write(line)
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            address = entry.get("address") or entry.get("fields", {}).get("address")
            if address:
                return f"http://{address}"
        self.stop()
        raise RuntimeError("switchyard upstream did not log its address")

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._log.write(line)
        self._log.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.flush()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateMariaDB:
    """A throwaway mariadbd with its datadir on tmpfs, for this invocation only:
    ``--skip-grant-tables`` (root, no password), 127.0.0.1 on a free port, socket in
    the same directory, database ``test``. :meth:`stop` ends it and deletes the
    directory."""

    def __init__(self, base: str = "/dev/shm") -> None:
        for tool in ("mariadb-install-db", "mariadbd"):
            if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
                raise RuntimeError(f"{tool} not found: install mariadb-server, or pass --mysql-url")
        self.dir = Path(tempfile.mkdtemp(prefix="pz1-mariadb-", dir=base))
        self.port = free_port()
        self.proc: Optional[subprocess.Popen] = None
        data = self.dir / "data"
        user = ["--user=root"] if os.geteuid() == 0 else []
        subprocess.run(
            ["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--auth-root-authentication-method=normal",
             "--skip-test-db", *user],
            stdout=(self.dir / "install.log").open("w"), stderr=subprocess.STDOUT, check=True, timeout=120,
        )
        mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        self.proc = subprocess.Popen(
            [mariadbd, "--no-defaults", f"--datadir={data}", f"--socket={self.dir / 'mysqld.sock'}",
             f"--port={self.port}", "--bind-address=127.0.0.1", f"--pid-file={self.dir / 'mysqld.pid'}",
             f"--log-error={self.dir / 'error.log'}", "--skip-grant-tables", "--skip-log-bin",
             "--innodb-use-native-aio=0", "--max-connections=1000", *user],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        self._wait_ready()
        self.url = f"mysql://root@127.0.0.1:{self.port}/test"

    def _wait_ready(self, timeout_s: float = 60.0) -> None:
        import pymysql

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root", connect_timeout=2)
                with conn.cursor() as cur:
                    cur.execute("CREATE DATABASE IF NOT EXISTS test")
                conn.close()
                return
            except Exception:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"the private mariadbd exited; see {self.dir / 'error.log'}") from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def describe(self) -> str:
        return f"private MariaDB on tmpfs ({self.dir}, 127.0.0.1:{self.port}, deleted at the end)"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------
# Models and runs
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    """One model of the comparison: ``label`` as the tables show it."""

    label: str
    kind: str  # "rust", "gevent", "prefork"
    rust_model: str = ""
    rounds: Optional[int] = None  # None: the invocation's --rounds
    procs: int = 1

    @property
    def family(self) -> str:
        return self.label if self.label in DEFAULT_BRACKETS else self.label.split("/")[0]


def parse_models(text: str, cores: int, workers: int) -> list[Model]:
    out = []
    for name in (x.strip() for x in text.split(",")):
        if not name:
            continue
        if name.startswith("gevent"):
            n = int(name.split("/")[1]) if "/" in name else cores
            out.append(Model(f"gevent/{n}" if n > 1 else "gevent", "gevent", procs=n))
        elif name.startswith("prefork"):
            n = int(name.split("/")[1]) if "/" in name else workers
            out.append(Model(f"prefork/{n}", "prefork", procs=n))
        elif name == "hybrid@eqcpu":
            out.append(Model(name, "rust", rust_model="hybrid"))
        else:
            out.append(Model(name, "rust", rust_model=name))
    return out


def workload_flags(args: argparse.Namespace, rate: float, rounds: int) -> list[str]:
    flags = [
        f"--rate={rate:g}", f"--duration={args.duration:g}", f"--warmup={args.warmup:g}", f"--drain={args.drain:g}",
        f"--items={args.items}", f"--fresh={args.fresh}", f"--rounds={rounds}", f"--base-ms={args.base_ms:g}",
        f"--alpha={args.alpha:g}", f"--max-ms={args.max_ms}", f"--upstream={args.upstream}",
        f"--redis-url={args.redis_url}", f"--mysql-url={args.mysql_url}", f"--key-prefix={args.key_prefix}", "--json",
    ]
    if args.zaps:
        flags.append(f"--zaps={args.zaps}")
    return flags


def argv_for(args: argparse.Namespace, model: Model, rate: float, round_: int, timeline: Path) -> list[str]:
    rounds = model.rounds or args.rounds
    common = [*workload_flags(args, rate, rounds), f"--timeline={timeline}"]
    if model.kind == "rust":
        return [str(args.switchyard), "bench", f"--models={model.rust_model}", *common]
    script = "gevent_peer.py" if model.kind == "gevent" else "prefork_peer.py"
    count = f"--procs={model.procs}" if model.kind == "gevent" else f"--workers={model.procs}"
    return [sys.executable, str(HERE / script), count, f"--round={round_}", *common]


def run_command(argv: Sequence[str], watch_root: Callable[[int], None]) -> tuple[int, str, str]:
    """Runs ``argv``; its stderr passes through and is kept. Returns (exit code, stdout, stderr)."""
    log(f"\n$ {shlex.join(argv)}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")}
    # A session of its own: on Ctrl-C or SIGTERM the whole run (its children too) is ended below.
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env, cwd=HERE,
        start_new_session=True,
    )
    try:
        return _follow(proc, watch_root)
    except BaseException:
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        raise


def _follow(proc: subprocess.Popen, watch_root: Callable[[int], None]) -> tuple[int, str, str]:
    watch_root(proc.pid)
    err: list[str] = []

    def tee() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            err.append(line)
            sys.stderr.write(line)
        sys.stderr.flush()

    t = threading.Thread(target=tee, daemon=True)
    t.start()
    assert proc.stdout is not None
    out = proc.stdout.read()
    proc.wait()
    t.join()
    return proc.returncode, out, "".join(err)


def report_from(stdout: str) -> Optional[dict[str, Any]]:
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        with contextlib.suppress(ValueError):
            r = json.loads(line)
            if isinstance(r, dict) and set(pz1.REPORT_KEYS) <= set(r):
                return r
    return None


def num(v: Any) -> float:
    try:
        return math.nan if v is None else float(v)
    except (TypeError, ValueError):
        return math.nan


@dataclass
class Context:
    """What every run of the invocation shares."""

    args: argparse.Namespace
    stamp: str
    machine: dict[str, Any]
    commit: str
    mysql: str
    out: Any  # the JSONL file
    timelines: Path
    upstream_pid: Optional[int] = None
    mysql_pid: Optional[int] = None


def run_once(ctx: Context, model: Model, rate: float, round_: int, position: int, attempt: int) -> dict[str, Any]:
    """One run: the quiet check, the run under watch, its row (written to the JSONL)."""
    args = ctx.args
    pre = quiet_check(ctx.upstream_pid, mysql_pid=ctx.mysql_pid)
    waited = 0
    while is_disturbed(pre["steal"], pre["other_cpu"]) and waited < args.quiet_wait:
        log(f"  machine busy before the run (steal {pre['steal']:.1%}, other processes {pre['other_cpu']:.1%}); waiting")
        time.sleep(4)
        waited += 5
        pre = quiet_check(ctx.upstream_pid, mysql_pid=ctx.mysql_pid)
    safe = model.label.replace("/", "_")
    timeline = ctx.timelines / f"{safe}-{rate:g}-r{round_}-a{attempt}.jsonl"
    watch = Watch(None, ctx.upstream_pid, mysql_pid=ctx.mysql_pid)
    code, stdout, stderr = run_command(argv_for(args, model, rate, round_, timeline), watch.attach)
    seen = watch.finish()
    report = report_from(stdout)
    row: dict[str, Any] = {
        "stamp": ctx.stamp, "machine": ctx.machine, "commit": ctx.commit, "mysql": ctx.mysql,
        "label": model.label, "rate": rate, "round": round_, "order_position": position, "attempt": attempt,
        "exit_code": code,
    }
    keys = report if report is not None else {k: None for k in pz1.REPORT_KEYS}
    row.update({k: keys[k] for k in pz1.REPORT_KEYS})
    row["rate"] = rate
    row["sustains"] = report is not None and pz1.sustains(report, rate)
    alone = pz1.parse_cpu_alone_line(stderr) or {}
    row["cpu_alone_transform_ms"] = alone.get("transform_ms")
    row["cpu_alone_sha_ms"] = alone.get("sha_ms")
    row["cpu_alone_rest_ms"] = alone.get("rest_ms")
    thr = num(row["throughput"])
    cpu = num(row["cpu_per_wall_s"])
    row["cpu_ms_per_task"] = cpu / thr * 1e3 if thr > 0 and math.isfinite(cpu) else None
    row["cpu_per_task_split_ms"] = pz1.parse_cpu_per_task_line(stderr)
    scheduled = sum(1 for _ in pz1.schedule(pz1.params_from_flags(args, rate)))
    row["tasks_scheduled"] = scheduled
    row.update({k: v for k, v in seen.items()})
    row["stores_cpu_ms_per_task"] = seen["stores_cpu_s"] * 1e3 / scheduled if scheduled else None
    row["pre_steal"], row["pre_other_cpu"] = pre["steal"], pre["other_cpu"]
    row["disturbed"] = report is None or is_disturbed(seen["steal"], seen["other_cpu"])
    row["timeline"] = str(timeline.relative_to(args.results_dir)) if timeline.exists() else None
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
    ctx.out.write(json.dumps(clean, separators=(",", ":")) + "\n")
    ctx.out.flush()
    log(
        f"  => {model.label} @ {rate:g} round {round_}: throughput {fmt(thr)}, slowdown p99 "
        f"{fmt(num(row['slowdown_p99']), 3)}, {'sustains' if row['sustains'] else 'does not sustain'}; "
        f"steal {seen['steal']:.1%}, other processes {seen['other_cpu']:.1%}"
        + (f" -> DISTURBED (left out of the medians; busiest others: {seen['other_top'] or '-'})" if row["disturbed"] else "")
    )
    return clean


def run_point(ctx: Context, model: Model, rate: float, round_: int, position: int) -> list[dict[str, Any]]:
    """A run and, while it is disturbed, up to ``--disturbed-retries`` more."""
    rows = []
    for attempt in range(ctx.args.disturbed_retries + 1):
        row = run_once(ctx, model, rate, round_, position, attempt)
        rows.append(row)
        if not row["disturbed"]:
            break
    return rows


# --------------------------------------------------------------------------
# Bisection
# --------------------------------------------------------------------------


def rounded_rate(r: float) -> float:
    """Rates to 2 significant figures below 100, to whole numbers above: readable tables."""
    if r >= 100:
        return float(round(r))
    if r >= 10:
        return round(r, 1 if r < 20 else 0)
    return round(r, 2)


@dataclass
class Bisection:
    """One model's search for its ceiling between a rate it sustains (``lo``) and one
    it does not (``hi``)."""

    label: str
    start_lo: float
    start_hi: float
    tolerance: float = 1.1
    max_steps: int = 8
    min_rate: float = 0.5
    lo: Optional[float] = None
    hi: Optional[float] = None
    steps: int = 0
    note: str = ""
    tried: list[tuple[float, Optional[bool]]] = field(default_factory=list)

    def next_rate(self) -> Optional[float]:
        if self.note or self.steps >= self.max_steps:
            return None
        if self.lo is None and self.hi is None:
            return self.start_lo
        if self.lo is None:
            assert self.hi is not None
            r = rounded_rate(self.hi / 2)
            if r < self.min_rate:
                self.note = f"fails even at {self.hi:g}"
                return None
            return r
        if self.hi is None:
            return self.start_hi if self.lo < self.start_hi else rounded_rate(self.lo * 2)
        if self.hi / self.lo <= self.tolerance:
            return None
        r = rounded_rate(math.sqrt(self.lo * self.hi))
        if not self.lo < r < self.hi:
            return None  # the rates are as close as the rounding allows
        return r

    def record(self, rate: float, sustained: Optional[bool]) -> None:
        self.steps += 1
        self.tried.append((rate, sustained))
        if sustained is None:
            self.note = f"undecided at {rate:g}: every run disturbed"
        elif sustained:
            self.lo = rate if self.lo is None else max(self.lo, rate)
        else:
            self.hi = rate if self.hi is None else min(self.hi, rate)

    @property
    def done(self) -> bool:
        return self.next_rate() is None


def usable(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs that may enter a median: not disturbed."""
    return [r for r in rows if not r.get("disturbed")]


def point_verdict(rows: Sequence[dict[str, Any]]) -> Optional[bool]:
    """Whether the median run (of the undisturbed ones) sustains; ``None`` without one.
    Runs are ranked by (does not sustain, slowdown p99): the median is the middle one
    (the upper middle for an even count)."""
    ok = usable(rows)
    if not ok:
        return None
    ranked = sorted(ok, key=lambda r: (not r.get("sustains"), num(r.get("slowdown_p99")) if math.isfinite(num(r.get("slowdown_p99"))) else math.inf))
    return bool(ranked[len(ranked) // 2].get("sustains"))


Runner = Callable[[Model, float, int, int], list[dict[str, Any]]]


def run_step(points: Sequence[tuple[Model, float]], runner: Runner, repeats: int, round_no: int,
             name: str) -> tuple[dict[str, list[dict[str, Any]]], int]:
    """Runs every (model, rate) ``repeats`` times, the models' order reversed every
    round (``round_no`` counts rounds over the whole invocation). Returns each
    label's rows, tagged with the step's ``name``, and the next round number."""
    log(f"\n== {name}: " + ", ".join(f"{m.label} @ {r:g}" for m, r in points))
    got: dict[str, list[dict[str, Any]]] = {m.label: [] for m, _ in points}
    for _ in range(repeats):
        order = points if round_no % 2 == 0 else points[::-1]
        for position, (m, r) in enumerate(order):
            new = runner(m, r, round_no, position)
            for row in new:
                row["step"] = name
            got[m.label].extend(new)
        round_no += 1
    return got, round_no


def bisect_all(models: Sequence[Model], searches: dict[str, Bisection], runner: Runner, repeats: int,
               low_load: Optional[dict[str, float]] = None,
               equal_cpu_check: Optional[tuple[str, str]] = None) -> list[dict[str, Any]]:
    """Steps every search together: each step runs one point per model still
    bisecting, ``repeats`` rounds, alternating order (see ``run_step``).

    ``low_load`` (label -> rate) is a first step at low load, for the charts'
    left end and the machine's CPU ceiling; it does not move the bisections.
    ``equal_cpu_check`` = (model, reference): after the bisections, the model is
    also run at the reference's ceiling, unless it already ran there (the
    equal-CPU target asks for its slowdown up to that rate). Returns every row."""
    rows: list[dict[str, Any]] = []
    round_no = 0
    if low_load:
        points = [(m, low_load[m.label]) for m in models if m.label in low_load]
        got, round_no = run_step(points, runner, repeats, round_no, "low load")
        rows += [r for m, _ in points for r in got[m.label]]
    while True:
        points = [(m, searches[m.label].next_rate()) for m in models]
        points = [(m, r) for m, r in points if r is not None]
        if not points:
            break
        got, round_no = run_step(points, runner, repeats, round_no, "bisection")
        rows += [r for m, _ in points for r in got[m.label]]
        for m, r in points:
            verdict = point_verdict(got[m.label])
            searches[m.label].record(r, verdict)
            s = searches[m.label]
            log(f"  {m.label} @ {r:g}: {'sustained' if verdict else 'undecided' if verdict is None else 'not sustained'}"
                f" (bracket {fmt(s.lo, 0)}..{fmt(s.hi, 0)})")
    if equal_cpu_check:
        label, reference = equal_cpu_check
        model = next((m for m in models if m.label == label), None)
        rate = searches[reference].lo if reference in searches else None
        ran = {num(r["rate"]) for r in rows if r.get("label") == label}
        if model is not None and rate and rate not in ran:
            got, round_no = run_step([(model, rate)], runner, repeats, round_no, f"at {reference}'s ceiling")
            rows += got[label]
    return rows


# --------------------------------------------------------------------------
# The equal-CPU rounds
# --------------------------------------------------------------------------


def rust_cpu_alone(args: argparse.Namespace, rounds: int) -> Optional[dict[str, float]]:
    """The Rust bench's CPU step alone at ``rounds``, from a one-task run on embedded stores."""
    argv = [str(args.switchyard), "bench", "--models=hybrid", "--rate=1", "--duration=1", "--warmup=0",
            "--drain=5", f"--items={args.items}", f"--fresh={args.fresh}", f"--rounds={rounds}", "--base-ms=1",
            "--max-ms=5"]
    code, _, err = run_command(argv, lambda pid: None)
    return pz1.parse_cpu_alone_line(err) if code == 0 else None


def equal_cpu_rounds(args: argparse.Namespace, python_transform_ms: float) -> tuple[int, list[dict[str, Any]]]:
    """The ``--rounds`` at which Switchyard's transform costs what Python's does at
    ``args.rounds``: from Rust's figure at ``args.rounds`` (the SHA-256 part scales with
    the rounds, the rest does not), checked once at that value and adjusted once."""
    notes = []
    base = rust_cpu_alone(args, args.rounds)
    if not base:
        raise RuntimeError("could not read the Rust bench's CPU step alone")
    notes.append({"rounds": args.rounds, **base})
    per_round = base["sha_ms"] / args.rounds
    guess = max(1, round(args.rounds * (python_transform_ms - base["rest_ms"]) / base["sha_ms"]))
    check = rust_cpu_alone(args, guess)
    if not check:
        raise RuntimeError("could not read the Rust bench's CPU step alone")
    notes.append({"rounds": guess, **check})
    # Adjust once, by the measured cost per round at the guess.
    per_round = check["sha_ms"] / guess if check["sha_ms"] > 0 else per_round
    adjusted = max(1, round(guess + (python_transform_ms - check["transform_ms"]) / per_round))
    return adjusted, notes


# --------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------


def fmt(v: Any, digits: int = 1) -> str:
    v = num(v) if not isinstance(v, str) else v
    if isinstance(v, str):
        return v
    if not math.isfinite(v):
        return "-"
    return f"{v:.{digits}f}"


def labels_in_order(rows: Iterable[dict[str, Any]]) -> list[str]:
    seen: list[str] = []
    for r in rows:
        if r.get("label") and r["label"] not in seen:
            seen.append(r["label"])
    return seen


def stats(values: Iterable[Any]) -> Optional[tuple[float, float, float]]:
    vs = [num(v) for v in values]
    vs = [v for v in vs if math.isfinite(v)]
    if not vs:
        return None
    return statistics.median(vs), min(vs), max(vs)


def cell(values: Iterable[Any], digits: int = 1) -> str:
    s = stats(values)
    if s is None:
        return "-"
    med, lo, hi = s
    return f"{med:.{digits}f} [{lo:.{digits}f}-{hi:.{digits}f}]" if hi > lo else f"{med:.{digits}f}"


def points_of(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, float], list[dict[str, Any]]]:
    pts: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("label") and r.get("kind") != "calibration":
            pts.setdefault((r["label"], num(r["rate"])), []).append(r)
    return pts


def ceilings(rows: Sequence[dict[str, Any]]) -> dict[str, tuple[Optional[float], Optional[float]]]:
    """Per label: (highest rate sustained, lowest rate not sustained), by point verdicts."""
    out: dict[str, tuple[Optional[float], Optional[float]]] = {}
    for (label, rate), pts in sorted(points_of(rows).items()):
        lo, hi = out.get(label, (None, None))
        v = point_verdict(pts)
        if v is True:
            lo = rate if lo is None else max(lo, rate)
        elif v is False:
            hi = rate if hi is None else min(hi, rate)
        out[label] = (lo, hi)
    return out


def footer_of(meta: dict[str, Any]) -> str:
    m = meta.get("machine", {})
    return (f"{m.get('cpu_model', '?')}, {m.get('cores', '?')} cores; commit {meta.get('commit', '?')}; "
            f"invocation {meta.get('stamp', '?')}; MySQL: {str(meta.get('mysql_kind', '?')).split(' (')[0]}")


def machine_ceiling(rows: Sequence[dict[str, Any]], cores: int) -> Optional[dict[str, float]]:
    """``cores`` / CPU per task of every process a task uses (hybrid's engine and the
    Redis and MySQL servers), from hybrid's undisturbed runs at its lowest rate."""
    hyb = [r for r in usable(rows) if r.get("label") == "hybrid" and r.get("cpu_ms_per_task") is not None]
    if not hyb:
        return None
    low = min(num(r["rate"]) for r in hyb)
    at = [r for r in hyb if num(r["rate"]) == low]
    engine = statistics.median(num(r["cpu_ms_per_task"]) for r in at)
    stores = statistics.median(num(r.get("stores_cpu_ms_per_task")) for r in at)
    if not (math.isfinite(engine) and math.isfinite(stores)) or engine + stores <= 0:
        return None
    return {"rate": low, "engine_ms": engine, "stores_ms": stores, "ceiling": cores * 1e3 / (engine + stores)}


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any], charts: Sequence[str]) -> str:
    lines = ["# PZ-1: each model's ceiling, Switchyard and the Python peers, one invocation", ""]
    lines += [f"_{footer_of(meta)}_", "", "| parameter | value |", "| --- | --- |"]
    for k, v in meta.items():
        if k != "machine":
            lines.append(f"| {k} | {v} |")
    lines.append("")
    labels = labels_in_order(r for r in rows if r.get("kind") != "calibration")
    lines += [
        "Each cell: median [min-max] of the undisturbed runs; `runs` counts them (and the disturbed ones left out).",
        "CPU ms/task: the model's processes' CPU in the window per task completed (engine only; "
        "the servers' is in `servers ms/task`, over the whole run per task scheduled).",
        "",
        "| model | rate | runs | sustained | throughput/s | slowdown p99 | CPU s/s | CPU ms/task | servers ms/task "
        "| peak memory MB | steal % (all runs) | other CPU % (all runs) |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    pts = points_of(rows)
    for label in labels:
        for rate in sorted(r for (l, r) in pts if l == label):
            group = pts[(label, rate)]
            ok = usable(group)
            v = point_verdict(group)
            lines.append(
                f"| {label} | {rate:g} | {len(ok)} (+{len(group) - len(ok)}) | "
                f"{'yes' if v else 'undecided' if v is None else 'no'} | {cell(r['throughput'] for r in ok)} | "
                f"{cell((r['slowdown_p99'] for r in ok), 3)} | {cell((r['cpu_per_wall_s'] for r in ok), 2)} | "
                f"{cell((r.get('cpu_ms_per_task') for r in ok), 2)} | "
                f"{cell((r.get('stores_cpu_ms_per_task') for r in ok), 2)} | {cell(r['peak_rss_mb'] for r in ok)} | "
                f"{cell(100 * num(r.get('steal')) for r in group)} | {cell(100 * num(r.get('other_cpu')) for r in group)} |"
            )
    lines += ["", "Sustained: the median run has throughput >= 99 % of the offered rate and slowdown p99 <= 1.25.", ""]
    ceil = ceilings(rows)
    lines += ["| model | ceiling (highest rate sustained) | lowest rate not sustained | rounds | CPU step alone ms (transform = SHA-256 + rest) |",
              "| --- | ---: | ---: | ---: | --- |"]
    for label in labels:
        lo, hi = ceil.get(label, (None, None))
        mine = [r for r in rows if r.get("label") == label]
        rounds = sorted({r.get("rounds") for r in mine if r.get("rounds") is not None})
        alone = [r for r in mine if r.get("cpu_alone_transform_ms") is not None]
        alone_txt = "-"
        if alone:
            alone_txt = (
                f"{cell((r['cpu_alone_transform_ms'] for r in alone), 2)} = "
                f"{cell((r['cpu_alone_sha_ms'] for r in alone), 2)} + {cell((r['cpu_alone_rest_ms'] for r in alone), 2)}"
            )
        lines.append(f"| {label} | {fmt(lo, 0) if lo else 'none sustained'} | {fmt(hi, 0) if hi else 'none failed'} | "
                     f"{', '.join(str(x) for x in rounds)} | {alone_txt} |")
    lines.append("")
    # Ratios, from this invocation only.
    rust = [l for l in labels if not l.startswith(("gevent", "prefork"))]
    peers = [l for l in labels if l.startswith(("gevent", "prefork"))]
    ratio_lines = []
    for a in rust:
        for b in peers:
            la, lb = ceil.get(a, (None, None))[0], ceil.get(b, (None, None))[0]
            if la and lb:
                ratio_lines.append(f"| {a} / {b} | {la / lb:.2f} |")
    if ratio_lines:
        lines += ["Ceiling ratios (both ceilings from this invocation; a ceiling is a lower bound within the bisection's tolerance):", "",
                  "| ratio | value |", "| --- | ---: |", *ratio_lines, ""]
    mc = machine_ceiling(rows, int(meta.get("machine", {}).get("cores", CORES)))
    if mc:
        hyb = ceil.get("hybrid", (None, None))[0]
        share = f"; hybrid's ceiling {hyb:g}/s is {hyb / mc['ceiling']:.0%} of it" if hyb else ""
        lines += [f"The machine's CPU ceiling: {meta.get('machine', {}).get('cores', CORES)} cores / "
                  f"({mc['engine_ms']:.2f} ms hybrid's engine + {mc['stores_ms']:.2f} ms Redis and MySQL servers per task, "
                  f"measured at {mc['rate']:g}/s) = **{mc['ceiling']:.0f} tasks/s**{share}. (The upstream, a test fixture, "
                  "is left out; at the lowest rate the fixed costs weigh more per task, so this ceiling is conservative.)", ""]
    for name in charts:
        lines.append(f"![{name}]({name})")
    lines.append("")
    return "\n".join(lines)


def charts(rows: list[dict[str, Any]], meta: dict[str, Any], stem: Path, ext: str = "svg") -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    footer = footer_of(meta)
    pts = points_of(rows)
    labels = labels_in_order(r for r in rows if r.get("kind") != "calibration")
    paths: list[Path] = []

    def legend(label: str) -> str:
        """The label, with the rounds when they are not the invocation's (hybrid@eqcpu)."""
        rounds = sorted({r.get("rounds") for r in rows if r.get("label") == label and r.get("rounds") is not None})
        default = meta.get("rounds", pz1.DEFAULT_ROUNDS)
        return f"{label} (rounds {', '.join(map(str, rounds))})" if rounds and rounds != [default] else label

    def series(label: str, key: str) -> tuple[list[float], list[float], list[list[float]]]:
        xs, ys, err = [], [], [[], []]
        for rate in sorted(r for (l, r) in pts if l == label):
            s = stats(r[key] for r in usable(pts[(label, rate)]))
            if s is None:
                continue
            xs.append(rate)
            ys.append(s[0])
            err[0].append(s[0] - s[1])
            err[1].append(s[2] - s[0])
        return xs, ys, err

    def finish(fig: Any, ax: Any, name: str) -> None:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.text(0.01, 0.01, footer, fontsize=6, color="grey")
        fig.tight_layout(rect=(0, 0.03, 1, 1))
        paths.append(stem.with_name(f"{stem.name}-{name}.{ext}"))
        fig.savefig(paths[-1])
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 5))
    for label in labels:
        xs, ys, err = series(label, "slowdown_p99")
        if xs:
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=legend(label))
    ax.axhline(pz1.SUSTAIN_MAX_SLOWDOWN_P99, color="grey", linestyle="--", linewidth=1, label="sustain limit 1.25")
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain = matplotlib.ticker.FuncFormatter(lambda y, _: f"{y:g}")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(plain)
        axis.set_minor_formatter(plain)
    ax.set_ylim(bottom=0.95)
    ax.set_xlabel("offered rate (tasks/s, log)")
    ax.set_ylabel("slowdown p99 (latency / ideal, log)")
    ax.set_title("PZ-1: slowdown p99 against offered rate, to each model's collapse\n(median of the runs, bars min-max)", fontsize=10)
    finish(fig, ax, "slowdown_p99")

    fig, ax = plt.subplots(figsize=(8, 5))
    top = 0.0
    for label in labels:
        xs, ys, err = series(label, "throughput")
        if xs:
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=legend(label))
            top = max(top, *xs)
    if top:
        ax.plot([0, top], [0, top], color="grey", linestyle="--", linewidth=1, label="offered")
    ax.set_xlabel("offered rate (tasks/s)")
    ax.set_ylabel("throughput (tasks/s completed in the window)")
    ax.set_title("PZ-1: throughput against offered rate", fontsize=10)
    finish(fig, ax, "throughput")

    ceil = ceilings(rows)
    fig, ax = plt.subplots(figsize=(8, 5))
    names, values, errs, notes = [], [], [[], []], []
    for label in labels:
        lo, _ = ceil.get(label, (None, None))
        rates = sorted(r for (l, r) in pts if l == label)
        if not rates:
            continue
        rate = lo if lo is not None else rates[0]
        s = stats(r["peak_rss_mb"] for r in usable(pts.get((label, rate), [])))
        if s is None:
            continue
        names.append(legend(label).replace(" (", "\n("))
        values.append(s[0])
        errs[0].append(s[0] - s[1])
        errs[1].append(s[2] - s[0])
        notes.append(f"{rate:g}/s" + ("" if lo is not None else " (no ceiling)"))
    bars = ax.bar(range(len(names)), values, yerr=errs, capsize=3)
    ax.bar_label(bars, labels=[f"{v:.0f} MB\n{n}" for v, n in zip(values, notes)], fontsize=7)
    ax.set_xticks(range(len(names)), names, rotation=15)
    ax.set_ylabel("peak memory, MiB")
    ax.set_title("PZ-1: peak memory per model at its ceiling\n(one process: VmHWM; prefork and gevent/N: peak of the summed PSS)", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    fig.text(0.01, 0.01, footer, fontsize=6, color="grey")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    paths.append(stem.with_name(f"{stem.name}-peak_memory.{ext}"))
    fig.savefig(paths[-1])
    plt.close(fig)
    return paths


def timeline_charts(rows: list[dict[str, Any]], meta: dict[str, Any], results_dir: Path, stem: Path, ext: str) -> list[Path]:
    """Per-second charts of each model's first undisturbed run at its ceiling and at
    the lowest rate it did not sustain."""
    import timeline_chart

    out = stem.with_name(stem.name + "-timelines")
    paths = []
    pts = points_of(rows)
    for label, (lo, hi) in ceilings(rows).items():
        for rate in (lo, hi):
            if rate is None:
                continue
            run = next((r for r in usable(pts.get((label, rate), [])) if r.get("timeline")), None)
            if run is None:
                continue
            path = results_dir / run["timeline"]
            if path.exists():
                paths += timeline_chart.chart_file(path, out, None, footer_of(meta), ext, label=label)
    return paths


def render(jsonl: Path, ext: str = "svg") -> Path:
    rows = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines() if line.strip()]
    stem = jsonl.with_suffix("")
    meta_path = stem.with_name(stem.name + ".meta.json")
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
    chart_paths = charts(rows, meta, stem, ext) if rows else []
    with contextlib.suppress(Exception):
        tl = timeline_charts(rows, meta, jsonl.parent, stem, ext)
        chart_paths += tl
    md_path = stem.with_suffix(".md")
    md_path.write_text(markdown(rows, meta, [str(p.relative_to(jsonl.parent)) for p in chart_paths]), encoding="utf-8")
    return md_path


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def parse_brackets(text: str) -> dict[str, tuple[float, float]]:
    out = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, _, rng = part.rpartition("=")
        lo, _, hi = rng.partition(":")
        if not name or not (0 < float(lo) < float(hi)):
            raise argparse.ArgumentTypeError(f"bad bracket {part!r}: want MODEL=LO:HI with 0 < LO < HI")
        out[name] = (float(lo), float(hi))
    return out


def binary_mtime(path: Path) -> str:
    try:
        return dt.datetime.fromtimestamp(path.stat().st_mtime).isoformat(timespec="seconds")
    except OSError:
        return "?"


def redis_parser() -> str:
    """The reply parser redis-py uses here (hiredis when installed)."""
    try:
        import redis.connection

        return f"redis-py {__import__('redis').__version__}, parser {redis.connection.DefaultParser.__name__}"
    except Exception as e:  # pragma: no cover
        return f"unknown ({e})"


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--smoke", action="store_true",
                   help="a quick check: one step (each model at its bracket's low end, 10/s unless --bracket), "
                        "8 s runs, warmup 3, drain 10, repeats 1. A check of the machinery, not a measure: in a "
                        "5 s window the throughput of a fixed schedule can fall a few tasks short of the offered "
                        "rate (tasks still in flight at the window's end), so a model may show 'not sustained' there")
    p.add_argument("--models", default=None,
                   help="comma-separated (default hybrid,hybrid/1,reactor-only,gevent/<cores>,prefork/<workers>,hybrid@eqcpu)")
    p.add_argument("--bracket", type=parse_brackets, default={},
                   help="start brackets MODEL=LO:HI,... (a rate expected to sustain, one expected not to); "
                        f"defaults: {', '.join(f'{k}={a:g}:{b:g}' for k, (a, b) in DEFAULT_BRACKETS.items())}")
    p.add_argument("--low-load", type=float, default=None,
                   help="first run every model at this fraction of its bracket's low end, for the charts' "
                        "left end and the machine's CPU ceiling (default 0.25; 0: none)")
    p.add_argument("--tolerance", type=float, default=1.1, help="stop a bisection when hi / lo is at most this")
    p.add_argument("--max-steps", type=int, default=None, help="most points per model (default 8)")
    p.add_argument("--repeats", type=int, default=None, help="runs of every point (default 3)")
    p.add_argument("--disturbed-retries", type=int, default=None, help="reruns of a disturbed run (default 2; smoke 1)")
    p.add_argument("--quiet-wait", type=float, default=30.0, help="seconds to wait at most for a quiet machine before a run")
    p.add_argument("--duration", type=float, default=None, help="seconds of releases per run (default 60)")
    p.add_argument("--warmup", type=float, default=None, help="seconds left out of the figures (default 5)")
    p.add_argument("--drain", type=float, default=None, help="seconds to wait for released tasks (default 30)")
    p.add_argument("--zaps", type=int, default=None, help="zaps (default 2 x rate)")
    p.add_argument("--items", type=int, default=pz1.DEFAULT_ITEMS)
    p.add_argument("--fresh", type=int, default=pz1.DEFAULT_FRESH)
    p.add_argument("--rounds", type=int, default=pz1.DEFAULT_ROUNDS)
    p.add_argument("--base-ms", type=float, default=pz1.DEFAULT_BASE_MS)
    p.add_argument("--alpha", type=float, default=pz1.DEFAULT_ALPHA)
    p.add_argument("--max-ms", type=int, default=pz1.DEFAULT_MAX_MS)
    p.add_argument("--eqcpu-rounds", type=int, default=None, help="hybrid@eqcpu's --rounds (default: calibrated)")
    p.add_argument("--switchyard", type=Path, default=ROOT / "target" / "release" / "switchyard", help="the release binary")
    p.add_argument("--upstream", default=None, help="use this upstream instead of starting one")
    p.add_argument("--redis-url", default=os.environ.get("PZ1_REDIS_URL", "redis://127.0.0.1:6379/"))
    p.add_argument("--mysql-url", default=os.environ.get("PZ1_MYSQL_URL"),
                   help="MySQL to use (default: a private MariaDB on tmpfs, started and deleted here)")
    p.add_argument("--key-prefix", default=pz1.DEFAULT_KEY_PREFIX, help="seen-set key prefix (cleared by each run)")
    p.add_argument("--workers", type=int, default=16, help="prefork worker processes")
    p.add_argument("--results-dir", type=Path, default=HERE / "results")
    p.add_argument("--chart-format", choices=("svg", "png"), default="svg")
    p.add_argument("--render", type=Path, default=None, metavar="FILE.jsonl", help="only redraw an earlier invocation")
    args = p.parse_args(argv)
    args.switchyard = args.switchyard.resolve()
    args.results_dir = args.results_dir.resolve()

    if args.render:
        print(render(args.render, args.chart_format).read_text(encoding="utf-8"))
        return 0

    for key in ("duration", "warmup", "drain"):
        if getattr(args, key) is None:
            setattr(args, key, SMOKE[key] if args.smoke else getattr(pz1, f"DEFAULT_{key.upper()}_S"))
    args.repeats = args.repeats or (SMOKE["repeats"] if args.smoke else 3)
    args.max_steps = args.max_steps or (SMOKE["max_steps"] if args.smoke else 8)
    if args.low_load is None:
        args.low_load = 0.0 if args.smoke else 0.25
    if args.disturbed_retries is None:
        args.disturbed_retries = 1 if args.smoke else 2
    models = parse_models(args.models or f"hybrid,hybrid/1,reactor-only,gevent/{CORES},prefork/{args.workers},hybrid@eqcpu",
                          CORES, args.workers)
    pz1.params_from_flags(args, 1.0).validate()
    if any(m.kind == "rust" for m in models) and not args.switchyard.exists():
        p.error(f"{args.switchyard} not found: build it with `cargo build --release -p switchyard-cli`")

    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S") + ("-smoke" if args.smoke else "")
    jsonl = args.results_dir / f"{stamp}.jsonl"
    timelines = args.results_dir / f"{stamp}-runs"
    timelines.mkdir(exist_ok=True)

    # Ctrl-C and SIGTERM end the invocation through `finally`: services stopped, tmpfs deleted.
    def on_term(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    started = time.monotonic()
    mariadb: Optional[PrivateMariaDB] = None
    upstream: Optional[Upstream] = None
    try:
        if args.mysql_url is None:
            mariadb = PrivateMariaDB()
            args.mysql_url = mariadb.url
            mysql_kind = mariadb.describe()
        else:
            mysql_kind = "given by --mysql-url / PZ1_MYSQL_URL"
        log(f"MySQL: {mysql_kind}; {redis_parser()}")
        if args.upstream is None:
            upstream = Upstream(args.switchyard, args.results_dir / f"{stamp}-upstream.log")
            args.upstream = upstream.url
        log(f"upstream at {args.upstream}")

        # The CPU step alone, Python's in this interpreter (the peers' own lines are kept per run too).
        # Python's figure drifts by tens of percent within minutes on these VMs (Rust's
        # hardly moves), so it is the median of several, each logged and kept.
        py_runs = [pz1.calibrate_cpu_alone(pz1.params_from_flags(args, 1.0)) for _ in range(PY_CALIBRATIONS)]
        for run in py_runs:
            log("Python (this interpreter):" + run.line())
        py_alone = sorted(py_runs, key=lambda c: c.transform_s)[len(py_runs) // 2]
        log(f"Python, the median of {len(py_runs)}:" + py_alone.line())
        calibration: list[dict[str, Any]] = []
        for m in list(models):
            if m.label == "hybrid@eqcpu":
                if args.eqcpu_rounds:
                    rounds = args.eqcpu_rounds
                else:
                    rounds, calibration = equal_cpu_rounds(args, py_alone.transform_s * 1e3)
                models[models.index(m)] = dataclasses.replace(m, rounds=rounds)
                log(f"hybrid@eqcpu: --rounds {rounds} (Python's transform at {args.rounds} rounds: "
                    f"{py_alone.transform_s * 1e3:.3f} ms; Rust calibration: {calibration})")

        machine = machine_info()
        commit = git_commit()
        meta = {
            "stamp": stamp, "date": dt.datetime.now().isoformat(timespec="seconds"), "commit": commit, "machine": machine,
            "cpu": f"{machine['cpu_model']}, {machine['cores']} cores", "mysql_kind": mysql_kind, "redis": args.redis_url,
            "redis client": redis_parser(),
            "switchyard binary": f"{args.switchyard} (built {binary_mtime(args.switchyard)})", "models": ", ".join(f"{m.label}" + (f" (--rounds {m.rounds})" if m.rounds else "") for m in models),
            "duration_s": args.duration, "warmup_s": args.warmup, "drain_s": args.drain, "repeats": args.repeats,
            "tolerance": args.tolerance, "max_steps": args.max_steps, "rounds": args.rounds, "items": args.items,
            "fresh": args.fresh, "base_ms": args.base_ms, "alpha": args.alpha, "max_ms": args.max_ms,
            "python CPU step alone, each calibration (ms)": ", ".join(f"{c.transform_s * 1e3:.3f}" for c in py_runs),
            "python CPU step alone (ms, this interpreter, median)": f"transform {py_alone.transform_s * 1e3:.3f} = SHA-256 "
            f"{py_alone.sha_s * 1e3:.3f} + rest {py_alone.overhead_s * 1e3:.3f}",
            "eqcpu calibration (Rust CPU step alone)": json.dumps(calibration),
            "disturbed": f"steal or other processes' CPU > {DISTURBED_SHARE:.0%} of the machine during the run",
        }
        jsonl.with_name(jsonl.stem + ".meta.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")

        searches = {}
        for m in models:
            lo, hi = args.bracket.get(m.label) or args.bracket.get(m.family) or (
                SMOKE_BRACKET if args.smoke else DEFAULT_BRACKETS.get(m.label) or DEFAULT_BRACKETS[m.family])
            searches[m.label] = Bisection(m.label, lo, hi, args.tolerance, args.max_steps)
        with jsonl.open("w", encoding="utf-8") as out:
            ctx = Context(args, stamp, machine, commit, mysql_kind, out, timelines,
                          upstream.proc.pid if upstream else None,
                          mariadb.proc.pid if mariadb and mariadb.proc else None)

            def runner(m: Model, rate: float, round_: int, position: int) -> list[dict[str, Any]]:
                if upstream is not None and upstream.proc.poll() is not None:
                    raise RuntimeError(f"the upstream exited ({upstream.proc.returncode}); see its log")
                return run_point(ctx, m, rate, round_, position)

            low_load = {m.label: rounded_rate(searches[m.label].start_lo * args.low_load)
                        for m in models if args.low_load > 0}
            gevent = next((m.label for m in models if m.family == "gevent"), None)
            bisect_all(models, searches, runner, args.repeats, low_load,
                       ("hybrid@eqcpu", gevent) if gevent else None)
        for m in models:
            s = searches[m.label]
            log(f"ceiling {m.label}: {fmt(s.lo, 0) if s.lo else 'none'} (not sustained at {fmt(s.hi, 0) if s.hi else '-'})"
                + (f"; {s.note}" if s.note else ""))
    except KeyboardInterrupt:
        log("interrupted: stopping the services")
        raise
    finally:
        if upstream is not None:
            upstream.stop()
        if mariadb is not None:
            mariadb.stop()
    md_path = render(jsonl, args.chart_format)
    print(md_path.read_text(encoding="utf-8"))
    log(f"results: {jsonl}\ntable and charts: {md_path} (took {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
