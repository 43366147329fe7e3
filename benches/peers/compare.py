"""Runs PZ-1 under Switchyard's models and the Python peers at the same
parameters, and renders the comparison.

For each rate of ``--rates`` it runs, one after another against one
``switchyard upstream`` and the real Redis and MySQL:

- ``switchyard bench --upstream URL --models hybrid,reactor-only,threads --json``
  (each model in a child process of its own),
- ``gevent_peer.py --procs <cores>`` (model ``gevent/<cores>``, or ``gevent`` on one core),
- ``prefork_peer.py --workers <W>`` (model ``prefork/<W>``).

Every report line (the spec's 16 keys) goes to ``results/<timestamp>.jsonl`` as
it arrives; then ``results/<timestamp>.md`` gets a markdown table, which rates
each model sustains (throughput >= 99% of the offered rate and slowdown p99 <=
1.25) and its ceiling, and three charts are written beside it as SVG:
``-slowdown_p99.svg`` (slowdown p99 vs rate), ``-throughput.svg`` (throughput
vs rate) and ``-peak_rss.svg`` (peak RSS per model).

``run_comparison.sh`` is the one command that sets up the venv, builds the
binary and calls this; ``--render FILE.jsonl`` re-renders an earlier run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import pz1

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DEFAULT_RATES = (25.0, 50.0, 100.0)
SMOKE = {"duration": 8.0, "warmup": 2.0, "drain": 10.0, "rates": (20.0,)}


# --------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------


class Upstream:
    """A ``switchyard upstream`` on a free port, stopped on exit."""

    def __init__(self, binary: Path, log_path: Path) -> None:
        self._log = log_path.open("w", encoding="utf-8")
        self.proc = subprocess.Popen(
            [str(binary), "upstream", "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.url = self._read_address(timeout_s=15.0)
        # Keep draining its log so the pipe never fills.
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


def workload_flags(args: argparse.Namespace, rate: float) -> list[str]:
    """The spec's parameters, as both ``switchyard bench`` and the peers take them."""
    flags = [
        f"--rate={rate:g}",
        f"--duration={args.duration:g}",
        f"--warmup={args.warmup:g}",
        f"--drain={args.drain:g}",
        f"--items={args.items}",
        f"--fresh={args.fresh}",
        f"--rounds={args.rounds}",
        f"--base-ms={args.base_ms:g}",
        f"--alpha={args.alpha:g}",
        f"--max-ms={args.max_ms}",
        f"--upstream={args.upstream}",
        f"--redis-url={args.redis_url}",
        f"--mysql-url={args.mysql_url}",
        f"--key-prefix={args.key_prefix}",
        "--json",
    ]
    if args.zaps:
        flags.append(f"--zaps={args.zaps}")
    return flags


def commands_for(args: argparse.Namespace, rate: float) -> list[tuple[str, list[str]]]:
    """(label, argv) of every run at one rate."""
    common = workload_flags(args, rate)
    runs: list[tuple[str, list[str]]] = []
    if args.rust_models:
        runs.append(
            (
                "switchyard",
                [
                    str(args.switchyard),
                    "bench",
                    f"--models={args.rust_models}",
                    f"--thread-workers={args.workers}",
                    *common,
                ],
            )
        )
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    if "gevent" in peers:
        runs.append(("gevent", [sys.executable, str(HERE / "gevent_peer.py"), f"--procs={args.procs}", *common]))
    if "prefork" in peers:
        runs.append(("prefork", [sys.executable, str(HERE / "prefork_peer.py"), f"--workers={args.workers}", *common]))
    return runs


