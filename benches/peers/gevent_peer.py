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
process. During the run the parent only waits for the children's results (and
samples /proc once a second), so it is left out of the figures: CPU is summed
over the children, and ``peak_rss_mb`` is the peak of the children's summed PSS
(``/proc/PID/smaps_rollup``), sampled once a second. With one process, CPU and
``peak_rss_mb`` (``VmHWM``) are that process's, as in ``switchyard bench``.

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
import dataclasses  # noqa: E402
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
    CallLog,
    CpuWindow,
    Pipeline,
    SecondSampler,
    add_workload_args,
    emit_report,
    http_timeout,
    log,
    mysql_connect_kwargs,
    params_from_args,
    peak_rss_mib,
    prepare_stores,
    pss_mib,
    timeline_lines,
    write_timeline,
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
    #: Time each client call (for --timeline).
    timeline: bool = False


@dataclass
class ShardResult:
    """What one process ran: records as tuples (see ``TaskRecord.as_tuple``)."""

    records: list[tuple]
    scheduled: int  # this process's share of the schedule
    failures: list[str]
    #: Client calls as (kind, end seconds after t0, duration s), when timed.
    calls: list[tuple] = dataclasses.field(default_factory=list)


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
        self.calls = CallLog(enabled=cfg.timeline)
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
            calls=self.calls,
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
        calls = [(kind, end - t0, dur) for kind, end, dur in self.calls.take()]
        return ShardResult(self._records, len(mine), self._failures, calls)

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


@dataclass
class Measured:
    """A run's result and what /proc said of it."""

    result: ShardResult
    cpu_per_wall_s: float
    peak_rss_mb: float
    seconds: list  # SecondSampler.seconds


def _samplers(window: CpuWindow, seconds: SecondSampler) -> None:
    """Greenlet (one process): samples the CPU window at its edges and the timeline each
    second, until killed."""
    while True:
        due = min(d for d in (window.due(), seconds.due()) if d is not None)
        gevent.sleep(max(0.0, due - time.monotonic()))
        now = time.monotonic()
        window.poll(now)
        seconds.poll(now)


def run_in_process(cfg: ShardConfig) -> Measured:
    """``--procs 1``: the whole schedule in this process."""
    shard = Shard(cfg)
    shard.warm_up_clients()
    t0 = time.monotonic() + START_MARGIN_S
    window = CpuWindow(t0, cfg.params, lambda: [os.getpid()])
    seconds = SecondSampler(t0, lambda: [os.getpid()])
    sampler = gevent.spawn(_samplers, window, seconds)
    result = shard.run(t0)
    sampler.kill(block=True, timeout=1)
    window.poll()
    seconds.poll()
    shard.close()
    rss = peak_rss_mib(os.getpid()) or float("nan")
    log(f"gevent: peak RSS (VmHWM) {rss:.1f} MiB, peak PSS {seconds.peak_pss_mib:.1f} MiB")
    # The once-a-second /proc samples are measurement, not the workload.
    p = cfg.params
    sampling = seconds.cost_between(t0 + p.warmup_s, t0 + p.duration_s) / (p.duration_s - p.warmup_s)
    return Measured(result, window.cpu_per_wall_s() - sampling, rss, seconds.seconds)


@dataclass
class _Child:
    process: multiprocessing.process.BaseProcess
    outbox: multiprocessing.connection.Connection  # child -> parent
    inbox: multiprocessing.connection.Connection  # parent -> child


def run_fleet(base: ShardConfig, procs: int) -> Measured:
    """``--procs N``: N spawned children, one shard each; this process orchestrates only.

    The parent's own CPU and memory are left out of the figures: from ``t0`` on it
    only waits for the children's results and samples /proc once a second."""
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
        pids = [c.process.pid for c in children if c.process.pid is not None]
        window = CpuWindow(t0, base.params, lambda: pids)
        seconds = SecondSampler(t0, lambda: pids)
        for c in children:
            c.inbox.send(("start", t0))
        results: dict[int, ShardResult] = {}
        waiting = {c.outbox: i for i, c in enumerate(children)}
        sentinels = {c.process.sentinel: c for c in children}
        while waiting:
            due = min(d for d in (window.due(), seconds.due()) if d is not None)
            ready = multiprocessing.connection.wait([*waiting, *sentinels], max(0.0, due - time.monotonic()))
            now = time.monotonic()
            window.poll(now)
            seconds.poll(now)
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
        seconds.sample_pss()
        # Every child is alive and idle now: their peak RSS, for reference.
        hwm = sum(peak_rss_mib(pid) or 0.0 for pid in pids)
        parent = pss_mib(os.getpid())
        log(
            f"gevent/{procs}: peak of the children's summed PSS {seconds.peak_pss_mib:.1f} MiB "
            f"(reported); their summed peak RSS (VmHWM) {hwm:.1f} MiB; the idle parent's PSS, "
            f"left out: {parent if parent is not None else float('nan'):.1f} MiB"
        )
        merged = ShardResult([], 0, [])
        for i in sorted(results):
            merged.records.extend(results[i].records)
            merged.scheduled += results[i].scheduled
            merged.failures.extend(results[i].failures)
            merged.calls.extend(results[i].calls)
        return Measured(merged, window.cpu_per_wall_s(), seconds.peak_pss_mib, seconds.seconds)
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
    parser.add_argument("--round", type=int, default=0, help="the round this run belongs to (timeline tag)")
    args = parser.parse_args(argv)
    if args.procs < 1 or args.concurrency < 1 or args.mysql_pool < 1 or args.redis_pool < 1:
        parser.error("--procs, --concurrency, --mysql-pool and --redis-pool must be at least 1")
    params = params_from_args(args)
    model = "gevent" if args.procs == 1 else f"gevent/{args.procs}"

    prepare_stores(args.redis_url, args.mysql_url, args.key_prefix)
    # CPU time measured alone, in this process, before the run: the same
    # transform (with its yields) that the tasks run.
    cpu_alone = pz1.calibrate_cpu_alone(params, between_items=yield_to_hub)
    cpu_alone_s = cpu_alone.transform_s
    log(cpu_alone.line())
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
        timeline=args.timeline is not None,
    )
    scheduled = sum(1 for _ in pz1.schedule(params))
    log(
        f"{model} at {params.rate:g} tasks/s: {scheduled} tasks over {params.resolved_zaps()} zaps, "
        f"CPU alone {cpu_alone_s * 1e3:.2f} ms per poll"
    )
    measured = run_in_process(cfg) if args.procs == 1 else run_fleet(cfg, args.procs)
    result = measured.result

    records = [pz1.TaskRecord.from_tuple(t) for t in result.records]
    report = pz1.summarise(params, model, cpu_alone_s, records, measured.cpu_per_wall_s, measured.peak_rss_mb)
    if report["throughput"] > 0:
        log(f"  CPU per task in the window: {report['cpu_per_wall_s'] / report['throughput'] * 1e3:.3f} ms")
    if args.timeline:
        tag = {"run": model, "model": model, "rate": params.rate, "round": args.round}
        write_timeline(
            args.timeline, timeline_lines(tag, params, cpu_alone_s, records, result.calls, measured.seconds)
        )
    unfinished = result.scheduled - len(records)
    log(f"{model}: {len(records)} finished, {unfinished} unfinished at the drain deadline")
    for f in result.failures[:MAX_FAILURE_SAMPLES]:
        log(f"  failure: {f}")
    emit_report(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
