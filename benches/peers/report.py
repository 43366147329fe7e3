"""An invocation's results rendered: the markdown table of medians and ranges, the
ceilings and their ratios, the machine's CPU ceiling, and the charts."""

from __future__ import annotations

import contextlib
import json
import math
import statistics
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import pz1
from bisection import point_verdict, usable
from compare_base import CORES, fmt, fmt_rate, num


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


#: The tail study's model, and its target: slowdown p99 <= TAIL_TARGET in at
#: least TAIL_SHARE of the runs at every rate it ran.
TAIL_MODEL = "hybrid"
TAIL_TARGET = 1.10
TAIL_SHARE = 0.9


def is_tail(row: dict[str, Any]) -> bool:
    return row.get("step") == "tail"


def points_of(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, float], list[dict[str, Any]]]:
    """The bisection's runs by (label, rate); the tail study's are apart (``tail_section``)."""
    pts: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("label") and r.get("kind") != "calibration" and not is_tail(r):
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
    """``cores`` / CPU per task of every process a task uses on this machine: hybrid's
    engine, the Redis and MySQL servers and the upstream (it runs on the same cores
    here, though in production it is remote), from hybrid's undisturbed runs at its
    lowest rate. ``ceiling_without_upstream`` leaves the upstream out."""
    hyb = [r for r in usable(rows)
           if r.get("label") == "hybrid" and r.get("cpu_ms_per_task") is not None and not is_tail(r)]
    if not hyb:
        return None
    low = min(num(r["rate"]) for r in hyb)
    at = [r for r in hyb if num(r["rate"]) == low]
    engine = statistics.median(num(r["cpu_ms_per_task"]) for r in at)
    stores = statistics.median(num(r.get("stores_cpu_ms_per_task")) for r in at)
    upstream = statistics.median(
        num(r.get("upstream_cpu_s")) * 1e3 / num(r.get("tasks_scheduled")) if num(r.get("tasks_scheduled")) > 0 else math.nan
        for r in at)
    if not all(math.isfinite(x) for x in (engine, stores, upstream)) or engine + stores <= 0:
        return None
    return {"rate": low, "engine_ms": engine, "stores_ms": stores, "upstream_ms": upstream,
            "ceiling": cores * 1e3 / (engine + stores + upstream), "ceiling_without_upstream": cores * 1e3 / (engine + stores)}


