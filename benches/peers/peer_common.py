"""What the two Python peers of PZ-1 share: command-line flags, store setup, the
task's steps against real HTTP/Redis/MySQL, and process accounting from /proc.

The task (:class:`Pipeline`) is plain synchronous code on ``requests``,
``redis-py`` and ``PyMySQL``: the prefork peer runs it as is, one task per
worker process; the gevent peer runs it in greenlets after monkey-patching,
passing a cooperative MySQL pool and a ``between_items`` hook that yields to
the hub during the transform. It mirrors ``engine/pipeline/src/pipeline.rs`` step by
step: poll, transform, seen check, actions one at a time oldest first, mark
delivered ids seen, one row in ``pz_runs`` (failed or not).

Nothing here patches or imports gevent, so importing it is safe before or
after ``monkey.patch_all()``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import queue
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterator, NamedTuple, Optional, Sequence
from urllib.parse import unquote, urlparse

import pymysql
import redis
import requests

import pz1

# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def add_workload_args(parser: argparse.ArgumentParser) -> None:
    """The spec's parameters and the store/upstream flags, named as ``switchyard bench``'s."""
    g = parser.add_argument_group("PZ-1 parameters (as `switchyard bench`)")
    g.add_argument("--rate", type=float, default=pz1.DEFAULT_RATE, help="tasks released per second")
    g.add_argument(
        "--duration", type=float, default=pz1.DEFAULT_DURATION_S, help="seconds during which tasks are released"
    )
    g.add_argument(
        "--warmup", type=float, default=pz1.DEFAULT_WARMUP_S, help="seconds at the start left out of the figures"
    )
    g.add_argument(
        "--drain",
        type=float,
        default=pz1.DEFAULT_DRAIN_S,
        help="seconds to wait for released tasks after the last release",
    )
    g.add_argument("--zaps", type=int, default=None, help="number of zaps (default: 2 x rate)")
    g.add_argument("--items", type=int, default=pz1.DEFAULT_ITEMS, help="events per poll")
    g.add_argument("--fresh", type=int, default=pz1.DEFAULT_FRESH, help="new events per poll after the first")
    g.add_argument("--rounds", type=int, default=pz1.DEFAULT_ROUNDS, help="SHA-256 rounds per item (the CPU knob)")
    g.add_argument(
        "--base-ms", type=float, default=pz1.DEFAULT_BASE_MS, help="scale of the upstream delay distribution, ms"
    )
    g.add_argument(
        "--alpha", type=float, default=pz1.DEFAULT_ALPHA, help="tail index of the upstream delay distribution"
    )
    g.add_argument("--max-ms", type=int, default=pz1.DEFAULT_MAX_MS, help="cap of one upstream delay, ms")
    s = parser.add_argument_group("upstream and stores")
    s.add_argument("--upstream", required=True, help="base URL of a PZ-1 upstream (`switchyard upstream`)")
    s.add_argument("--redis-url", required=True, help="Redis for the seen-sets, e.g. redis://127.0.0.1:6379/")
    s.add_argument("--mysql-url", required=True, help="MySQL for pz_runs, e.g. mysql://root@127.0.0.1:3306/test")
    s.add_argument(
        "--key-prefix", default=pz1.DEFAULT_KEY_PREFIX, help="prefix of the seen-set keys (cleared at start)"
    )
    s.add_argument("--run-id-prefix", default="peer-", help="prefix of the run_id written to pz_runs")
    s.add_argument(
        "--http-timeout", type=float, default=None, help="seconds one upstream call may take; None: max-ms + 10 s"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line with exactly the spec's keys")
    parser.add_argument(
        "--timeline",
        default=None,
        metavar="FILE",
        help="append the run's per-second timeline to FILE (JSON lines, `switchyard bench --timeline`'s columns)",
    )


def params_from_args(args: argparse.Namespace) -> pz1.Params:
    """The run's parameters; exits with a message naming the flag when one is bad."""
    params = pz1.params_from_flags(args, args.rate)
    try:
        return params.validate()
    except pz1.ParamsError as e:
        flag = e.field.removesuffix("_s").replace("_", "-")
        sys.exit(f"error: {e}; fix `--{flag}`")


