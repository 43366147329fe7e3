"""What every part of the PZ-1 comparison shares: paths, the machine's cores, the
disturbance limit, the log and the number formatting."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any


HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CORES = os.cpu_count() or 1
#: A run is disturbed when the hypervisor stole, or processes outside the run used,
#: more than this share of the machine's CPU time during it.
DISTURBED_SHARE = 0.05


def log(msg: str) -> None:
    """A progress line on stderr (tests silence it by replacing this function)."""
    print(msg, file=sys.stderr, flush=True)


def num(v: Any) -> float:
    try:
        return math.nan if v is None else float(v)
    except (TypeError, ValueError):
        return math.nan


def fmt_rate(v: Any) -> str:
    """A rate as the bisection tried it (17.7, 595): never rounded to a rate that did not run."""
    v = num(v)
    return f"{v:g}" if math.isfinite(v) else "-"


def fmt(v: Any, digits: int = 1) -> str:
    v = num(v) if not isinstance(v, str) else v
    if isinstance(v, str):
        return v
    if not math.isfinite(v):
        return "-"
    return f"{v:.{digits}f}"
