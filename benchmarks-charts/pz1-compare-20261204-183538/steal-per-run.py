"""Per run of a comparison: its steal beside the mean interrupts, context switches and
CPU split of `vmstat -t 1` over the run (10 s after its start to 5 s before its end;
the end is its timeline file's mtime, so run it on the invocation's own results directory,
before any copy changes the mtimes). Usage: steal-per-run.py <stamp>.jsonl vmstat.log"""
import json, os, sys, datetime, statistics as st
res, vmstat_log = sys.argv[1], sys.argv[2]  # <stamp>.jsonl, a 'vmstat -t 1' log of the same hours
base = os.path.dirname(res)
vm = []
for line in open(vmstat_log):
    p = line.split()
    if len(p) < 19 or not p[0].isdigit():
        continue
    t = datetime.datetime.strptime(p[-2] + ' ' + p[-1], '%Y-%m-%d %H:%M:%S').timestamp()
    vm.append((t, int(p[10]), int(p[11]), int(p[12]), int(p[13]), int(p[14]), int(p[16])))
print(f"{'run':32} {'steal% run':>10} {'in/s':>7} {'cs/s':>7} {'us':>4} {'sy':>4} {'id':>4} {'st':>4}")
for line in open(res):
    r = json.loads(line)
    tl = os.path.join(base, r.get('timeline') or '')
    if not r.get('timeline') or not os.path.exists(tl):
        continue
    end = os.path.getmtime(tl); start = end - r['wall_s']
    w = [v for v in vm if start + 10 <= v[0] <= end - 5]
    if len(w) < 10:
        continue
    m = lambda i: st.mean(x[i] for x in w)
    name = f"{r['label']}@{r['rate']:g} r{r['round']} a{r['attempt']}"
    print(f"{name:32} {100*r['steal']:10.1f} {m(1):7.0f} {m(2):7.0f} {m(3):4.0f} {m(4):4.0f} {m(5):4.0f} {m(6):4.1f}")
