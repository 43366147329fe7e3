"""PZ-1: each model's ceiling found by bisection, Switchyard against the Python
peers, in one invocation on one machine.

Models (``--models``): Switchyard's ``hybrid``, ``hybrid/1`` and ``reactor-only``
(each run is ``switchyard bench --models M --json --timeline F`` against real
Redis and MySQL), ``gevent/<cores>`` (``gevent_peer.py --procs <cores>``),
``prefork/<W>`` (``prefork_peer.py --workers W``, 16 by default), and
``hybrid@eqcpu``: ``hybrid`` at the ``--rounds`` that make its CPU step alone cost
what Python's costs at the default 400 rounds (calibrated in this invocation).

For every model, the ceiling (the highest rate it sustains: >= 99 % of the tasks
released in the window completed, and slowdown p99 <= 1.25) is bisected between a rate it
sustains and one it does not, from a start bracket per model (``--bracket``):
the lower end is halved while it fails, the upper doubled while it sustains,
then the geometric middle is tried until ``hi / lo <= --tolerance`` or
``--max-steps`` points. Each step runs one point per model still bisecting,
``--repeats`` times, models alternating order every round, so every ratio comes
from this invocation; a point is sustained when its median run is. A first step
runs every model at low load (``--low-load``, a quarter of its bracket's low
end): the charts' left end, and the runs the machine's CPU ceiling is taken
from. A last step runs ``hybrid@eqcpu`` at gevent's ceiling, where the
equal-CPU target reads its slowdown. Then the tail study: ``--tail-runs`` runs
(10 by default) of ``hybrid`` at each of ``--tail-fractions`` of its ceiling
(a quarter, a half and 80 %), rates alternating, each with its timeline: the
issue's tail target is slowdown p99 <= 1.10 in at least 9 of 10 runs at every
rate up to 80 % of the ceiling.

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
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import pz1
from bisection import Bisection, bisect_all, rounded_rate, tail_study
from compare_base import CORES, DISTURBED_SHARE, HERE, ROOT, fmt, log, num
from machine_watch import Watch, git_commit, is_disturbed, machine_info, quiet_check
from report import TAIL_MODEL, render
from services import PrivateMariaDB, Upstream


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


def run_once(ctx: Context, model: Model, rate: float, round_: int, position: int, attempt: int,
             step: str) -> dict[str, Any]:
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
        "label": model.label, "rate": rate, "step": step, "round": round_, "order_position": position, "attempt": attempt,
        "exit_code": code,
    }
    keys = report if report is not None else {k: None for k in pz1.REPORT_KEYS}
    row.update({k: keys[k] for k in pz1.REPORT_KEYS})
    row["rate"] = rate
    row["sustains"] = report is not None and pz1.sustains(report)
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


def run_point(ctx: Context, model: Model, rate: float, round_: int, position: int, step: str) -> list[dict[str, Any]]:
    """A run and, while it is disturbed, up to ``--disturbed-retries`` more."""
    rows = []
    for attempt in range(ctx.args.disturbed_retries + 1):
        row = run_once(ctx, model, rate, round_, position, attempt, step)
        rows.append(row)
        if not row["disturbed"]:
            break
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
# Main
# --------------------------------------------------------------------------


def parse_fractions(text: str) -> tuple[float, ...]:
    """``0.25,0.5,0.8``: fractions of a ceiling, each in (0, 1]."""
    try:
        out = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not out or any(not 0 < f <= 1 for f in out):
        raise argparse.ArgumentTypeError(f"every fraction must be in (0, 1]: {text!r}")
    return out


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
                        "8 s runs, warmup 3, drain 10, repeats 1. A check of the machinery, not a measure: "
                        "a 5 s window holds too few tasks for a tail figure")
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
    p.add_argument("--tail-runs", type=int, default=None,
                   help="after the bisections, runs of hybrid at each --tail-fractions of its ceiling (default 10; smoke 0)")
    p.add_argument("--tail-fractions", type=parse_fractions, default=(0.25, 0.5, 0.8),
                   help="fractions of hybrid's ceiling the tail study runs at (default 0.25,0.5,0.8)")
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
    if args.tail_runs is None:
        args.tail_runs = 0 if args.smoke else 10
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
            "tolerance": args.tolerance, "max_steps": args.max_steps,
            "tail study": f"{args.tail_runs} runs of {TAIL_MODEL} at each of {', '.join(f'{f:g}' for f in args.tail_fractions)} x its ceiling"
            if args.tail_runs else "none", "rounds": args.rounds, "items": args.items,
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

            def runner(m: Model, rate: float, round_: int, position: int, step: str) -> list[dict[str, Any]]:
                if upstream is not None and upstream.proc.poll() is not None:
                    raise RuntimeError(f"the upstream exited ({upstream.proc.returncode}); see its log")
                return run_point(ctx, m, rate, round_, position, step)

            low_load = {m.label: rounded_rate(searches[m.label].start_lo * args.low_load)
                        for m in models if args.low_load > 0}
            gevent = next((m.label for m in models if m.family == "gevent"), None)
            bisect_all(models, searches, runner, args.repeats, low_load,
                       ("hybrid@eqcpu", gevent) if gevent else None)
            hybrid = next((m for m in models if m.label == TAIL_MODEL), None)
            if hybrid is not None and args.tail_runs > 0 and searches[TAIL_MODEL].lo:
                ceiling = searches[TAIL_MODEL].lo
                rates = sorted({rounded_rate(f * ceiling) for f in args.tail_fractions})
                log(f"\ntail study: {TAIL_MODEL} at {', '.join(f'{r:g}' for r in rates)}/s "
                    f"({', '.join(f'{f:.0%}' for f in args.tail_fractions)} of its ceiling {ceiling:g}), "
                    f"{args.tail_runs} runs each")
                tail_study(hybrid, rates, runner, args.tail_runs)
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
