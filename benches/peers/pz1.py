"""Workload PZ-1's pure parts in Python, shared by the gevent and prefork peers.

This is the Python twin of ``engine/pz1/src/`` in the Rust tree (the workload
is specified in ``docs/pz1.md``): the same
parameters, delays, events, canonical form, fingerprint, schedule, ideal clock,
percentile and report, so that a peer sends the same requests, waits the same
delays, computes the same fingerprints and summarises its run exactly as the
Rust bench does. Everything here is a pure function of its arguments (no clock,
no randomness, no I/O), with one exception kept at the end:
:func:`calibrate_cpu_alone` times the transform.

``test_pz1.py`` reproduces every value of the workload's vectors file
(``data/pz1_vectors.json``, a copy of ``engine/pz1/tests/data/pz1_vectors.json``).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, NamedTuple, Optional, Sequence

# --------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------

DEFAULT_RATE = 50.0
DEFAULT_DURATION_S = 60.0
DEFAULT_WARMUP_S = 5.0
DEFAULT_DRAIN_S = 30.0
DEFAULT_ITEMS = 50
DEFAULT_FRESH = 2
DEFAULT_ROUNDS = 400
DEFAULT_BASE_MS = 120.0
DEFAULT_ALPHA = 2.5
DEFAULT_MAX_MS = 5000

#: The spec's Redis key prefix of the seen-sets.
DEFAULT_KEY_PREFIX = "pz:seen:"
#: The table every run is recorded in.
PZ_RUNS_TABLE = "pz_runs"


class ParamsError(ValueError):
    """A parameter is out of range; ``field`` names it (as in the Rust ``ParamsError``)."""

    def __init__(self, field_name: str, why: str) -> None:
        super().__init__(f"invalid PZ-1 parameter `{field_name}`: {why}")
        self.field = field_name


@dataclass(frozen=True)
class Params:
    """The parameters of a PZ-1 run, named as in the spec (units in the names)."""

    rate: float = DEFAULT_RATE
    duration_s: float = DEFAULT_DURATION_S
    warmup_s: float = DEFAULT_WARMUP_S
    drain_s: float = DEFAULT_DRAIN_S
    #: ``None`` or 0 means ``round(2 * rate)``, at least 1 (see :meth:`resolved_zaps`).
    zaps: Optional[int] = None
    items: int = DEFAULT_ITEMS
    fresh: int = DEFAULT_FRESH
    rounds: int = DEFAULT_ROUNDS
    base_ms: float = DEFAULT_BASE_MS
    alpha: float = DEFAULT_ALPHA
    max_ms: int = DEFAULT_MAX_MS

    def validate(self) -> "Params":
        """Checks every field and returns ``self``; raises :class:`ParamsError` naming the first bad one."""

        def positive(v: float) -> bool:
            return math.isfinite(v) and v > 0

        def non_negative(v: float) -> bool:
            return math.isfinite(v) and v >= 0

        if not positive(self.rate):
            raise ParamsError("rate", "must be a positive finite number")
        if not positive(self.duration_s):
            raise ParamsError("duration_s", "must be a positive finite number")
        if not non_negative(self.warmup_s) or self.warmup_s >= self.duration_s:
            raise ParamsError("warmup_s", "must be at least 0 and less than duration_s")
        if not non_negative(self.drain_s):
            raise ParamsError("drain_s", "must be a finite number at least 0")
        if self.zaps is not None and self.zaps < 0:
            raise ParamsError("zaps", "must be at least 0 (0: twice the rate)")
        if self.items < 1:
            raise ParamsError("items", "must be at least 1")
        if self.fresh < 1 or self.fresh > self.items:
            raise ParamsError("fresh", "must be at least 1 and at most items")
        if self.rounds < 1:
            raise ParamsError("rounds", "must be at least 1")
        if not non_negative(self.base_ms):
            raise ParamsError("base_ms", "must be a finite number at least 0")
        if not positive(self.alpha):
            raise ParamsError("alpha", "must be a positive finite number")
        if self.max_ms < 0:
            raise ParamsError("max_ms", "must be at least 0")
        return self

    def resolved_zaps(self) -> int:
        """``zaps`` when set and non-zero, otherwise ``2 x rate`` rounded, and at least 1.

        Rounds half away from zero, as Rust's ``f64::round`` (Python's ``round``
        would round half to even: 2 x 2.25 = 4.5 must give 5).
        """
        if self.zaps:
            return self.zaps
        twice = 2.0 * self.rate
        if not math.isfinite(twice) or twice <= 0:
            return 1
        return max(1, int(math.floor(twice + 0.5)))

    def poll_period_s(self) -> float:
        """Seconds between two polls of one zap: ``zaps / rate``."""
        return self.resolved_zaps() / self.rate

    def in_measured_window(self, release_s: float) -> bool:
        """Whether a task released at ``release_s`` counts: ``warmup_s <= release_s < duration_s``."""
        return self.warmup_s <= release_s < self.duration_s


# --------------------------------------------------------------------------
# Upstream delays
# --------------------------------------------------------------------------

_TWO_64 = 18_446_744_073_709_551_616.0


def delay_ms(zap: str, seq: int, step: int, base_ms: float, alpha: float, max_ms: int) -> int:
    """The delay of ``step`` (0: the poll, 1, 2, ...: its actions) of poll ``seq`` of ``zap``, in ms.

    ``u = (first 8 bytes of SHA-256("{zap}/{seq}/{step}") big-endian + 0.5) / 2^64``,
    ``delay = floor(min(max_ms, base_ms * u^(-1/alpha)))``. ``x + 0.5`` is done
    in floating point (``x`` rounded to the nearest double first), as in Rust.
    """
    digest = hashlib.sha256(f"{zap}/{seq}/{step}".encode()).digest()
    x = int.from_bytes(digest[:8], "big")
    u = (float(x) + 0.5) / _TWO_64
    delay = min(float(max_ms), base_ms * u ** (-1.0 / alpha))
    if math.isnan(delay) or delay <= 0:
        return 0
    return int(math.floor(delay))


def task_delays(zap: str, seq: int, new_items: int, params: Params) -> tuple[int, list[int]]:
    """The poll's delay (step 0) and one per action (steps ``1..=new_items``, oldest item first)."""

    def d(step: int) -> int:
        return delay_ms(zap, seq, step, params.base_ms, params.alpha, params.max_ms)

    return d(0), [d(step) for step in range(1, new_items + 1)]


