#!/usr/bin/env bash
# PZ-1 comparison: Switchyard's models vs the Python peers (gevent, prefork). The one command.
#
#   benches/peers/run_comparison.sh                # default sweep: rates 25,50,100, 60 s runs (~20 min)
#   benches/peers/run_comparison.sh --smoke        # one rate (20/s), 8 s runs: about two minutes
#   benches/peers/run_comparison.sh --rates 10,40,80 --duration 30 --warmup 5
#   benches/peers/run_comparison.sh --render benches/peers/results/<stamp>.jsonl   # redraw only
#
# What it does:
#   1. creates the venv benches/peers/.venv (Python 3.11) and installs requirements.txt (pinned),
#      again only when requirements.txt changes;
#   2. builds the release binary (cargo build --release -p switchyard-cli);
#   3. runs compare.py, which starts `switchyard upstream` on a free port and, for each rate, runs
#      `switchyard bench --models hybrid,reactor-only,threads`, gevent_peer.py (--procs = cores) and
#      prefork_peer.py (16 workers), all with the same parameters against real Redis and MySQL;
#   4. writes every report line to benches/peers/results/<stamp>.jsonl and renders
#      <stamp>.md (table, ceilings) and <stamp>-{slowdown_p99,throughput,peak_rss}.svg beside it.
#
# Needs Redis at redis://127.0.0.1:6379/ and MySQL/MariaDB at mysql://root@127.0.0.1:3306/test
# (override with --redis-url / --mysql-url, or PZ1_REDIS_URL / PZ1_MYSQL_URL). Every run clears
# the seen-sets under --key-prefix (default pz:seen:) and adds rows to table pz_runs.
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

render_only=0
for arg in "$@"; do
    [[ "$arg" == --render* || "$arg" == -h || "$arg" == --help ]] && render_only=1
done
if [[ $render_only -eq 0 ]]; then
    echo "building the release binary" >&2
    (cd "$root" && cargo build --release -p switchyard-cli --quiet)
fi

cd "$here"
exec "$venv/bin/python" "$here/compare.py" --switchyard "$root/target/release/switchyard" "$@"
