"""Draws the per-second timeline of bench runs (``switchyard bench --timeline`` or a
Python peer's ``--timeline``): one figure per run, panels stacked over time.

    python timeline_chart.py FILE.jsonl [--run LABEL] [--out DIR] [--format svg|png]

Panels (each drawn only when some line of the run has its columns): tasks
completed and failed per second; slowdown p50/p99/max of the tasks finished in
the second; tasks in flight; the CPU pool's queue depth and busy threads;
reactor lag p99; Redis, MySQL and upstream call p99; process CPU seconds per
second and the machine's busy and stolen shares. The Python peers have no
in-flight, CPU-queue or reactor-lag columns, so those panels are absent there.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

#: (panel title, y label, [(column, legend)], log-y)
PANELS: tuple[tuple[str, str, tuple[tuple[str, str], ...], bool], ...] = (
    ("tasks finished per second", "tasks", (("completions", "completed"), ("failures", "failed")), False),
    (
        "slowdown of the tasks finished in the second",
        "latency / ideal",
        (("slowdown_p50", "p50"), ("slowdown_p99", "p99"), ("slowdown_max", "max")),
        True,
    ),
    ("tasks in flight", "tasks", (("in_flight", "mean"), ("in_flight_max", "max")), False),
    (
        "CPU pool",
        "tasks / threads",
        (
            ("cpu_queue_depth", "queue depth"),
            ("cpu_queue_depth_max", "queue depth max"),
            ("cpu_busy_threads", "busy threads"),
        ),
        False,
    ),
    ("reactor lag", "ms", (("reactor_lag_p99_ms", "p99"), ("reactor_lag_max_ms", "max")), True),
    (
        "client calls, p99",
        "ms",
        (("redis_p99_ms", "Redis"), ("mysql_p99_ms", "MySQL"), ("upstream_p99_ms", "upstream")),
        True,
    ),
    (
        "CPU",
        "CPU s/s, share",
        (("process_cpu_s", "process CPU s/s"), ("machine_busy", "machine busy"), ("steal", "stolen")),
        False,
    ),
)


def read_lines(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def runs_of(lines: Iterable[dict[str, Any]], run: Optional[str] = None) -> dict[tuple, list[dict[str, Any]]]:
    """Lines grouped by (run, rate, round), each group in ``t`` order; ``run`` filters by label."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for line in lines:
        if run is not None and line.get("run") != run and line.get("model") != run:
            continue
        key = (str(line.get("run", line.get("model", "?"))), float(line.get("rate", math.nan)), int(line.get("round", 0)))
        groups.setdefault(key, []).append(line)
    for v in groups.values():
        v.sort(key=lambda x: x.get("t", 0))
    return groups


def _value(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def draw(
    key: tuple, lines: Sequence[dict[str, Any]], out: Path, footer: str = "", fmt: str = "svg", label: str = ""
) -> Optional[Path]:
    """One run's figure; returns its path (``None`` when the run has no lines)."""
    if not lines:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    panels = [p for p in PANELS if any(any(_value(line.get(c)) == _value(line.get(c)) for c, _ in p[2]) for line in lines)]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 1.9 * len(panels) + 0.8), sharex=True, squeeze=False)
    ts = [_value(line.get("t")) for line in lines]
    for ax, (title, ylabel, columns, log) in zip(axes[:, 0], panels, strict=True):
        drawn: list[float] = []
        for column, legend in columns:
            ys = [_value(line.get(column)) for line in lines]
            if any(math.isfinite(y) for y in ys):
                ax.plot(ts, ys, marker=".", markersize=3, linewidth=1, label=legend)
                drawn += [y for y in ys if math.isfinite(y) and y > 0]
        # Log only where the values span decades (a collapse); otherwise linear reads better.
        if log and drawn and max(drawn) / min(drawn) > 20:
            ax.set_yscale("log")
            plain = matplotlib.ticker.FuncFormatter(lambda y, _: f"{y:g}")
            ax.yaxis.set_major_formatter(plain)
            ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        if title.startswith("slowdown"):
            ax.axhline(1.25, color="grey", linestyle="--", linewidth=0.8)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    axes[-1, 0].set_xlabel("seconds since the run's start")
    run, rate, rnd = key
    fig.suptitle(f"{label or run} at {rate:g} tasks/s, round {rnd}: per second", fontsize=10)
    if footer:
        fig.text(0.01, 0.005, footer, fontsize=6, color="grey")
    fig.tight_layout(rect=(0, 0.02, 1, 0.97))
    safe = re.sub(r"[^A-Za-z0-9_.@-]+", "_", f"{label or run}-{rate:g}-r{rnd}")
    path = out / f"timeline-{safe}.{fmt}"
    fig.savefig(path)
    plt.close(fig)
    return path


def chart_file(
    path: Path, out: Optional[Path] = None, run: Optional[str] = None, footer: str = "", fmt: str = "svg",
    label: str = "",
) -> list[Path]:
    """Every run of a timeline file (or only ``run``'s), one figure each, into ``out``."""
    out = out or path.parent
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for key, lines in runs_of(read_lines(path), run).items():
        p = draw(key, lines, out, footer, fmt, label)
        if p is not None:
            paths.append(p)
    return paths


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("file", type=Path, help="a timeline file (JSON lines)")
    p.add_argument("--run", default=None, help="only this run label (e.g. hybrid, gevent/2)")
    p.add_argument("--out", type=Path, default=None, help="directory of the charts (default: beside the file)")
    p.add_argument("--format", choices=("svg", "png"), default="svg")
    p.add_argument("--footer", default="", help="a line at the foot of each chart (machine, commit)")
    args = p.parse_args(argv)
    paths = chart_file(args.file, args.out, args.run, args.footer, args.format)
    for path in paths:
        print(path)
    if not paths:
        print(f"no runs in {args.file}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
