"""PZ-1 on gevent: the Python peer a team would ship after reading gevent's docs.

One process (or ``--procs N`` of them) runs a gevent ``Pool`` of greenlets over
monkey-patched ``requests`` (one ``Session`` whose ``HTTPAdapter`` pool is sized
to the greenlet pool), ``redis-py`` (a bounded ``BlockingConnectionPool``) and
PyMySQL (a small bounded pool of connections on a ``gevent.queue``, taken only
for the INSERT). The transform yields with ``gevent.sleep(0)`` between items,
which is what a team adds after seeing one poll's hashing stall every other
greenlet.

The open-loop schedule is PZ-1's: task ``i`` is released at ``t0 + i/rate``,
latency counts from that release, and a zap's polls are serial (each zap's
polls run one after another in one greenlet). After the last release the run
waits up to ``--drain`` seconds, then summarises exactly as ``switchyard bench``.

With ``--procs N`` the parent only orchestrates: it prepares the stores,
calibrates, starts N children with the ``spawn`` start method (a fresh
interpreter each, which monkey-patches before anything else: no fork of a
process whose hub, threadpool and sockets are already live), and passes them a
common ``t0``. Zap ``z`` goes to child ``z mod N``, so a zap's polls stay in one
process. Latencies are merged, CPU is summed over the parent and the children,
and RSS is the fleet's: the sum of every process's peak RSS (``VmHWM``).

    python gevent_peer.py --upstream http://127.0.0.1:PORT \\
        --redis-url redis://127.0.0.1:6379/ --mysql-url mysql://root@127.0.0.1:3306/test \\
        --rate 50 --procs 2 --json
"""

from gevent import monkey

monkey.patch_all()

# Everything else is imported after patching, on purpose.
import argparse  # noqa: E402
import collections  # noqa: E402
import contextlib  # noqa: E402
import multiprocessing  # noqa: E402
import multiprocessing.connection  # noqa: E402
import multiprocessing.process  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Optional  # noqa: E402

import gevent  # noqa: E402
import gevent.pool  # noqa: E402
import gevent.queue  # noqa: E402
import redis  # noqa: E402
import requests  # noqa: E402
from requests.adapters import HTTPAdapter  # noqa: E402

import pz1  # noqa: E402
from peer_common import (  # noqa: E402
    BoundedPool,
    CpuWindow,
    Pipeline,
    add_workload_args,
    emit_report,
    http_timeout,
    log,
    mysql_connect_kwargs,
    params_from_args,
    peak_rss_mib,
    prepare_stores,
)

#: Seconds between the children's "ready" and the common start, so every child
#: is waiting for t0 when it comes.
START_MARGIN_S = 0.5
#: Failure reasons kept per process, for the operator.
MAX_FAILURE_SAMPLES = 5


def yield_to_hub() -> None:
    """The transform's ``between_items`` hook: let other greenlets run."""
    gevent.sleep(0)


@dataclass(frozen=True)
class ShardConfig:
    """Everything one process needs to run its share of the schedule (picklable)."""

    params: pz1.Params
    upstream: str
    redis_url: str
    mysql_url: str
    key_prefix: str
    run_id: str
    concurrency: int
    mysql_pool: int
    redis_pool: int
    timeout: tuple[float, float]
    shard: int = 0
    shards: int = 1


@dataclass
class ShardResult:
    """What one process ran: records as tuples (see ``TaskRecord.as_tuple``)."""

    records: list[tuple]
    scheduled: int  # this process's share of the schedule
    failures: list[str]


