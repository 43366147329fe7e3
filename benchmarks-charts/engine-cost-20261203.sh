#!/usr/bin/env bash
# Engine's own cost per task, before (4e40f7a) and after (HEAD), alternated, 3 rounds.
# Usage: engine-cost-20261203.sh OUT.log BEFORE_BINARY AFTER_BINARY
#   (here: a release build of 4e40f7a, and target/release/switchyard built at 081020e)
set -u
out=$1
before=$2
after=$3
common="--models hybrid --duration 30 --warmup 5 --drain 10"
real="--redis-url redis://127.0.0.1:6379/ --mysql-url mysql://root@127.0.0.1:3306/test --key-prefix pz:cost:"
: > "$out"
for round in 1 2 3; do
  for setting in "embedded 400" "embedded 50" "real 400" "real 50"; do
    set -- $setting; stores=$1; rate=$2
    extra=""; [ "$stores" = real ] && extra="$real"
    if [ $((round % 2)) -eq 1 ]; then order="before after"; else order="after before"; fi
    for which in $order; do
      bin=$before; [ "$which" = after ] && bin=$after
      s0=$(head -1 /proc/stat)
      echo "### round=$round stores=$stores rate=$rate version=$which" >> "$out"
      $bin bench $common --rate "$rate" $extra --run-id-prefix "cost-$which-" --json >> "$out" 2>&1
      s1=$(head -1 /proc/stat)
      python3 - "$s0" "$s1" >> "$out" <<'PY'
import sys
a=[int(x) for x in sys.argv[1].split()[1:]]; b=[int(x) for x in sys.argv[2].split()[1:]]
d=[y-x for x,y in zip(a,b)]; t=sum(d)
print(f"machine: idle {100*(d[3]+d[4])/t:.1f}% steal {100*d[7]/t:.1f}% busy {100*(t-d[3]-d[4]-d[7])/t:.1f}%")
PY
    done
  done
done
echo "### end" >> "$out"
