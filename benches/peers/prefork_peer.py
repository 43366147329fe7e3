"""PZ-1 on the Celery-prefork shape: N synchronous worker processes fed by a dispatcher.

Each worker is a plain, synchronous Python process that runs one task at a
time with ``requests`` (one ``Session``), ``redis-py`` and one PyMySQL
connection (used only for the INSERT), exactly as a Celery task body would.
Workers are forked from the dispatcher (Celery's default pool) after the
dispatcher has closed every connection it used, and pull from one shared
queue as soon as they are free (Celery's ``-O fair``, prefetch 1).

The dispatcher keeps PZ-1's open-loop schedule: task ``i`` is released at
``t0 + i/rate`` and its latency counts from there, however long it waits in the
queue. A zap's polls are serial: the dispatcher holds a zap's next poll until
the worker running the previous one reported it done. After the last release
it waits up to ``--drain`` seconds, then summarises exactly as
``switchyard bench``. CPU is summed over the dispatcher and every worker (read
from /proc at the window's edges: the dispatcher does real work, keeping the
schedule and the queues). ``peak_rss_mb`` is the peak, over once-a-second
samples, of the PSS (``/proc/PID/smaps_rollup``) summed over the dispatcher and
every worker: each page the forked processes share counts once in all, where
summed RSS would count it once per process (printed on stderr for reference).

    python prefork_peer.py --upstream http://127.0.0.1:PORT \\
        --redis-url redis://127.0.0.1:6379/ --mysql-url mysql://root@127.0.0.1:3306/test \\
        --rate 20 --workers 16 --json
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import multiprocessing
import os
import queue
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any, Optional

import redis
import requests

import pz1
from peer_common import (
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
    timeline_lines,
    write_timeline,
)

#: Seconds between the workers' "ready" and the common start.
START_MARGIN_S = 0.5
#: Failure reasons kept, for the operator.
MAX_FAILURE_SAMPLES = 5
#: Longest the dispatcher sleeps without looking at its clock.
MAX_TICK_S = 0.05


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker needs (inherited through fork)."""

    params: pz1.Params
    upstream: str
    redis_url: str
    mysql_url: str
    key_prefix: str
    run_id: str
    timeout: tuple[float, float]
    #: Time each client call (for --timeline).
    timeline: bool = False


def worker_main(cfg: WorkerConfig, tasks: Any, results: Any) -> None:
    """One prefork worker: one task at a time until it reads ``None``.

    Messages in: ``(index, zap, seq, release_monotonic)``. Messages out:
    ``("ready", pid)``, then ``("done", index, start, end, ok, requests, failure, calls)``
    per task, with monotonic times (one clock for every process on the host);
    ``calls`` are the task's timed client calls (empty without --timeline).
    """
    try:
        session = requests.Session()
        client = redis.Redis.from_url(cfg.redis_url)
        mysql = BoundedPool(mysql_connect_kwargs(cfg.mysql_url), 1)
        calls = CallLog(enabled=cfg.timeline)
        pipeline = Pipeline(
            cfg.upstream, cfg.params, session, client, mysql, cfg.run_id, cfg.key_prefix, cfg.timeout, calls=calls
        )
        client.ping()
        with mysql.connection() as conn:
            conn.ping(reconnect=False)
    except Exception:
        results.put(("error", os.getpid(), traceback.format_exc()))
        return
    results.put(("ready", os.getpid()))
    while True:
        msg = tasks.get()
        if msg is None:
            break
        index, zap, seq, release = msg
        start = time.monotonic()
        outcome = pipeline.run(zap, seq, release)
        end = time.monotonic()
        results.put(("done", index, start, end, outcome.ok, outcome.requests, outcome.failure, calls.take()))
    session.close()
    client.close()
    mysql.close()


@dataclass
class RunResult:
    records: list[pz1.TaskRecord]
    released: int
    failures: list[str]
    cpu_per_wall_s: float
    peak_rss_mb: float
    calls: list[tuple[str, float, float]]
    seconds: list