class Shard:
    """One process's greenlets, clients and share of the schedule."""

    def __init__(self, cfg: ShardConfig) -> None:
        self.cfg = cfg
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=cfg.concurrency, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.redis = redis.Redis(
            connection_pool=redis.BlockingConnectionPool.from_url(
                cfg.redis_url, max_connections=cfg.redis_pool, timeout=30
            )
        )
        self.mysql = BoundedPool(mysql_connect_kwargs(cfg.mysql_url), cfg.mysql_pool, gevent.queue.LifoQueue)
        self.pipeline = Pipeline(
            cfg.upstream,
            cfg.params,
            self.session,
            self.redis,
            self.mysql,
            cfg.run_id,
            cfg.key_prefix,
            cfg.timeout,
            between_items=yield_to_hub,
        )
        self.pool = gevent.pool.Pool(cfg.concurrency)
        # Touched only by greenlets of this process' one hub: cooperative, never
        # preempted between a check and its update, so no locks are needed.
        self._pending: dict[str, collections.deque[pz1.Task]] = {}
        self._records: list[tuple] = []
        self._failures: list[str] = []

    def warm_up_clients(self) -> None:
        """Checks the stores answer before the clock starts (a bad URL fails fast)."""
        self.redis.ping()
        with self.mysql.connection() as conn:
            conn.ping(reconnect=False)

    def mine(self, task: pz1.Task) -> bool:
        """Zap ``z`` belongs to shard ``z mod shards``."""
        zap_index = task.index % self.cfg.params.resolved_zaps()
        return zap_index % self.cfg.shards == self.cfg.shard

    def run(self, t0: float) -> ShardResult:
        """Releases this shard's tasks on the schedule from ``t0`` (monotonic), then drains.

        Nothing runs past the drain deadline (``t0 + duration + drain``): a task
        not finished by then counts as not completed, as in ``switchyard bench``.
        """
        params = self.cfg.params
        deadline = t0 + params.duration_s + params.drain_s
        mine = [task for task in pz1.schedule(params) if self.mine(task)]
        for task in mine:
            wait = t0 + task.release_s - time.monotonic()
            if wait > 0:
                gevent.sleep(wait)
            queue = self._pending.get(task.zap)
            if queue:  # the zap's runner is busy: it picks this poll up next
                queue.append(task)
                continue
            if self.pool.full():
                # Every greenlet is busy: wait for one (the backlog shows as
                # latency, counted from the release), but not past the deadline.
                self.pool.wait_available(timeout=max(0.0, deadline - time.monotonic()))
                if self.pool.full():
                    break
            self._pending[task.zap] = collections.deque([task])
            self.pool.spawn(self._zap_runner, task.zap, t0, deadline)
        self.pool.join(timeout=max(0.0, deadline - time.monotonic()))
        if len(self.pool):
            log(f"gevent shard {self.cfg.shard}: {len(self.pool)} zaps still busy at the drain deadline")
            self.pool.kill(block=True, timeout=5)
        return ShardResult(self._records, len(mine), self._failures)

    def _zap_runner(self, zap: str, t0: float, deadline: float) -> None:
        """Runs the zap's queued polls one after another (its polls are serial)."""
        queue = self._pending[zap]
        try:
            while queue and time.monotonic() < deadline:
                task = queue[0]
                start = time.monotonic()
                outcome = self.pipeline.run(task.zap, task.seq, t0 + task.release_s)
                end = time.monotonic()
                queue.popleft()
                if end > deadline:
                    break  # finished after the drain deadline: not completed
                self._records.append(
                    pz1.TaskRecord(
                        task.index, task.release_s, start - t0, end - t0, outcome.ok, outcome.requests
                    ).as_tuple()
                )
                if outcome.failure and len(self._failures) < MAX_FAILURE_SAMPLES:
                    self._failures.append(f"{task.zap}/{task.seq}: {outcome.failure}")
        finally:
            if not queue:
                del self._pending[zap]

    def close(self) -> None:
        self.session.close()
        self.redis.close()
        self.mysql.close()


def _child_main(
    inbox: multiprocessing.connection.Connection, outbox: multiprocessing.connection.Connection, cfg: ShardConfig
) -> None:
    """A child process: set up, say ready, wait for t0, run, report, wait to be released.

    Runs in a ``spawn``-ed interpreter, which imported this module (and so
    monkey-patched) before calling this. ``inbox`` and ``outbox`` are one-way
    OS pipes, blocking as ``Connection`` expects (a duplex ``Pipe`` is a
    socketpair, which a patched parent would have made non-blocking). The child
    reads them only while none of its greenlets runs.
    """
    try:
        shard = Shard(cfg)
        shard.warm_up_clients()
        outbox.send(("ready", os.getpid()))
        kind, t0 = inbox.recv()
        assert kind == "start", kind
        result = shard.run(t0)
        shard.close()
        outbox.send(("done", result))
    except Exception:
        outbox.send(("error", traceback.format_exc()))
        return
    # Stay alive until the parent has read our peak RSS.
    with contextlib.suppress(EOFError, OSError, KeyboardInterrupt):
        inbox.recv()


def _cpu_sampler(window: CpuWindow) -> None:
    """Greenlet: samples the CPU window at its boundaries (in-process runs)."""
    while (due := window.due()) is not None:
        gevent.sleep(max(0.0, due - time.monotonic()))
        window.poll()


def run_in_process(cfg: ShardConfig) -> tuple[ShardResult, float, float]:
    """``--procs 1``: the whole schedule in this process. Returns (result, cpu/s, RSS MiB)."""
    shard = Shard(cfg)
    shard.warm_up_clients()
    t0 = time.monotonic() + START_MARGIN_S
    window = CpuWindow(t0, cfg.params, lambda: [os.getpid()])
    sampler = gevent.spawn(_cpu_sampler, window)
    result = shard.run(t0)
    sampler.join(timeout=1)
    window.poll()
    shard.close()
    return result, window.cpu_per_wall_s(), peak_rss_mib(os.getpid()) or float("nan")


@dataclass
class _Child:
    process: multiprocessing.process.BaseProcess
    outbox: multiprocessing.connection.Connection  # child -> parent
    inbox: multiprocessing.connection.Connection  # parent -> child


