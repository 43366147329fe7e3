#!/usr/bin/env python3
"""Summarises an engine-cost log (engine-cost-*.sh): per setting and version,
medians [min-max] of the cost lines, leaving out runs with steal over 5 %."""
import json, re, statistics, sys
from collections import defaultdict

runs = defaultdict(list)
cur = None
for line in open(sys.argv[1]):
    m = re.match(r"### round=(\d+) stores=(\w+) rate=(\d+) version=(\w+)", line)
    if m:
        cur = {"stores": m[2], "rate": int(m[3]), "version": m[4]}
        continue
    if cur is None:
        continue
    m = re.search(r"CPU step alone .*transform ([\d.]+) ms = SHA-256 loop ([\d.]+) ms \+ the rest ([\d.]+)", line)
    if m:
        cur.update(transform=float(m[1]), sha=float(m[2]), rest=float(m[3]))
    m = re.search(r"CPU per task in the window: ([\d.]+) ms = reactor ([\d.]+) \+ CPU threads ([\d.]+) \+ other threads ([\d.]+)", line)
    if m:
        cur.update(all=float(m[1]), reactor=float(m[2]), cpu=float(m[3]), other=float(m[4]))
    if line.startswith("{"):
        j = json.loads(line)
        cur.update(slow99=j["slowdown_p99"], rss=j["peak_rss_mb"])
    m = re.match(r"machine: idle [\d.]+% steal ([\d.]+)%", line)
    if m:
        cur["steal"] = float(m[1])
        runs[(cur["stores"], cur["rate"], cur["version"])].append(cur)
        cur = None

def fmt(xs, d=3):
    if not xs:
        return "-"
    med = statistics.median(xs)
    return f"{med:.{d}f} [{min(xs):.{d}f}-{max(xs):.{d}f}]" if len(xs) > 1 else f"{med:.{d}f}"

print("| stores, rate | version | all | reactor | CPU threads | other | transform alone | SHA-256 alone | CPU threads − SHA | slowdown p99 | peak RSS MB |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for key in sorted(runs, key=lambda k: (k[0], -k[1], k[2] != "before")):
    rs = runs[key]
    ok = [r for r in rs if r.get("steal", 0) <= 5 and "all" in r]
    col = lambda k: [r[k] for r in ok]
    print(f"| {key[0]}, {key[1]}/s | {key[2]} (n={len(ok)} of {len(rs)}) | {fmt(col('all'))} | {fmt(col('reactor'))} | "
          f"{fmt(col('cpu'))} | {fmt(col('other'))} | {fmt(col('transform'))} | {fmt(col('sha'))} | "
          f"{fmt([r['cpu'] - r['sha'] for r in ok])} | {fmt(col('slow99'))} | {fmt(col('rss'), 1)} |")
ratio = {}
for stores in ("embedded", "real"):
    for version in ("before", "after"):
        lo = [r["all"] for r in runs.get((stores, 50, version), []) if r.get("steal", 0) <= 5]
        hi = [r["all"] for r in runs.get((stores, 400, version), []) if r.get("steal", 0) <= 5]
        if lo and hi:
            print(f"{stores} {version}: CPU per task at 50/s over 400/s = {statistics.median(lo) / statistics.median(hi):.2f}")