def tail_section(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The tail study: per rate, every undisturbed run's slowdown p99 and how many
    meet the target."""
    tail = [r for r in rows if is_tail(r)]
    if not tail:
        return []
    ceiling = ceilings(rows).get(TAIL_MODEL, (None, None))[0]
    out = [f"Tail study: {TAIL_MODEL}, runs at fractions of its ceiling ({fmt_rate(ceiling) if ceiling else '?'}/s in this "
           f"invocation), rates alternating. Target: slowdown p99 <= {TAIL_TARGET:.2f} in at least "
           f"{TAIL_SHARE:.0%} of the runs at every rate.", "",
           "| rate | share of the ceiling | runs (+disturbed) | slowdown p99 of each run, in order | within target "
           "| slowdown p99 median [min-max] | throughput/s | verdict |",
           "| ---: | ---: | ---: | --- | ---: | ---: | ---: | --- |"]
    for rate in sorted({num(r["rate"]) for r in tail}):
        group = [r for r in tail if num(r["rate"]) == rate]
        ok = usable(group)
        p99 = [num(r.get("slowdown_p99")) for r in ok]
        within = sum(1 for v in p99 if v <= TAIL_TARGET)
        met = bool(ok) and within >= math.ceil(TAIL_SHARE * len(ok) - 1e-9)
        share = f"{rate / ceiling:.0%}" if ceiling else "-"
        out.append(f"| {rate:g} | {share} | {len(ok)} (+{len(group) - len(ok)}) | {', '.join(fmt(v, 3) for v in p99)} | "
                   f"{within} of {len(ok)} | {cell(p99, 3)} | {cell(r['throughput'] for r in ok)} | "
                   f"{'**met**' if met else '**missed**'} |")
    return out + [""]


def tail_runs_to_draw(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per tail rate, the undisturbed run with the highest slowdown p99 (the one a
    reader wants explained) and the one with the lowest."""
    tail = usable(r for r in rows if is_tail(r) and r.get("timeline"))
    out = []
    for rate in sorted({num(r["rate"]) for r in tail}):
        group = sorted((r for r in tail if num(r["rate"]) == rate), key=lambda r: num(r.get("slowdown_p99")))
        out += [group[-1]] + ([group[0]] if len(group) > 1 else [])
    return out


#: The headline's rows: the systems a reader compares, in the seed's order.
HEADLINE_FAMILIES = ("prefork", "gevent", "hybrid")


def headline(rows: Sequence[dict[str, Any]], cores: int) -> list[str]:
    """The short table a README opens with: per system (prefork, gevent, Switchyard's
    ``hybrid``), its ceiling and, in the runs at that rate, the share of the machine's
    CPU its processes used, its peak memory, its slowdown p99 and its CPU per task
    (medians [min-max] of the undisturbed runs)."""
    ceil = ceilings(rows)
    pts = points_of(rows)
    out = [
        f"| system | ceiling (tasks/s) | at its ceiling: CPU used (% of {cores} cores) | peak memory MB "
        "| slowdown p99 | CPU ms per task |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for family in HEADLINE_FAMILIES:
        # Switchyard's row is `hybrid` itself; a peer's label carries its process count.
        label = next((l for l in labels_in_order(rows)
                      if l == family or (family != "hybrid" and l.startswith(family + "/"))), None)
        if label is None:
            continue
        lo, _ = ceil.get(label, (None, None))
        if lo is None:
            out.append(f"| {label} | none sustained | - | - | - | - |")
            continue
        ok = usable(pts[(label, lo)])
        out.append(
            f"| {label} | {fmt_rate(lo)} | {cell((100 * num(r['cpu_per_wall_s']) / cores for r in ok), 0)} | "
            f"{cell(r['peak_rss_mb'] for r in ok)} | {cell((r['slowdown_p99'] for r in ok), 3)} | "
            f"{cell((r.get('cpu_ms_per_task') for r in ok), 2)} |"
        )
    return out


#: Label prefixes of the Python peers; every other label is one of Switchyard's models.
PEER_PREFIXES = ("gevent", "prefork")


def switchyard_and_peers(labels: Sequence[str]) -> tuple[list[str], list[str]]:
    """The labels split into Switchyard's models and the Python peers, each in order."""
    return ([l for l in labels if not l.startswith(PEER_PREFIXES)],
            [l for l in labels if l.startswith(PEER_PREFIXES)])


def memory_at_ceilings(rows: Sequence[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """Per label with a ceiling: (ceiling, median peak memory MB of its undisturbed runs there)."""
    pts = points_of(rows)
    out = {}
    for label, (lo, _) in ceilings(rows).items():
        s = None if lo is None else stats(r.get("peak_rss_mb") for r in usable(pts[(label, lo)]))
        if s is not None:
            out[label] = (lo, s[0])
    return out


def memory_section(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Each peer's memory at its own ceiling against each Switchyard model's at its own:
    the ratio of the two, and each one's memory per task/s of its ceiling (all from this
    invocation). A peer that needs more processes to reach a higher ceiling (prefork/W)
    shows here what that ceiling costs in memory."""
    rust, peers = switchyard_and_peers(labels_in_order(r for r in rows if r.get("kind") != "calibration"))
    mem = memory_at_ceilings(rows)
    out = []
    for b in (p for p in peers if p in mem):
        (cb, mb) = mem[b]
        for a in (r for r in rust if r in mem and mem[r][1] > 0):
            (ca, ma) = mem[a]
            out.append(f"| {b} / {a} | {fmt_rate(cb)} | {mb:.1f} | {fmt_rate(ca)} | {ma:.1f} | "
                       f"{mb / ma:.1f}× | {(mb / cb) / (ma / ca):.0f}× |")
    if not out:
        return []
    return ["Memory at each model's own ceiling (median peak of its undisturbed runs there; one process: VmHWM, "
            "several: the peak of their summed PSS):", "",
            "| peer / Switchyard | peer's ceiling | peer's MB | Switchyard's ceiling | Switchyard's MB "
            "| peer's MB ÷ Switchyard's | per task/s of ceiling |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |", *out, ""]


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any], charts: Sequence[str]) -> str:
    lines = ["# PZ-1: each model's ceiling, Switchyard and the Python peers, one invocation", ""]
    lines += [f"_{footer_of(meta)}_", "", "| parameter | value |", "| --- | --- |"]
    for k, v in meta.items():
        if k != "machine":
            lines.append(f"| {k} | {v} |")
    lines.append("")
    cores = int(meta.get("machine", {}).get("cores", CORES))
    lines += ["At each system's ceiling (the highest rate it sustained in this invocation):", ""]
    lines += headline(rows, cores) + [""]
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
    lines += ["", "Sustained: in the median run >= 99 % of the tasks released in the window completed and slowdown p99 <= 1.25.", ""]
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
        lines.append(f"| {label} | {fmt_rate(lo) if lo else 'none sustained'} | {fmt_rate(hi) if hi else 'none failed'} | "
                     f"{', '.join(str(x) for x in rounds)} | {alone_txt} |")
    lines.append("")
    # Ratios, from this invocation only.
    rust, peers = switchyard_and_peers(labels)
    ratio_lines = []
    for a in rust:
        for b in peers:
            la, lb = ceil.get(a, (None, None))[0], ceil.get(b, (None, None))[0]
            if la and lb:
                ratio_lines.append(f"| {a} / {b} | {la / lb:.2f} |")
    if ratio_lines:
        lines += ["Ceiling ratios (both ceilings from this invocation; a ceiling is a lower bound within the bisection's tolerance):", "",
                  "| ratio | value |", "| --- | ---: |", *ratio_lines, ""]
    lines += memory_section(rows)
    mc = machine_ceiling(rows, int(meta.get("machine", {}).get("cores", CORES)))
    if mc:
        hyb = ceil.get("hybrid", (None, None))[0]
        share = f"; hybrid's ceiling {hyb:g}/s is {hyb / mc['ceiling']:.0%} of it" if hyb else ""
        lines += [f"The machine's CPU ceiling: {meta.get('machine', {}).get('cores', CORES)} cores / "
                  f"({mc['engine_ms']:.2f} ms hybrid's engine + {mc['stores_ms']:.2f} ms Redis and MySQL servers + "
                  f"{mc['upstream_ms']:.2f} ms the upstream, per task, measured at {mc['rate']:g}/s) = "
                  f"**{mc['ceiling']:.0f} tasks/s**{share}. Without the upstream (remote in production, on these "
                  f"cores here): {mc['ceiling_without_upstream']:.0f} tasks/s"
                  + (f", of which hybrid's ceiling is {hyb / mc['ceiling_without_upstream']:.0%}" if hyb else "")
                  + ". At low load the fixed costs weigh more per task, so both are on the low side.", ""]
    lines += tail_section(rows)
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
    ax.yaxis.set_minor_formatter(plain)
    # The rate axis spans three decades: labelling every minor tick makes the
    # labels between 500 and 1000 run into each other, so only 2x and 5x are named.
    ax.xaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(
        lambda x, _: f"{x:g}" if round(x / 10 ** math.floor(math.log10(x))) in (2, 5) else ""))
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
    for run in tail_runs_to_draw(rows):
        path = results_dir / run["timeline"]
        if path.exists():
            paths += timeline_chart.chart_file(path, out, None, footer_of(meta), ext,
                                               label=f"{run['label']} tail, slowdown p99 {fmt(num(run.get('slowdown_p99')), 3)}")
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