def http_timeout(args: argparse.Namespace) -> tuple[float, float]:
    """(connect, read) timeout of one upstream call."""
    read = args.http_timeout if args.http_timeout else args.max_ms / 1000.0 + 10.0
    return (5.0, read)


def emit_report(report: dict[str, Any], as_json: bool) -> None:
    """Prints the report: the spec's JSON line, or an aligned listing for people."""
    if as_json:
        print(pz1.report_json(report), flush=True)
    else:
        for key in pz1.REPORT_KEYS:
            v = report[key]
            print(f"{key:>18}  {v:.3f}" if isinstance(v, float) else f"{key:>18}  {v}")
        sys.stdout.flush()


def log(msg: str) -> None:
    """One progress line on stderr (stdout carries the report)."""
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Stores
# --------------------------------------------------------------------------

#: How long a zap's seen-set outlives its last write (as the Rust stores).
SEEN_TTL_S = 7 * 24 * 3600
#: Longest error text stored in a row (the column is VARCHAR(255)).
MAX_ERROR_CHARS = 250


def runs_table_ddl(table: str = pz1.PZ_RUNS_TABLE) -> str:
    """The same DDL as ``runs_table_ddl`` in ``engine/pipeline/src/store/mysql.rs``."""
    return f"""CREATE TABLE IF NOT EXISTS {table} (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    run_id VARCHAR(64) NOT NULL,
    zap VARCHAR(64) NOT NULL,
    seq BIGINT NOT NULL,
    items INT NOT NULL,
    new_items INT NOT NULL,
    latency_ms DOUBLE NOT NULL,
    status VARCHAR(32) NOT NULL,
    error VARCHAR(255) NULL,
    created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    KEY run_zap_seq (run_id, zap, seq)
)"""


def mysql_connect_kwargs(url: str) -> dict[str, Any]:
    """PyMySQL ``connect()`` arguments from ``mysql://user:password@host:port/db``.

    ``autocommit=True``: every INSERT stands alone, as with mysql_async.
    """
    u = urlparse(url)
    if u.scheme not in ("mysql", "mariadb"):
        raise ValueError(f"not a mysql:// URL: {url!r}")
    return {
        "host": u.hostname or "127.0.0.1",
        "port": u.port or 3306,
        "user": unquote(u.username) if u.username else "root",
        "password": unquote(u.password) if u.password else "",
        "database": u.path.lstrip("/") or None,
        "autocommit": True,
        "connect_timeout": 5,
        "read_timeout": 30,
        "write_timeout": 30,
        "charset": "utf8mb4",
    }