# --------------------------------------------------------------------------
# Upstream data
# --------------------------------------------------------------------------

#: Every event's ``note``: ``"pz1-note-"`` followed by 191 ``'x'`` (200 bytes).
NOTE = "pz1-note-" + "x" * 191
#: The time of event 0; event ``e`` is ``e`` seconds later.
EPOCH_RFC3339 = "2026-01-01T00:00:00Z"
_EPOCH_DAYS = 20_454  # 2026-01-01 as days since 1970-01-01
_SECS_PER_DAY = 86_400


def poll_event_ids(seq: int, items: int, fresh: int) -> range:
    """The events of poll ``seq``, newest first: ``hi, hi-1, ..., hi-items+1`` with
    ``w = ceil(items / fresh)`` and ``hi = (seq + w) * fresh``."""
    if fresh < 1:
        raise ValueError("pz1: fresh must be at least 1")
    w = -(-items // fresh)
    hi = (seq + w) * fresh
    return range(hi, hi - items, -1)


def _civil_from_days(days: int) -> tuple[int, int, int]:
    """(year, month, day) of the day ``days`` after 1970-01-01 (Howard Hinnant's algorithm)."""
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    return year, month, day


def updated_at(e: int) -> str:
    """RFC 3339 UTC of 2026-01-01T00:00:00Z plus ``e`` seconds, e.g. ``2026-01-01T00:00:07Z``."""
    year, month, day = _civil_from_days(_EPOCH_DAYS + e // _SECS_PER_DAY)
    sod = e % _SECS_PER_DAY
    return f"{year:04d}-{month:02d}-{day:02d}T{sod // 3600:02d}:{sod // 60 % 60:02d}:{sod % 60:02d}Z"


def generate_event(zap: str, e: int) -> dict[str, Any]:
    """Event ``e`` of ``zap`` exactly as the spec defines it (keys in wire order)."""
    return {
        "id": f"{zap}-{e}",
        "updated_at": updated_at(e),
        "email": f"  User{e}@Example.COM ",
        "name": f"  First{e % 97}   LAST{e % 89} ",
        "amount": f"{e % 1000}.{e % 100:02d}",
        "tags": [f"Tag{e % 7}", f"tag{e % 5}", f"TAG{e % 3}"],
        "note": NOTE,
    }


def poll_body(zap: str, seq: int, items: int, fresh: int) -> bytes:
    """The body the upstream answers to poll ``seq`` of ``zap``: compact JSON
    ``{"zap":..,"seq":..,"items":[..]}``, byte for byte what ``switchyard upstream`` sends."""
    body = {"zap": zap, "seq": seq, "items": [generate_event(zap, e) for e in poll_event_ids(seq, items, fresh)]}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


# --------------------------------------------------------------------------
# Transform steps
# --------------------------------------------------------------------------

#: Unicode ``White_Space`` (what Rust's ``str::trim`` and ``char::is_whitespace``
#: use). Python's ``str.isspace`` also counts U+001C..U+001F, so spell it out.
WHITE_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680"
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
_WHITE_RUN = re.compile(f"[{re.escape(WHITE_SPACE)}]+")
_AMOUNT = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


class TransformError(ValueError):
    """The transform could not read a poll body; ``field`` names the culprit when known."""

    def __init__(self, kind: str, message: str, field_name: Optional[str] = None) -> None:
        where = f" at `{field_name}`" if field_name else ""
        super().__init__(f"{kind}{where}: {message}")
        self.kind = kind  # "json", "missing_field", "wrong_type", "bad_amount"
        self.field = field_name


def trim(s: str) -> str:
    """Removes leading and trailing white space."""
    return s.strip(WHITE_SPACE)


def lower_case(s: str) -> str:
    """Lower-cases (Unicode)."""
    return s.lower()


def collapse_whitespace(s: str) -> str:
    """Replaces every run of white space with one space (does not trim)."""
    return _WHITE_RUN.sub(" ", s)


def sort_dedupe(values: Sequence[str]) -> list[str]:
    """Sorts and removes duplicates (code-point order, the same as UTF-8 byte order)."""
    return sorted(set(values))


def decimal_to_cents(s: str) -> int:
    """``"12.05"`` -> 1205, ``"12.5"`` -> 1250, ``"12"`` -> 1200, ``"-3.10"`` -> -310.

    Accepted: an optional ``-``, ASCII digits, then optionally ``.`` and one or
    two digits; anything else raises :class:`TransformError` (``bad_amount``).
    """
    rest = s[1:] if s.startswith("-") else s
    if not rest:
        raise TransformError("bad_amount", "empty")
    m = _AMOUNT.fullmatch(s)
    if m is None:
        raise TransformError("bad_amount", f"not a decimal number: {s!r}")
    negative, whole, frac = m.group(1), m.group(2), m.group(3) or ""
    if len(frac) > 2:
        raise TransformError("bad_amount", f"more than two decimal places: {s!r}")
    cents = int(whole) * 100 + int((frac + "00")[:2])
    if negative:
        cents = -cents
    if not _I64_MIN <= cents <= _I64_MAX:
        raise TransformError("bad_amount", f"out of range: {s!r}")
    return cents


# --------------------------------------------------------------------------
# Canonical form and fingerprint
# --------------------------------------------------------------------------


def canonical(event: Mapping[str, Any]) -> dict[str, Any]:
    """The canonical object of an event (see the spec's step 2)."""
    return {
        "amount_cents": decimal_to_cents(event["amount"]),
        "email": lower_case(trim(event["email"])),
        "id": event["id"],
        "name": lower_case(collapse_whitespace(trim(event["name"]))),
        "note": event["note"],
        "tags": sort_dedupe([lower_case(t) for t in event["tags"]]),
        "updated_at": event["updated_at"],
    }


def canonical_json(item: Mapping[str, Any]) -> str:
    """Compact JSON with keys in sorted order: the same bytes as the Rust ``canonical_json``.

    ``ensure_ascii=False`` because serde_json writes non-ASCII as is.
    """
    return json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def fingerprint_raw(canonical_bytes: bytes, rounds: int) -> bytes:
    """``h_rounds`` of ``h_1 = SHA-256(bytes)``, ``h_{k+1} = SHA-256(h_k)`` over the raw digest bytes."""
    if rounds < 1:
        raise ValueError("pz1: rounds must be at least 1")
    sha256 = hashlib.sha256
    h = sha256(canonical_bytes).digest()
    for _ in range(rounds - 1):
        h = sha256(h).digest()
    return h


def fingerprint(canonical_bytes: bytes, rounds: int) -> str:
    """:func:`fingerprint_raw` in lower-case hex."""
    return fingerprint_raw(canonical_bytes, rounds).hex()


class Transformed(NamedTuple):
    """One item of a poll after the transform."""

    id: str
    fingerprint: str
    canonical: dict[str, Any]
    canonical_json: str


def transform_poll(
    body: bytes | str, rounds: int, between_items: Optional[Callable[[], Any]] = None
) -> list[Transformed]:
    """The whole CPU step of a task: parse a poll body, build each item's canonical
    form and fingerprint, drop items whose fingerprint already appeared earlier in
    the poll (the first stays). Items keep the body's order (newest first).

    ``between_items`` is called after each item: the gevent peer passes
    ``gevent.sleep(0)`` so that one transform does not hold the hub for a whole poll.
    Raises :class:`TransformError` naming the field on a malformed body.
    """
    try:
        poll = json.loads(body)
    except ValueError as e:
        raise TransformError("json", str(e)) from None
    if not (
        isinstance(poll, dict)
        and isinstance(poll.get("zap"), str)
        and type(poll.get("seq")) is int
        and poll["seq"] >= 0
        and isinstance(poll.get("items"), list)
    ):
        raise _explain(poll)
    events = poll["items"]
    seen: set[bytes] = set()
    out: list[Transformed] = []
    for i, event in enumerate(events):
        try:
            item = canonical(event)
        except TransformError as e:
            raise TransformError(e.kind, str(e), f"items[{i}].amount") from None
        except (KeyError, TypeError, AttributeError):
            raise _explain(poll) from None
        text = canonical_json(item)
        raw = fingerprint_raw(text.encode(), rounds)
        if raw not in seen:
            seen.add(raw)
            out.append(Transformed(item["id"], raw.hex(), item, text))
        if between_items is not None:
            between_items()
    return out


def _explain(poll: Any) -> TransformError:
    """Names the first missing or wrong-typed field of a poll body (the slow path)."""
    if not isinstance(poll, dict):
        return TransformError("wrong_type", "expected an object")
    for key, kind in (("zap", str), ("seq", int), ("items", list)):
        if key not in poll:
            return TransformError("missing_field", "missing", key)
        if not isinstance(poll[key], kind) or (key == "seq" and (isinstance(poll[key], bool) or poll[key] < 0)):
            return TransformError("wrong_type", f"expected {kind.__name__}", key)
    for i, item in enumerate(poll["items"]):
        path = f"items[{i}]"
        if not isinstance(item, dict):
            return TransformError("wrong_type", "expected an object", path)
        for key in ("id", "updated_at", "email", "name", "amount", "tags", "note"):
            if key not in item:
                return TransformError("missing_field", "missing", f"{path}.{key}")
            if key == "tags":
                if not isinstance(item[key], list):
                    return TransformError("wrong_type", "expected an array", f"{path}.tags")
                for j, tag in enumerate(item[key]):
                    if not isinstance(tag, str):
                        return TransformError("wrong_type", "expected a string", f"{path}.tags[{j}]")
            elif not isinstance(item[key], str):
                return TransformError("wrong_type", "expected a string", f"{path}.{key}")
    return TransformError("json", "malformed poll body")


def action_body(item: Transformed) -> str:
    """``{"id":..,"fingerprint":..,"item":<canonical object>}``, compact, in that order."""
    head = json.dumps({"id": item.id, "fingerprint": item.fingerprint}, separators=(",", ":"), ensure_ascii=False)
    return f'{head[:-1]},"item":{item.canonical_json}}}'


# --------------------------------------------------------------------------
# Schedule and ideal latency
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Task:
    """Poll ``seq`` of ``zap``, released ``release_s`` after start; ``index`` is its place in the schedule."""

    index: int
    release_s: float
    zap: str
    seq: int


def schedule(params: Params) -> Iterator[Task]:
    """Every task of a run in release order: task ``i`` at ``i / rate`` for every
    ``i / rate < duration_s``, zap ``"z{i mod zaps}"``, poll ``i div zaps + 1``."""
    rate, duration_s, zaps = params.rate, params.duration_s, params.resolved_zaps()
    if not (math.isfinite(rate) and rate > 0):
        return
    i = 0
    while True:
        release_s = i / rate
        if not release_s < duration_s:
            return
        yield Task(i, release_s, f"z{i % zaps}", i // zaps + 1)
        i += 1


class IdealClock:
    """Per-zap ideal end times. Feed each zap's tasks in ``seq`` order."""

    def __init__(self) -> None:
        self._ideal_end_s: dict[str, float] = {}

    def ideal(self, zap: str, release_s: float, work_s: float) -> tuple[float, float]:
        """Records the zap's next poll and returns ``(ideal_start_s, ideal_end_s)``:
        ``start = max(release, previous ideal end)``, ``end = start + work_s``."""
        start = max(release_s, self._ideal_end_s.get(zap, -math.inf))
        end = start + work_s
        self._ideal_end_s[zap] = end
        return start, end


def slowdown(latency: float, ideal: float) -> float:
    """``latency / ideal``; 1.0 when both are 0, infinity when only the ideal is."""
    if ideal > 0:
        return latency / ideal
    if latency > 0:
        return math.inf
    return 1.0


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------

#: The keys of a run report, in the spec's order.
REPORT_KEYS: tuple[str, ...] = (
    "model",
    "rate",
    "rounds",
    "completed",
    "errors",
    "throughput",
    "latency_p50_ms",
    "latency_p99_ms",
    "latency_max_ms",
    "slowdown_p50",
    "slowdown_p99",
    "exec_slowdown_p50",
    "exec_slowdown_p99",
    "cpu_per_wall_s",
    "peak_rss_mb",
    "upstream_rps",
)
SUSTAIN_COMPLETED_FRACTION = 0.99
SUSTAIN_MAX_SLOWDOWN_P99 = 1.25


def percentile(sorted_values: Sequence[float], p: float) -> Optional[float]:
    """Nearest rank: the value at 1-based rank ``ceil(p * n / 100)`` clamped to ``[1, n]``.
    ``None`` when empty. ``p * n / 100`` in that order, so integral ``p`` gives exact ranks."""
    n = len(sorted_values)
    if n == 0:
        return None
    r = p * n / 100.0
    rank = 0 if math.isnan(r) else (n if r >= n else max(0, math.ceil(r)))
    rank = min(max(rank, 1), n)
    return sorted_values[rank - 1]


def sustains(report: Mapping[str, Any]) -> bool:
    """At least 99 % of the tasks released in the window completed, and ``slowdown_p99`` is
    at most 1.25 (a null slowdown, or a window with no task, never sustains). Counted
    against the tasks released rather than as throughput against the rate: a task released
    just before the window's end finishes after it, and in a short run at a low rate that one
    task is more than 1 % of the window's. A model that falls behind still fails: its late
    tasks raise the slowdown, its unfinished ones count as errors."""
    try:
        completed, errors = int(report["completed"]), int(report["errors"])
        released = completed + errors
        return (
            released > 0
            and completed >= SUSTAIN_COMPLETED_FRACTION * released
            and float(report["slowdown_p99"]) <= SUSTAIN_MAX_SLOWDOWN_P99
        )
    except (TypeError, ValueError, KeyError):  # null (NaN) or missing figures never sustain
        return False


@dataclass
class TaskRecord:
    """What happened to one released task (times in seconds after the run's start)."""

    index: int
    release_s: float
    start_s: float
    end_s: float
    ok: bool
    requests: int

    def as_tuple(self) -> tuple[int, float, float, float, bool, int]:
        """A compact form to send between processes."""
        return (self.index, self.release_s, self.start_s, self.end_s, self.ok, self.requests)

    @classmethod
    def from_tuple(cls, t: Sequence[Any]) -> "TaskRecord":
        return cls(int(t[0]), float(t[1]), float(t[2]), float(t[3]), bool(t[4]), int(t[5]))


def summarise(
    params: Params,
    model: str,
    cpu_alone_s: float,
    records: Sequence[TaskRecord],
    cpu_per_wall_s: float,
    peak_rss_mb: float,
) -> dict[str, Any]:
    """The spec's figures from the finished tasks, keys in :data:`REPORT_KEYS` order,
    computed exactly as the Rust bench's ``summarise``. NaN figures stay NaN here;
    :func:`report_json` writes them as ``null`` (as serde_json does)."""
    window = params.duration_s - params.warmup_s
    by_index = {r.index: r for r in records}
    clock = IdealClock()
    latency: list[float] = []
    slow: list[float] = []
    exec_slow: list[float] = []
    measured = completed = 0
    for task in schedule(params):
        new_items = 0 if task.seq == 1 else params.fresh
        poll_delay, action_delays = task_delays(task.zap, task.seq, new_items, params)
        work_s = (poll_delay + sum(action_delays)) / 1e3 + cpu_alone_s
        _, ideal_end = clock.ideal(task.zap, task.release_s, work_s)
        if not params.in_measured_window(task.release_s):
            continue
        measured += 1
        r = by_index.get(task.index)
        if r is None or not r.ok:
            continue
        completed += 1
        lat = r.end_s - r.release_s
        latency.append(lat * 1e3)
        slow.append(lat / (ideal_end - r.release_s))
        exec_slow.append((r.end_s - r.start_s) / work_s)
    for v in (latency, slow, exec_slow):
        v.sort()

    def in_window(s: float) -> bool:
        return params.warmup_s <= s < params.duration_s

    done_in_window = sum(1 for r in records if r.ok and in_window(r.end_s))
    requests = sum(r.requests for r in records if in_window(r.end_s))

    def p(v: Sequence[float], q: float) -> float:
        x = percentile(v, q)
        return math.nan if x is None else x

    values = {
        "model": model,
        "rate": float(params.rate),
        "rounds": params.rounds,
        "completed": completed,
        "errors": measured - completed,
        "throughput": done_in_window / window,
        "latency_p50_ms": p(latency, 50),
        "latency_p99_ms": p(latency, 99),
        "latency_max_ms": latency[-1] if latency else math.nan,
        "slowdown_p50": p(slow, 50),
        "slowdown_p99": p(slow, 99),
        "exec_slowdown_p50": p(exec_slow, 50),
        "exec_slowdown_p99": p(exec_slow, 99),
        "cpu_per_wall_s": cpu_per_wall_s,
        "peak_rss_mb": peak_rss_mb,
        "upstream_rps": requests / window,
    }
    return {key: values[key] for key in REPORT_KEYS}


def task_figures(
    params: Params, cpu_alone_s: float, records: Sequence[TaskRecord]
) -> list[tuple[float, bool, float, float]]:
    """Per finished task, ``(end_s, ok, latency_ms, slowdown)``, on the ideal clock of
    :func:`summarise` (every task, warm-up and drain included): what a timeline charts."""
    by_index = {r.index: r for r in records}
    clock = IdealClock()
    out = []
    for task in schedule(params):
        new_items = 0 if task.seq == 1 else params.fresh
        poll_delay, action_delays = task_delays(task.zap, task.seq, new_items, params)
        work_s = (poll_delay + sum(action_delays)) / 1e3 + cpu_alone_s
        _, ideal_end = clock.ideal(task.zap, task.release_s, work_s)
        r = by_index.get(task.index)
        if r is None:
            continue
        lat = r.end_s - r.release_s
        out.append((r.end_s, r.ok, lat * 1e3, slowdown(lat, ideal_end - r.release_s)))
    return out


def report_json(report: Mapping[str, Any]) -> str:
    """One report as a JSON line, keys in :data:`REPORT_KEYS` order; non-finite numbers as ``null``."""

    def clean(v: Any) -> Any:
        return None if isinstance(v, float) and not math.isfinite(v) else v

    return json.dumps({key: clean(report[key]) for key in REPORT_KEYS}, separators=(",", ":"))


# --------------------------------------------------------------------------
# Calibration (the one impure helper: it reads the clock)
# --------------------------------------------------------------------------


#: Untimed runs before the timed ones (caches and allocator settle), as the Rust bench.
CPU_ALONE_WARM_UP_RUNS = 10
#: Timed runs of the CPU step alone (the median is taken), as the Rust bench.
CPU_ALONE_RUNS = 101


class CpuAlone(NamedTuple):
    """One poll's CPU step measured alone, in seconds of the thread's CPU time
    (the twin of the Rust bench's ``CpuAlone``)."""

    #: The whole transform of one poll (parse, canonical forms, fingerprints, dedup): median.
    transform_s: float
    #: A bare loop of the same SHA-256 rounds over the same canonical bytes: median.
    sha_s: float

    @property
    def overhead_s(self) -> float:
        """What the transform adds to the workload's own hashing (parse, canonical form, ...)."""
        return max(0.0, self.transform_s - self.sha_s)

    def line(self) -> str:
        """The stderr line both benches print (``switchyard bench``'s wording and format)."""
        return (
            f"  CPU step alone (thread CPU clock, median): transform {self.transform_s * 1e3:.3f} ms"
            f" = SHA-256 loop {self.sha_s * 1e3:.3f} ms + the rest {self.overhead_s * 1e3:.3f} ms"
        )


_CPU_ALONE_LINE = re.compile(
    r"CPU step alone \(thread CPU clock, median\): transform ([0-9.]+) ms = SHA-256 loop ([0-9.]+) ms"
    r" \+ the rest ([0-9.]+) ms"
)
_CPU_PER_TASK_LINE = re.compile(
    r"CPU per task in the window: ([0-9.]+|NaN|nan|inf) ms = reactor ([0-9.]+|NaN|nan|inf)"
    r" \+ CPU threads ([0-9.]+|NaN|nan|inf) \+ other threads ([0-9.]+|NaN|nan|inf)"
)


def parse_cpu_alone_line(text: str) -> Optional[dict[str, float]]:
    """``{"transform_ms", "sha_ms", "rest_ms"}`` from the last CPU-step-alone line in ``text``."""
    found = _CPU_ALONE_LINE.findall(text)
    if not found:
        return None
    t, s, r = (float(x) for x in found[-1])
    return {"transform_ms": t, "sha_ms": s, "rest_ms": r}


def parse_cpu_per_task_line(text: str) -> Optional[dict[str, float]]:
    """``{"total_ms", "reactor_ms", "cpu_threads_ms", "other_ms"}`` from the Rust bench's
    last CPU-per-task line in ``text`` (its split of a run's CPU by thread role)."""
    found = _CPU_PER_TASK_LINE.findall(text)
    if not found:
        return None
    keys = ("total_ms", "reactor_ms", "cpu_threads_ms", "other_ms")
    return {k: float(v) for k, v in zip(keys, found[-1], strict=True)}


def calibrate_cpu_alone(
    params: Params,
    runs: int = CPU_ALONE_RUNS,
    between_items: Optional[Callable[[], Any]] = None,
    warm_up: int = CPU_ALONE_WARM_UP_RUNS,
) -> CpuAlone:
    """The CPU step of one task measured alone, as the Rust bench's ``calibrate_cpu_alone``:
    poll 2 of ``z0`` transformed, and a bare SHA-256 loop of the same rounds over the same
    canonical bytes, each timed by this thread's CPU clock (``time.thread_time_ns``, so
    time spent waiting for a core is not counted), ``warm_up`` untimed runs first, then
    ``runs`` timed runs of each, alternating; the medians. The transform is the CPU part
    of every task's ideal latency. Pass the same ``between_items`` the peer's tasks use
    (the gevent peer's yield: with no other greenlet, a switch to the hub and back)."""
    body = poll_body("z0", 2, params.items, params.fresh)
    rounds = max(1, params.rounds)
    canon = [t.canonical_json.encode() for t in transform_poll(body, rounds)]
    clock = time.thread_time_ns

    def run_transform() -> int:
        start = clock()
        transform_poll(body, rounds, between_items)
        return clock() - start

    def run_sha() -> int:
        start = clock()
        for b in canon:
            fingerprint_raw(b, rounds)
        return clock() - start

    for _ in range(max(0, warm_up)):
        run_transform()
        run_sha()
    transform_ns: list[int] = []
    sha_ns: list[int] = []
    for _ in range(max(1, runs)):
        transform_ns.append(run_transform())
        sha_ns.append(run_sha())
    transform_ns.sort()
    sha_ns.sort()
    return CpuAlone(transform_ns[len(transform_ns) // 2] / 1e9, sha_ns[len(sha_ns) // 2] / 1e9)


def parse_pss_kib(smaps_rollup: str) -> Optional[int]:
    """The ``Pss:`` figure (KiB) of a ``/proc/PID/smaps_rollup`` text, or ``None``: a
    process's proportional set size, where a page shared by n processes counts 1/n."""
    for line in smaps_rollup.splitlines():
        if line.startswith("Pss:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1])
    return None


def params_from_flags(flags: object, rate: float) -> Params:
    """The workload's parameters from parsed command-line flags named as the
    spec's parameters (``--duration``, ``--base-ms``, ...), at ``rate``."""
    return Params(
        rate=rate,
        duration_s=flags.duration,  # type: ignore[attr-defined]
        warmup_s=flags.warmup,  # type: ignore[attr-defined]
        drain_s=flags.drain,  # type: ignore[attr-defined]
        zaps=flags.zaps,  # type: ignore[attr-defined]
        items=flags.items,  # type: ignore[attr-defined]
        fresh=flags.fresh,  # type: ignore[attr-defined]
        rounds=flags.rounds,  # type: ignore[attr-defined]
        base_ms=flags.base_ms,  # type: ignore[attr-defined]
        alpha=flags.alpha,  # type: ignore[attr-defined]
        max_ms=flags.max_ms,  # type: ignore[attr-defined]
    )