def run_one(label: str, argv: Sequence[str], out: Any) -> list[dict[str, Any]]:
    """Runs one command (its stderr passes through), keeps its report lines."""
    print(f"\n$ {shlex.join(argv)}", file=sys.stderr, flush=True)
    # The Rust bench reads SWITCHYARD_* from the environment: only our flags count.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")}
    proc = subprocess.run(
        argv, stdout=subprocess.PIPE, stderr=None, stdin=subprocess.DEVNULL, text=True, env=env, cwd=HERE
    )
    reports = []
    for line in proc.stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            report = json.loads(line)
        except ValueError:
            continue
        if isinstance(report, dict) and set(pz1.REPORT_KEYS) <= set(report):
            out.write(json.dumps(report, separators=(",", ":")) + "\n")
            out.flush()
            reports.append(report)
            print(
                f"  {report['model']} @ {report['rate']:g}: throughput {fmt(report['throughput'])}, "
                f"slowdown p99 {fmt(report['slowdown_p99'], 3)}, errors {report['errors']}",
                file=sys.stderr,
                flush=True,
            )
    if proc.returncode != 0:
        print(f"  {label} exited with {proc.returncode}", file=sys.stderr, flush=True)
    return reports


# --------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------


def fmt(v: Any, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def num(v: Any) -> float:
    return math.nan if v is None else float(v)


def models_in_order(reports: Iterable[dict[str, Any]]) -> list[str]:
    seen: list[str] = []
    for r in reports:
        if r["model"] not in seen:
            seen.append(r["model"])
    return seen


def markdown(reports: list[dict[str, Any]], meta: dict[str, Any], chart_names: Sequence[str]) -> str:
    """The results table, each model's ceiling and the charts, as markdown."""
    lines = ["# PZ-1: Switchyard and the Python peers", ""]
    if meta:
        lines.append("| parameter | value |")
        lines.append("| --- | --- |")
        for k, v in meta.items():
            lines.append(f"| {k} | {v} |")
        lines.append("")
    head = [
        "model",
        "rate",
        "completed",
        "errors",
        "throughput/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "slowdown p50",
        "slowdown p99",
        "exec p99",
        "CPU s/s",
        "peak RSS MB",
        "upstream rps",
        "sustains",
    ]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(" --- " if i == 0 else " ---: " for i in range(len(head))) + "|")
    for r in sorted(reports, key=lambda r: (num(r["rate"]), models_in_order(reports).index(r["model"]))):
        lines.append(
            "| "
            + " | ".join(
                [
                    r["model"],
                    fmt(num(r["rate"]), 0),
                    str(r["completed"]),
                    str(r["errors"]),
                    fmt(r["throughput"]),
                    fmt(r["latency_p50_ms"], 0),
                    fmt(r["latency_p99_ms"], 0),
                    fmt(r["latency_max_ms"], 0),
                    fmt(r["slowdown_p50"], 3),
                    fmt(r["slowdown_p99"], 3),
                    fmt(r["exec_slowdown_p99"], 3),
                    fmt(r["cpu_per_wall_s"], 2),
                    fmt(r["peak_rss_mb"]),
                    fmt(r["upstream_rps"]),
                    "yes" if pz1.sustains(r, num(r["rate"])) else "no",
                ]
            )
            + " |"
        )
    lines += ["", "Sustains: throughput at least 99% of the offered rate and slowdown p99 at most 1.25.", ""]
    lines += ["| model | ceiling (highest swept rate sustained) |", "| --- | ---: |"]
    for model in models_in_order(reports):
        ok = [num(r["rate"]) for r in reports if r["model"] == model and pz1.sustains(r, num(r["rate"]))]
        lines.append(f"| {model} | {fmt(max(ok), 0) + ' tasks/s' if ok else 'none of the swept rates'} |")
    lines.append("")
    for name in chart_names:
        lines.append(f"![{name}]({name})")
    lines.append("")
    return "\n".join(lines)