def prepare_stores(redis_url: str, mysql_url: str, key_prefix: str) -> None:
    """Creates ``pz_runs`` if missing and deletes this prefix's seen-sets, so a run
    never finds ids from an earlier one (as ``switchyard bench`` does)."""
    conn = pymysql.connect(**mysql_connect_kwargs(mysql_url))
    try:
        with conn.cursor() as cur:
            cur.execute(runs_table_ddl())
    finally:
        conn.close()
    client = redis.Redis.from_url(redis_url)
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{key_prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                client.delete(*batch)
                batch.clear()
        if batch:
            client.delete(*batch)
    finally:
        client.close()


class BoundedPool:
    """A small bounded pool of PyMySQL connections, created lazily.

    ``queue_factory`` makes the queue of free slots: ``queue.LifoQueue`` in a
    plain process, ``gevent.queue.LifoQueue`` under gevent (a greenlet waiting for
    a connection then yields to the hub). A connection is taken only for one
    statement (:meth:`connection`), never across an HTTP call. A connection
    that raised is closed and its slot refilled lazily; one idle for longer than
    ``ping_after_idle_s`` is pinged (reconnecting if the server dropped it).
    """

    def __init__(
        self,
        connect_kwargs: dict[str, Any],
        size: int,
        queue_factory: Callable[[], Any] = queue.LifoQueue,
        acquire_timeout_s: float = 30.0,
        ping_after_idle_s: float = 60.0,
    ) -> None:
        if size < 1:
            raise ValueError("pool size must be at least 1")
        self._kwargs = dict(connect_kwargs)
        self._free = queue_factory()
        for _ in range(size):
            self._free.put((None, 0.0))  # an empty slot: connect on first use
        self._timeout = acquire_timeout_s
        self._ping_after = ping_after_idle_s

    @contextlib.contextmanager
    def connection(self) -> Iterator[pymysql.connections.Connection]:
        """Lends a connection for one statement."""
        try:
            conn, last_used = self._free.get(timeout=self._timeout)
        except Exception as e:  # queue.Empty or gevent's equivalent
            raise TimeoutError(f"no MySQL connection free within {self._timeout} s") from e
        try:
            if conn is None:
                conn = pymysql.connect(**self._kwargs)
            elif time.monotonic() - last_used > self._ping_after:
                conn.ping(reconnect=True)
            yield conn
        except BaseException:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            self._free.put((None, 0.0))
            raise
        else:
            self._free.put((conn, time.monotonic()))

    def close(self) -> None:
        """Closes the idle connections."""
        while True:
            try:
                conn, _ = self._free.get(block=False)
            except Exception:
                return
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()


# --------------------------------------------------------------------------
# The task
# --------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one task did."""

    ok: bool
    requests: int = 0
    items: int = 0
    new_items: int = 0
    failure: Optional[str] = None


class TaskFailed(Exception):
    """A task failed at ``stage`` (``poll_failed``, ``transform_failed``, ``store_failed``, ``action_failed``)."""

    def __init__(self, stage: str, cause: BaseException | str) -> None:
        super().__init__(f"{stage.replace('_', ' ')}: {cause}")
        self.stage = stage


class Pipeline:
    """One PZ-1 task on ``requests``, ``redis-py`` and PyMySQL (see the module doc)."""

    INSERT = (
        f"INSERT INTO {pz1.PZ_RUNS_TABLE} (run_id, zap, seq, items, new_items, latency_ms, status, error) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
    )

    def __init__(
        self,
        base_url: str,
        params: pz1.Params,
        session: requests.Session,
        redis_client: redis.Redis,
        mysql: BoundedPool,
        run_id: str,
        key_prefix: str,
        timeout: tuple[float, float],
        between_items: Optional[Callable[[], Any]] = None,
        calls: Optional["CallLog"] = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.params = params
        self.session = session
        self.redis = redis_client
        self.mysql = mysql
        self.run_id = run_id
        self.key_prefix = key_prefix
        self.timeout = timeout
        self.between_items = between_items
        #: Where each Redis, MySQL and upstream call's (end, duration) goes, for --timeline.
        self.calls = calls

    def _timed(self, kind: str) -> "contextlib.AbstractContextManager[None]":
        return self.calls.timed(kind) if self.calls is not None else contextlib.nullcontext()

    def run(self, zap: str, seq: int, release_monotonic: float) -> Outcome:
        """Runs the task and records it in ``pz_runs``, failed or not. Never raises
        (except ``GreenletExit``/``KeyboardInterrupt``, which are not ``Exception``)."""
        done = Outcome(ok=False)
        status, error = "ok", None
        try:
            self._execute(zap, seq, done)
        except TaskFailed as e:
            status, error = e.stage, str(e)
        except Exception as e:  # a bug, not a workload failure: still recorded
            status, error = "failed", f"unexpected {type(e).__name__}: {e}"
        latency_ms = (time.monotonic() - release_monotonic) * 1e3
        try:
            with self.mysql.connection() as conn, conn.cursor() as cur, self._timed("mysql"):
                cur.execute(
                    self.INSERT,
                    (
                        self.run_id,
                        zap,
                        seq,
                        done.items,
                        done.new_items,
                        latency_ms,
                        status,
                        error[:MAX_ERROR_CHARS] if error else None,
                    ),
                )
        except Exception as e:
            if error is None:
                status, error = "store_failed", str(TaskFailed("store_failed", e))
        done.ok = status == "ok"
        done.failure = error
        return done

    def _delay(self, zap: str, seq: int, step: int) -> int:
        p = self.params
        return pz1.delay_ms(zap, seq, step, p.base_ms, p.alpha, p.max_ms)

    def _execute(self, zap: str, seq: int, done: Outcome) -> None:
        p = self.params
        poll_delay = self._delay(zap, seq, 0)
        done.requests += 1
        url = f"{self.base_url}/poll/{zap}?seq={seq}&n={p.items}&fresh={p.fresh}&delay_ms={poll_delay}"
        try:
            with self._timed("upstream"):
                response = self.session.get(url, timeout=self.timeout)
                body = response.content
            response.raise_for_status()
        except requests.RequestException as e:
            raise TaskFailed("poll_failed", e) from None

        try:
            transformed = pz1.transform_poll(body, p.rounds, self.between_items)
        except pz1.TransformError as e:
            raise TaskFailed("transform_failed", e) from None
        done.items = len(transformed)
        ids = [t.id for t in transformed]
        key = f"{self.key_prefix}{zap}"

        if seq == 1:
            # The first poll seeds the seen-set and fires nothing.
            self._mark_seen(key, ids)
            return
        try:
            with self._timed("redis"):
                seen = self.redis.smismember(key, ids) if ids else []
        except redis.RedisError as e:
            raise TaskFailed("store_failed", e) from None
        # The poll lists items newest first; actions fire oldest first.
        new = [t for t, was_seen in zip(transformed, seen, strict=True) if not was_seen][::-1]

        delivered: list[str] = []
        failure: Optional[BaseException] = None
        headers = {"content-type": "application/json"}
        for step, item in enumerate(new, start=1):
            action_delay = self._delay(zap, seq, step)
            done.requests += 1
            url = f"{self.base_url}/action/{zap}?delay_ms={action_delay}"
            try:
                with self._timed("upstream"):
                    r = self.session.post(
                        url, data=pz1.action_body(item).encode(), headers=headers, timeout=self.timeout
                    )
                r.raise_for_status()
            except requests.RequestException as e:
                failure = e
                break
            delivered.append(item.id)
        done.new_items = len(delivered)
        # An id is marked seen only after its action succeeded: at-least-once.
        self._mark_seen(key, delivered)
        if failure is not None:
            raise TaskFailed("action_failed", failure)

    def _mark_seen(self, key: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        try:
            with self._timed("redis"):
                pipe = self.redis.pipeline(transaction=False)
                pipe.sadd(key, *ids)
                pipe.expire(key, SEEN_TTL_S)
                pipe.execute()
        except redis.RedisError as e:
            raise TaskFailed("store_failed", e) from None


# --------------------------------------------------------------------------
# Process accounting
# --------------------------------------------------------------------------

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> Optional[float]:
    """User + system CPU seconds of process ``pid`` (all its threads), from /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime (fields 14, 15)


def pss_mib(pid: int) -> Optional[float]:
    """Proportional set size of ``pid`` now, MiB: each page shared by n processes counts
    1/n, so summing PSS over forked workers counts their shared pages once."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii", errors="replace") as f:
            kib = pz1.parse_pss_kib(f.read())
    except OSError:
        return None
    return None if kib is None else kib / 1024.0


def peak_rss_mib(pid: int) -> Optional[float]:
    """Peak resident set size of ``pid`` so far (``VmHWM``), MiB."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


class CpuWindow:
    """CPU seconds of a set of processes over the measured window ``[t0+warmup, t0+duration)``.

    The orchestrating loop calls :meth:`poll` whenever it wakes, and wakes by
    :meth:`due` at the latest; each boundary is sampled once, the first time
    ``poll`` sees it passed.
    """

    def __init__(self, t0: float, params: pz1.Params, pids: Callable[[], Sequence[int]]) -> None:
        self._at = (t0 + params.warmup_s, t0 + params.duration_s)
        self._window = params.duration_s - params.warmup_s
        self._pids = pids
        self._samples: list[Optional[float]] = [None, None]

    def due(self) -> Optional[float]:
        """The monotonic time of the next sample, or ``None`` when both are taken."""
        for at, sample in zip(self._at, self._samples, strict=True):
            if sample is None:
                return at
        return None

    def poll(self, now: Optional[float] = None) -> None:
        now = time.monotonic() if now is None else now
        for i, at in enumerate(self._at):
            if self._samples[i] is None and now >= at:
                self._samples[i] = sum(c for c in (cpu_seconds(pid) for pid in self._pids()) if c is not None)

    def cpu_per_wall_s(self) -> float:
        a, b = self._samples
        return math.nan if a is None or b is None else (b - a) / self._window


class MachineCpu(NamedTuple):
    """The machine-wide counters of ``/proc/stat``'s ``cpu`` line, in clock ticks."""

    total: int
    steal: int
    idle: int  # idle + iowait

    @staticmethod
    def parse(stat: str) -> Optional["MachineCpu"]:
        for line in stat.splitlines():
            if line.startswith("cpu "):
                fields = [int(f) for f in line.split()[1:9]]
                if len(fields) < 8:
                    return None
                return MachineCpu(sum(fields), fields[7], fields[3] + fields[4])
        return None

    @staticmethod
    def read() -> Optional["MachineCpu"]:
        try:
            with open("/proc/stat", encoding="ascii") as f:
                return MachineCpu.parse(f.read())
        except OSError:
            return None

    def steal_share(self, later: "MachineCpu") -> Optional[float]:
        total = later.total - self.total
        return (later.steal - self.steal) / total if total > 0 else None

    def busy_share(self, later: "MachineCpu") -> Optional[float]:
        total = later.total - self.total
        return (total - (later.idle - self.idle)) / total if total > 0 else None


class CallLog:
    """Each Redis, MySQL and upstream call's ``(kind, end_monotonic, duration_s)``, for --timeline.
    A ``CallLog(enabled=False)`` records nothing."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.calls: list[tuple[str, float, float]] = []

    @contextlib.contextmanager
    def timed(self, kind: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        start = time.monotonic()
        try:
            yield
        finally:
            end = time.monotonic()
            self.calls.append((kind, end, end - start))

    def take(self) -> list[tuple[str, float, float]]:
        calls, self.calls = self.calls, []
        return calls


class SecondSampler:
    """Once a second from ``t0``: the CPU seconds of ``pids()`` in that second, the machine's
    busy and stolen shares, and the sum of their PSS (its peak kept for ``peak_rss_mb``).
    The orchestrating loop calls :meth:`poll` whenever it wakes and wakes by :meth:`due`."""

    def __init__(self, t0: float, pids: Callable[[], Sequence[int]], pss: bool = True) -> None:
        self._t0 = t0
        self._pids = pids
        self._pss = pss
        self._next = t0
        self._cpu: Optional[float] = None
        self._machine: Optional[MachineCpu] = None
        self.seconds: list[dict[str, Optional[float]]] = []
        self.peak_pss_mib = math.nan
        #: (monotonic time, thread CPU seconds) each sample cost this process.
        self._costs: list[tuple[float, float]] = []

    def cost_between(self, start: float, end: float) -> float:
        """CPU seconds the samples taken in ``[start, end)`` cost the sampling process:
        what its CPU figures should leave out (the measurement is not the workload)."""
        return sum(c for at, c in self._costs if start <= at < end)

    def due(self) -> float:
        return self._next

    def sample_pss(self) -> float:
        """Sums the processes' PSS now (and keeps the peak); MiB."""
        total = sum(v for v in (pss_mib(pid) for pid in self._pids()) if v is not None)
        if not math.isfinite(self.peak_pss_mib) or total > self.peak_pss_mib:
            self.peak_pss_mib = total
        return total

    def poll(self, now: Optional[float] = None) -> None:
        now = time.monotonic() if now is None else now
        if now < self._next:
            return
        spent = time.thread_time()
        self._poll(now)
        self._costs.append((now, time.thread_time() - spent))

    def _poll(self, now: float) -> None:
        cpu = sum(c for c in (cpu_seconds(pid) for pid in self._pids()) if c is not None)
        machine = MachineCpu.read()
        if self._cpu is not None:
            prev = self._machine
            self.seconds.append(
                {
                    "process_cpu_s": round(cpu - self._cpu, 4),
                    "machine_busy": None if prev is None or machine is None else prev.busy_share(machine),
                    "steal": None if prev is None or machine is None else prev.steal_share(machine),
                }
            )
        self._cpu, self._machine = cpu, machine
        if self._pss:
            self.sample_pss()
        # The next whole second after t0 (a late wake-up skips, never bunches).
        self._next = self._t0 + math.floor(now - self._t0) + 1.0


def timeline_lines(
    tag: dict[str, Any],
    params: pz1.Params,
    cpu_alone_s: float,
    records: Sequence[pz1.TaskRecord],
    calls: Sequence[tuple[str, float, float]],
    seconds: Sequence[dict[str, Optional[float]]],
) -> list[dict[str, Any]]:
    """One dict per second of the run, in ``switchyard bench --timeline``'s columns where a
    Python peer has them: tasks by the second they finished in (``t`` counts from the
    schedule's start), each client call by the second it ended in (``calls``: kind,
    seconds after the start, duration), and the sampled process and machine CPU.
    Columns a peer cannot have (CPU queue, reactor lag, in flight) are left out."""
    figures = pz1.task_figures(params, cpu_alone_s, records)
    last = max([int(max(0.0, f[0])) + 1 for f in figures] + [int(max(0.0, c[1])) + 1 for c in calls] + [0])
    n = max(last, len(seconds))
    tasks: list[list[tuple[float, bool, float, float]]] = [[] for _ in range(n)]
    for f in figures:
        tasks[int(max(0.0, f[0]))].append(f)
    by_kind: dict[str, list[list[float]]] = {k: [[] for _ in range(n)] for k in ("redis", "mysql", "upstream")}
    for kind, end, dur in calls:
        by_kind[kind][int(max(0.0, end))].append(dur * 1e3)

    def num(v: Optional[float]) -> Optional[float]:
        return v if v is not None and math.isfinite(v) else None

    out = []
    for t in range(n):
        ok = [f for f in tasks[t] if f[1]]
        lat = sorted(f[2] for f in ok)
        slow = sorted(f[3] for f in ok)
        line: dict[str, Any] = {**tag, "t": t, "completions": len(ok), "failures": len(tasks[t]) - len(ok)}
        for q, name in ((50, "p50"), (99, "p99")):
            line[f"latency_{name}_ms"] = num(pz1.percentile(lat, q))
            line[f"slowdown_{name}"] = num(pz1.percentile(slow, q))
        line["slowdown_max"] = num(slow[-1] if slow else None)
        for kind, per_second in by_kind.items():
            values = sorted(per_second[t])
            line[f"{kind}_calls"] = len(values)
            for q, name in ((50, "p50"), (99, "p99"), (100, "max")):
                v = pz1.percentile(values, q)
                line[f"{kind}_{name}_ms"] = None if v is None else round(v, 3)
        if t < len(seconds):
            for key, v in seconds[t].items():
                line[key] = num(v)
        out.append(line)
    return out


def write_timeline(path: str, lines: Sequence[dict[str, Any]]) -> None:
    """Appends the lines to ``path`` in one write (JSON lines)."""
    import json

    text = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)


def failure_line(where: str) -> str:
    """The current exception, on one line, for a failure sample."""
    return f"{where}: {traceback.format_exc(limit=1).strip().splitlines()[-1]}"