def run_fleet(base: ShardConfig, procs: int) -> tuple[ShardResult, float, float]:
    """``--procs N``: N spawned children, one shard each; this process orchestrates only."""
    ctx = multiprocessing.get_context("spawn")
    children: list[_Child] = []
    try:
        for i in range(procs):
            inbox_r, inbox_w = ctx.Pipe(duplex=False)
            outbox_r, outbox_w = ctx.Pipe(duplex=False)
            cfg = ShardConfig(**{**base.__dict__, "shard": i, "shards": procs})
            p = ctx.Process(target=_child_main, args=(inbox_r, outbox_w, cfg), name=f"gevent-shard-{i}", daemon=True)
            p.start()
            inbox_r.close()
            outbox_w.close()
            children.append(_Child(p, outbox_r, inbox_w))
        for c in children:
            if not c.outbox.poll(120):
                raise RuntimeError(f"{c.process.name} did not get ready in 120 s")
            kind, detail = c.outbox.recv()
            if kind != "ready":
                raise RuntimeError(f"{c.process.name} failed to start:\n{detail}")
        t0 = time.monotonic() + START_MARGIN_S
        pids = [os.getpid(), *(c.process.pid for c in children if c.process.pid is not None)]
        window = CpuWindow(t0, base.params, lambda: pids)
        for c in children:
            c.inbox.send(("start", t0))
        results: dict[int, ShardResult] = {}
        waiting = {c.outbox: i for i, c in enumerate(children)}
        sentinels = {c.process.sentinel: c for c in children}
        while waiting:
            due = window.due()
            timeout = None if due is None else max(0.0, due - time.monotonic())
            ready = multiprocessing.connection.wait([*waiting, *sentinels], timeout)
            window.poll()
            for obj in ready:
                if obj in waiting:
                    i = waiting.pop(obj)
                    kind, detail = obj.recv()
                    if kind != "done":
                        raise RuntimeError(f"{children[i].process.name} failed:\n{detail}")
                    results[i] = detail
                elif obj in sentinels and sentinels[obj].outbox in waiting:
                    c = sentinels[obj]
                    raise RuntimeError(f"{c.process.name} exited early (exit code {c.process.exitcode})")
        window.poll()
        # Every child is alive and idle now: read the fleet's peak RSS.
        rss = sum(peak_rss_mib(pid) or 0.0 for pid in pids)
        merged = ShardResult([], 0, [])
        for i in sorted(results):
            merged.records.extend(results[i].records)
            merged.scheduled += results[i].scheduled
            merged.failures.extend(results[i].failures)
        return merged, window.cpu_per_wall_s(), rss
    finally:
        for c in children:
            with contextlib.suppress(OSError):
                c.inbox.send(("exit", None))
        for c in children:
            c.process.join(timeout=10)
            if c.process.is_alive():
                c.process.terminate()
                c.process.join(timeout=5)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add_workload_args(parser)
    parser.add_argument("--procs", type=int, default=1, help="processes, each with its own hub and pools")
    parser.add_argument("--concurrency", type=int, default=1000, help="greenlets per process (gevent Pool size)")
    parser.add_argument("--mysql-pool", type=int, default=10, help="MySQL connections per process")
    parser.add_argument("--redis-pool", type=int, default=50, help="Redis connections per process")
    args = parser.parse_args(argv)
    if args.procs < 1 or args.concurrency < 1 or args.mysql_pool < 1 or args.redis_pool < 1:
        parser.error("--procs, --concurrency, --mysql-pool and --redis-pool must be at least 1")
    params = params_from_args(args)
    model = "gevent" if args.procs == 1 else f"gevent/{args.procs}"

    prepare_stores(args.redis_url, args.mysql_url, args.key_prefix)
    # CPU time measured alone, in this process, before the run: the same
    # transform (with its yields) that the tasks run.
    cpu_alone_s = pz1.calibrate_cpu_alone(params, 15, yield_to_hub)
    cfg = ShardConfig(
        params=params,
        upstream=args.upstream,
        redis_url=args.redis_url,
        mysql_url=args.mysql_url,
        key_prefix=args.key_prefix,
        run_id=f"{args.run_id_prefix}{model}-{args.rate:g}-{os.getpid()}",
        concurrency=args.concurrency,
        mysql_pool=args.mysql_pool,
        redis_pool=args.redis_pool,
        timeout=http_timeout(args),
    )
    scheduled = sum(1 for _ in pz1.schedule(params))
    log(
        f"{model} at {params.rate:g} tasks/s: {scheduled} tasks over {params.resolved_zaps()} zaps, "
        f"CPU alone {cpu_alone_s * 1e3:.2f} ms per poll"
    )
    if args.procs == 1:
        result, cpu_per_wall_s, rss = run_in_process(cfg)
    else:
        result, cpu_per_wall_s, rss = run_fleet(cfg, args.procs)

    records = [pz1.TaskRecord.from_tuple(t) for t in result.records]
    report = pz1.summarise(params, model, cpu_alone_s, records, cpu_per_wall_s, rss)
    unfinished = result.scheduled - len(records)
    log(f"{model}: {len(records)} finished, {unfinished} unfinished at the drain deadline")
    for f in result.failures[:MAX_FAILURE_SAMPLES]:
        log(f"  failure: {f}")
    emit_report(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
