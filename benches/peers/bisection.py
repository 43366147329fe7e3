"""Each model's ceiling found by bisection, every step run for all models together in
alternating order, and the verdict of a point from its undisturbed runs."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Sequence

import compare_base
from compare_base import fmt_rate, num

if TYPE_CHECKING:
    from compare import Model


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


#: (model, rate, round, order position, step name) -> the point's rows. The runner
#: gets the step's name so that each row it writes carries it.
Runner = Callable[["Model", float, int, int, str], list[dict[str, Any]]]


def run_step(points: Sequence[tuple[Model, float]], runner: Runner, repeats: int, round_no: int,
             name: str) -> tuple[dict[str, list[dict[str, Any]]], int]:
    """Runs every (model, rate) ``repeats`` times, the models' order reversed every
    round (``round_no`` counts rounds over the whole invocation). Returns each
    label's rows (the runner tags each with the step's ``name``) and the next
    round number."""
    compare_base.log(f"\n== {name}: " + ", ".join(f"{m.label} @ {r:g}" for m, r in points))
    got: dict[str, list[dict[str, Any]]] = {m.label: [] for m, _ in points}
    for _ in range(repeats):
        order = points if round_no % 2 == 0 else points[::-1]
        for position, (m, r) in enumerate(order):
            got[m.label].extend(runner(m, r, round_no, position, name))
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
            compare_base.log(f"  {m.label} @ {r:g}: {'sustained' if verdict else 'undecided' if verdict is None else 'not sustained'}"
                f" (bracket {fmt_rate(s.lo)}..{fmt_rate(s.hi)})")
    if equal_cpu_check:
        label, reference = equal_cpu_check
        model = next((m for m in models if m.label == label), None)
        rate = searches[reference].lo if reference in searches else None
        ran = {num(r["rate"]) for r in rows if r.get("label") == label}
        if model is not None and rate and rate not in ran:
            got, round_no = run_step([(model, rate)], runner, repeats, round_no, f"at {reference}'s ceiling")
            rows += got[label]
    return rows


def tail_study(model: Model, rates: Sequence[float], runner: Runner, runs: int) -> list[dict[str, Any]]:
    """``runs`` runs of ``model`` at every rate, the rates' order reversed every
    round (a slow drift of the machine then touches every rate alike). Rows are
    tagged with step ``tail``; a disturbed run is repeated by the runner and
    stays in the rows, marked, as everywhere else."""
    points = [(model, r) for r in rates]
    got, _ = run_step(points, runner, runs, 0, "tail")
    return [row for rows in got.values() for row in rows]