class Dispatcher:
    """Keeps the schedule, holds each zap's next poll until the previous is done,
    and gathers what the workers report."""

    def __init__(self, cfg: WorkerConfig, workers: int) -> None:
        self.cfg = cfg
        self.params = cfg.params
        ctx = multiprocessing.get_context("fork")
        self.tasks = ctx.Queue()
        self.results = ctx.Queue()
        self.procs = [
            ctx.Process(target=worker_main, args=(cfg, self.tasks, self.results), name=f"prefork-{i}", daemon=True)
            for i in range(workers)
        ]

    def run(self) -> RunResult:
        params = self.params
        for p in self.procs:
            p.start()
        try:
            return self._run(params)
        finally:
            self._stop()

    def _run(self, params: pz1.Params) -> RunResult:
        ready = 0
        while ready < len(self.procs):
            try:
                msg = self.results.get(timeout=120)
            except queue.Empty:
                raise RuntimeError("prefork workers did not get ready in 120 s") from None
            if msg[0] == "error":
                raise RuntimeError(f"worker {msg[1]} failed to start:\n{msg[2]}")
            ready += 1

        t0 = time.monotonic() + START_MARGIN_S
        pids = [os.getpid(), *(p.pid for p in self.procs if p.pid is not None)]
        window = CpuWindow(t0, params, lambda: pids)
        seconds = SecondSampler(t0, lambda: pids)
        calls: list[tuple[str, float, float]] = []
        zaps = params.resolved_zaps()
        busy = [False] * zaps
        held: list[collections.deque[pz1.Task]] = [collections.deque() for _ in range(zaps)]
        by_index: dict[int, pz1.Task] = {}
        records: list[pz1.TaskRecord] = []
        failures: list[str] = []
        released = outstanding = 0
        schedule = pz1.schedule(params)
        upcoming: Optional[pz1.Task] = next(schedule, None)
        deadline = t0 + params.duration_s + params.drain_s

        def send(task: pz1.Task) -> None:
            busy[task.index % zaps] = True
            by_index[task.index] = task
            self.tasks.put((task.index, task.zap, task.seq, t0 + task.release_s))

        while upcoming is not None or outstanding:
            now = time.monotonic()
            if now >= deadline:
                break
            # Release everything due.
            while upcoming is not None and t0 + upcoming.release_s <= now:
                released += 1
                outstanding += 1
                z = upcoming.index % zaps
                if busy[z]:
                    held[z].append(upcoming)
                else:
                    send(upcoming)
                upcoming = next(schedule, None)
            window.poll(now)
            seconds.poll(now)
            wake = min(
                t
                for t in (
                    deadline,
                    window.due(),
                    seconds.due(),
                    None if upcoming is None else t0 + upcoming.release_s,
                )
                if t is not None
            )
            try:
                msg = self.results.get(timeout=min(MAX_TICK_S, max(0.0, wake - time.monotonic())))
            except queue.Empty:
                continue
            while True:
                kind, index, start, end, ok, requests_made, failure, task_calls = msg
                calls.extend((k, e - t0, d) for k, e, d in task_calls)
                task = by_index.pop(index)
                outstanding -= 1
                if end <= deadline:  # one finished after the drain deadline is not completed
                    records.append(pz1.TaskRecord(index, task.release_s, start - t0, end - t0, ok, requests_made))
                if failure and len(failures) < MAX_FAILURE_SAMPLES:
                    failures.append(f"{task.zap}/{task.seq}: {failure}")
                z = index % zaps
                busy[z] = False
                if held[z]:
                    send(held[z].popleft())
                try:
                    msg = self.results.get_nowait()
                except queue.Empty:
                    break
        window.poll()
        seconds.sample_pss()
        # Every worker is alive (busy or idle): their peak RSS, for reference.
        hwm = sum(peak_rss_mib(pid) or 0.0 for pid in pids)
        log(
            f"prefork/{len(self.procs)}: peak of the summed PSS of the dispatcher and workers "
            f"{seconds.peak_pss_mib:.1f} MiB (reported); their summed peak RSS (VmHWM) {hwm:.1f} MiB"
        )
        # The once-a-second /proc samples (PSS above all) are measurement, not the workload.
        window_s = params.duration_s - params.warmup_s
        sampling = seconds.cost_between(t0 + params.warmup_s, t0 + params.duration_s) / window_s
        return RunResult(
            records,
            released,
            failures,
            window.cpu_per_wall_s() - sampling,
            seconds.peak_pss_mib,
            calls,
            seconds.seconds,
        )

    def _stop(self) -> None:
        """Asks idle workers to exit; ends the ones still stuck in a task."""
        with contextlib.suppress(Exception):
            while True:
                self.tasks.get_nowait()  # tasks never started
        for _ in self.procs:
            self.tasks.put(None)
        end = time.monotonic() + 5
        for p in self.procs:
            p.join(timeout=max(0.0, end - time.monotonic()))
        for p in self.procs:
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
        self.tasks.close()
        self.results.close()
        self.tasks.cancel_join_thread()
        self.results.cancel_join_thread()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add_workload_args(parser)
    parser.add_argument(
        "--workers", type=int, default=16, help="worker processes (Celery's --concurrency), each one task at a time"
    )
    parser.add_argument("--round", type=int, default=0, help="the round this run belongs to (timeline tag)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    params = params_from_args(args)
    model = f"prefork/{args.workers}"

    prepare_stores(args.redis_url, args.mysql_url, args.key_prefix)
    # CPU time measured alone, in the dispatcher, before the workers exist.
    cpu_alone = pz1.calibrate_cpu_alone(params)
    cpu_alone_s = cpu_alone.transform_s
    log(cpu_alone.line())
    cfg = WorkerConfig(
        params=params,
        upstream=args.upstream,
        redis_url=args.redis_url,
        mysql_url=args.mysql_url,
        key_prefix=args.key_prefix,
        run_id=f"{args.run_id_prefix}{model}-{args.rate:g}-{os.getpid()}",
        timeout=http_timeout(args),
        timeline=args.timeline is not None,
    )
    scheduled = sum(1 for _ in pz1.schedule(params))
    log(
        f"{model} at {params.rate:g} tasks/s: {scheduled} tasks over {params.resolved_zaps()} zaps, "
        f"CPU alone {cpu_alone_s * 1e3:.2f} ms per poll"
    )
    result = Dispatcher(cfg, args.workers).run()
    report = pz1.summarise(params, model, cpu_alone_s, result.records, result.cpu_per_wall_s, result.peak_rss_mb)
    if report["throughput"] > 0:
        log(f"  CPU per task in the window: {report['cpu_per_wall_s'] / report['throughput'] * 1e3:.3f} ms")
    if args.timeline:
        tag = {"run": model, "model": model, "rate": params.rate, "round": args.round}
        write_timeline(
            args.timeline, timeline_lines(tag, params, cpu_alone_s, result.records, result.calls, result.seconds)
        )
    log(
        f"{model}: {len(result.records)} finished, {result.released - len(result.records)} "
        "unfinished at the drain deadline"
    )
    for f in result.failures:
        log(f"  failure: {f}")
    emit_report(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