def charts(reports: list[dict[str, Any]], stem: Path, ext: str = "svg") -> list[Path]:
    """Slowdown p99 vs rate, throughput vs rate, peak RSS per model (``ext``: svg or png; Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    models = models_in_order(reports)
    rates = sorted({num(r["rate"]) for r in reports})
    paths = []

    def series(model: str, key: str) -> tuple[list[float], list[float]]:
        pts = sorted((num(r["rate"]), num(r[key])) for r in reports if r["model"] == model)
        pts = [(x, y) for x, y in pts if math.isfinite(y)]
        return [x for x, _ in pts], [y for _, y in pts]

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m in models:
        xs, ys = series(m, "slowdown_p99")
        ax.plot(xs, ys, marker="o", label=m)
    ax.axhline(pz1.SUSTAIN_MAX_SLOWDOWN_P99, color="grey", linestyle="--", linewidth=1, label="sustain limit 1.25")
    ax.set_yscale("log")
    plain = matplotlib.ticker.FuncFormatter(lambda y, _: f"{y:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.set_ylim(bottom=0.95)
    ax.set_xlabel("offered rate (tasks/s)")
    ax.set_ylabel("slowdown p99 (latency / ideal)")
    ax.set_title("PZ-1: slowdown p99 vs rate (lower is better, 1.0 is perfect)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    paths.append(stem.with_name(stem.name + f"-slowdown_p99.{ext}"))
    fig.tight_layout()
    fig.savefig(paths[-1])
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m in models:
        xs, ys = series(m, "throughput")
        ax.plot(xs, ys, marker="o", label=m)
    if rates:
        ax.plot([0, max(rates)], [0, max(rates)], color="grey", linestyle="--", linewidth=1, label="offered")
    ax.set_xlabel("offered rate (tasks/s)")
    ax.set_ylabel("throughput (tasks/s completed in the window)")
    ax.set_title("PZ-1: throughput vs rate")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    paths.append(stem.with_name(stem.name + f"-throughput.{ext}"))
    fig.tight_layout()
    fig.savefig(paths[-1])
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    width = 0.8 / max(1, len(rates))
    for j, rate in enumerate(rates):
        xs, ys = [], []
        for i, m in enumerate(models):
            r = next((r for r in reports if r["model"] == m and num(r["rate"]) == rate), None)
            if r is not None and math.isfinite(num(r["peak_rss_mb"])):
                xs.append(i - 0.4 + width * (j + 0.5))
                ys.append(num(r["peak_rss_mb"]))
        bars = ax.bar(xs, ys, width=width, label=f"{rate:g} tasks/s")
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks(range(len(models)), models, rotation=20)
    ax.set_ylabel("peak RSS, MiB (sum over the model's processes)")
    ax.set_title("PZ-1: peak RSS per model")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    paths.append(stem.with_name(stem.name + f"-peak_rss.{ext}"))
    fig.tight_layout()
    fig.savefig(paths[-1])
    plt.close(fig)
    return paths


def render(jsonl: Path, meta: Optional[dict[str, Any]] = None, ext: str = "svg") -> Path:
    """Writes ``<stem>.md`` and the charts beside ``jsonl``; returns the markdown's path."""
    reports = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines() if line.strip()]
    stem = jsonl.with_suffix("")
    meta_path = stem.with_name(stem.name + ".meta.json")
    if meta is None and meta_path.exists():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    chart_paths = charts(reports, stem, ext) if reports else []
    md = markdown(reports, meta or {}, [p.name for p in chart_paths])
    md_path = stem.with_suffix(".md")
    md_path.write_text(md, encoding="utf-8")
    return md_path


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def parse_rates(text: str) -> tuple[float, ...]:
    rates = tuple(float(x) for x in text.split(",") if x.strip())
    if not rates or any(not (r > 0 and math.isfinite(r)) for r in rates):
        raise argparse.ArgumentTypeError("rates must be positive numbers, comma-separated")
    return rates


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--smoke", action="store_true", help="a quick run: --duration 8 --warmup 2 --drain 10 --rates 20 unless given"
    )
    p.add_argument(
        "--rates",
        type=parse_rates,
        default=None,
        help=f"offered rates, comma-separated (default {','.join(f'{r:g}' for r in DEFAULT_RATES)})",
    )
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
    p.add_argument(
        "--switchyard", type=Path, default=ROOT / "target" / "release" / "switchyard", help="the release binary"
    )
    p.add_argument("--upstream", default=None, help="use this upstream instead of starting one")
    p.add_argument("--redis-url", default=os.environ.get("PZ1_REDIS_URL", "redis://127.0.0.1:6379/"))
    p.add_argument("--mysql-url", default=os.environ.get("PZ1_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"))
    p.add_argument("--key-prefix", default=pz1.DEFAULT_KEY_PREFIX, help="seen-set key prefix (cleared by each run)")
    p.add_argument(
        "--rust-models",
        default="hybrid,reactor-only,threads",
        help="Switchyard models (`switchyard bench --models`); empty to skip",
    )
    p.add_argument("--peers", default="gevent,prefork", help="Python peers to run")
    p.add_argument("--procs", type=int, default=os.cpu_count() or 1, help="gevent processes (default: cores)")
    p.add_argument(
        "--workers", type=int, default=16, help="prefork worker processes, and the `threads` model's workers"
    )
    p.add_argument("--results-dir", type=Path, default=HERE / "results")
    p.add_argument("--chart-format", choices=("svg", "png"), default="svg", help="format of the charts")
    p.add_argument(
        "--render",
        type=Path,
        default=None,
        metavar="FILE.jsonl",
        help="only re-render the table and charts of an earlier run",
    )
    args = p.parse_args(argv)

    if args.render:
        print(render(args.render, ext=args.chart_format).read_text(encoding="utf-8"))
        return 0

    for key in ("duration", "warmup", "drain"):
        if getattr(args, key) is None:
            setattr(args, key, SMOKE[key] if args.smoke else getattr(pz1, f"DEFAULT_{key.upper()}_S"))
    if args.rates is None:
        args.rates = SMOKE["rates"] if args.smoke else DEFAULT_RATES
    pz1.params_from_flags(args, min(args.rates)).validate()
    if args.rust_models and not args.switchyard.exists():
        p.error(f"{args.switchyard} not found: build it with `cargo build --release -p switchyard-cli`")

    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S") + ("-smoke" if args.smoke else "")
    jsonl = args.results_dir / f"{stamp}.jsonl"
    meta = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "commit": git_commit(),
        "cores": os.cpu_count(),
        "rates": ",".join(f"{r:g}" for r in args.rates),
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "drain_s": args.drain,
        "zaps": args.zaps or "2 x rate",
        "items": args.items,
        "fresh": args.fresh,
        "rounds": args.rounds,
        "base_ms": args.base_ms,
        "alpha": args.alpha,
        "max_ms": args.max_ms,
        "gevent processes": args.procs,
        "prefork workers (and threads model workers)": args.workers,
        "stores": f"Redis {args.redis_url}, MySQL {args.mysql_url}",
    }
    jsonl.with_name(jsonl.stem + ".meta.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")

    upstream: Optional[Upstream] = None
    if args.upstream is None:
        upstream = Upstream(args.switchyard, args.results_dir / f"{stamp}-upstream.log")
        args.upstream = upstream.url
        print(f"upstream at {args.upstream}", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        with jsonl.open("w", encoding="utf-8") as out:
            for rate in args.rates:
                for label, cmd in commands_for(args, rate):
                    if upstream is not None and upstream.proc.poll() is not None:
                        raise RuntimeError(f"the upstream exited ({upstream.proc.returncode}); see its log")
                    run_one(label, cmd, out)
    finally:
        if upstream is not None:
            upstream.stop()
    md_path = render(jsonl, meta, args.chart_format)
    print(md_path.read_text(encoding="utf-8"))
    print(f"results: {jsonl}\ntable and charts: {md_path} (took {time.monotonic() - started:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
