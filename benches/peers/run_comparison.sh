#!/usr/bin/env bash
# PZ-1 comparison: each model's ceiling, Switchyard against the Python peers, in ONE invocation.
#
#   benches/peers/run_comparison.sh                # the full comparison: 60 s runs, ~2 to 3 hours
#   benches/peers/run_comparison.sh --smoke        # one step per model at 10/s, 8 s runs: about 3 minutes
#   benches/peers/run_comparison.sh --switchyard target/release/switchyard   # use this binary, build nothing
#   benches/peers/run_comparison.sh --bracket hybrid=500:700,gevent=20:35 --repeats 5
#   benches/peers/run_comparison.sh --render benches/peers/results/<stamp>.jsonl   # redraw only
#
# What it does:
#   1. creates the venv benches/peers/.venv (Python 3.11) and installs requirements.txt (pinned,
#      hiredis included), again only when requirements.txt changes;
#   2. builds the release binary (cargo build --release -p switchyard-cli), unless --switchyard is given;
#   3. runs compare.py, which starts a private MariaDB on tmpfs (/dev/shm, free port, deleted at
#      the end, also on Ctrl-C; --mysql-url uses another) and `switchyard upstream`, then bisects
#      the ceiling of every model: hybrid, hybrid/1, reactor-only (switchyard bench), gevent/<cores>,
#      prefork/16, and hybrid@eqcpu (hybrid at the --rounds that make its CPU step alone cost what
#      Python's does at 400 rounds, calibrated at the start), after a first step at low load (a
#      quarter of each bracket's low end; --low-load). Each bisection step runs one rate per
#      model still bisecting, 3 times (--repeats), alternating the models' order each round; every
#      run is 60 s of releases + 5 s warm-up inside + up to 30 s drain (--duration/--warmup/--drain).
#      A run where the hypervisor's steal or other processes' CPU exceeds 5 % of the machine is
#      marked disturbed, repeated (at most twice) and left out of the medians;
#      A last step runs hybrid@eqcpu at gevent's ceiling. Then the tail study: 10 runs
#      (--tail-runs) of hybrid at 25 %, 50 % and 80 % of its ceiling (--tail-fractions), rates
#      alternating, each with its timeline (target: slowdown p99 <= 1.10 in >= 9 of 10 runs);
#   4. writes every run to benches/peers/results/<stamp>.jsonl (raw, with machine, commit, CPU step
#      alone, CPU per task, steal, other processes' CPU, the timeline file) and renders <stamp>.md
#      (medians with ranges, ceilings, ratios, the machine's CPU ceiling) and the charts
#      <stamp>-{slowdown_p99,throughput,peak_memory}.svg, plus per-second timeline charts.
#
# Expected wall time of the default: about 5 bisection steps per model x 3 repeats x 6 models x
# ~75-100 s per run, plus 30 tail runs: 2.5 to 3.5 hours on a quiet machine, more when runs are
# disturbed (--tail-runs 0 leaves the tail study out). Leave the
# machine alone meanwhile: other work on it makes runs disturbed and repeats them.
#
# Needs Redis at redis://127.0.0.1:6379/ (--redis-url / PZ1_REDIS_URL) and mariadb-server installed
# (for the private MariaDB) or --mysql-url / PZ1_MYSQL_URL. Every run clears the seen-sets under
# --key-prefix (default pz:seen:) and adds rows to table pz_runs.
# All other flags go to compare.py: see `benches/peers/run_comparison.sh --help`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3

if [[ ! -x "$venv/bin/python" ]]; then
    echo "creating $venv" >&2
    "$python" -m venv "$venv"
fi
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    echo "installing requirements.txt into $venv" >&2
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt"
    echo "$want" >"$stamp"
fi

build=1
for arg in "$@"; do
    [[ "$arg" == --render* || "$arg" == -h || "$arg" == --help || "$arg" == --switchyard* ]] && build=0
done
binary=()
if [[ $build -eq 1 ]]; then
    echo "building the release binary" >&2
    (cd "$root" && cargo build --release -p switchyard-cli --quiet)
    binary=(--switchyard "$root/target/release/switchyard")
fi

exec "$venv/bin/python" "$here/compare.py" "${binary[@]}" "$@"
