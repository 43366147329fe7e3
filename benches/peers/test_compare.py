"""Tests of compare.py's bisection, its handling of disturbed runs, and the
parsers it and the peers rely on (stdlib only: ``python -m unittest``)."""

from __future__ import annotations

import math
import unittest

import bisection
import compare
import compare_base
import machine_watch
import pz1
import report

SMAPS_ROLLUP = """55fca6aad000-7ffd7e5b0000 ---p 00000000 00:00 0                          [rollup]
Rss:               81744 kB
Pss:               23312 kB
Pss_Dirty:         11616 kB
Pss_Anon:          11616 kB
Pss_File:          11696 kB
Pss_Shmem:             0 kB
Shared_Clean:      61628 kB
Private_Dirty:     11616 kB
"""


def setUpModule() -> None:
    compare_base.log = lambda msg: None  # the bisection's progress lines


def fake_runner(ceilings: dict[str, float], calls: list, disturbed: set = frozenset()):
    """A runner whose models sustain exactly the rates up to their ceiling; runs at
    (label, rate, attempt) in ``disturbed`` come back disturbed and not sustaining."""
    attempts: dict = {}

    def run(model, rate, round_, position, step):
        calls.append((model.label, rate, round_, position))
        rows = []
        for attempt in range(3):
            key = (model.label, rate, round_)
            attempts[key] = attempts.get(key, -1) + 1
            bad = (model.label, rate, attempts[key]) in disturbed
            ok = rate <= ceilings[model.label] and not bad
            rows.append({"label": model.label, "rate": rate, "step": step, "sustains": ok, "disturbed": bad,
                         "slowdown_p99": 1.1 if ok else 3.0, "throughput": rate})
            if not bad:
                break
        return rows

    return run


class BisectionTest(unittest.TestCase):
    def search(self, label, lo, hi, **kw):
        return bisection.Bisection(label, lo, hi, kw.pop("tolerance", 1.1), kw.pop("max_steps", 20))

    def test_finds_the_ceiling_within_the_tolerance(self):
        models = compare.parse_models("hybrid,gevent/2", 2, 16)
        searches = {"hybrid": self.search("hybrid", 400, 800), "gevent/2": self.search("gevent/2", 15, 40)}
        calls: list = []
        bisection.bisect_all(models, searches, fake_runner({"hybrid": 613, "gevent/2": 27}, calls), repeats=3)
        for label, ceiling in (("hybrid", 613), ("gevent/2", 27)):
            s = searches[label]
            self.assertLessEqual(s.lo, ceiling)
            self.assertGreater(s.hi, ceiling)
            self.assertLessEqual(s.hi / s.lo, 1.1 + 1e-9, (label, s.lo, s.hi))

    def test_expands_the_bracket_both_ways(self):
        models = compare.parse_models("hybrid,prefork/16", 2, 16)
        # hybrid's bracket is far below its ceiling; prefork's far above.
        searches = {"hybrid": self.search("hybrid", 10, 20), "prefork/16": self.search("prefork/16", 40, 80)}
        calls: list = []
        bisection.bisect_all(models, searches, fake_runner({"hybrid": 300, "prefork/16": 7}, calls), repeats=1)
        tried = [r for label, r, _, _ in calls if label == "hybrid"]
        self.assertEqual(tried[:4], [10, 20, 40, 80], "the upper end doubles until it fails")
        self.assertTrue(searches["hybrid"].lo <= 300 < searches["hybrid"].hi)
        tried = [r for label, r, _, _ in calls if label == "prefork/16"]
        self.assertEqual(tried[:3], [40, 20, 10], "the lower end halves until it sustains")
        self.assertTrue(searches["prefork/16"].lo <= 7 < searches["prefork/16"].hi)

    def test_every_step_runs_all_models_alternating_order(self):
        models = compare.parse_models("hybrid,reactor-only,gevent/2", 2, 16)
        searches = {m.label: self.search(m.label, 10, 20, max_steps=2) for m in models}
        calls: list = []
        bisection.bisect_all(models, searches, fake_runner({m.label: 100 for m in models}, calls), repeats=3)
        by_round: dict = {}
        for label, _, round_, position in calls:
            by_round.setdefault(round_, []).append((position, label))
        self.assertEqual(len(by_round), 6, "2 steps x 3 repeats")
        for round_, runs in by_round.items():
            order = [label for _, label in sorted(runs)]
            want = ["hybrid", "reactor-only", "gevent/2"]
            self.assertEqual(order, want if round_ % 2 == 0 else want[::-1])

    def test_a_low_load_step_comes_first_and_leaves_the_bisection_alone(self):
        models = compare.parse_models("hybrid,gevent/2", 2, 16)
        searches = {"hybrid": self.search("hybrid", 400, 800), "gevent/2": self.search("gevent/2", 15, 40)}
        calls: list = []
        rows = bisection.bisect_all(models, searches, fake_runner({"hybrid": 613, "gevent/2": 27}, calls), repeats=3,
                                  low_load={"hybrid": 100, "gevent/2": 4})
        self.assertEqual([(label, rate) for label, rate, _, _ in calls[:6]],
                         [("hybrid", 100), ("gevent/2", 4), ("gevent/2", 4), ("hybrid", 100),
                          ("hybrid", 100), ("gevent/2", 4)], "three alternating rounds at low load first")
        self.assertEqual(calls[6][:3], ("gevent/2", 15, 3), "the bisection starts at its bracket; rounds go on alternating")
        self.assertEqual({r["step"] for r in rows[:6]}, {"low load"})
        self.assertEqual(searches["hybrid"].tried[0], (400, True), "the low point is not a bisection step")
        self.assertTrue(searches["gevent/2"].lo <= 27 < searches["gevent/2"].hi)

    def test_the_equal_cpu_model_also_runs_at_the_references_ceiling(self):
        models = compare.parse_models("gevent/2,hybrid@eqcpu", 2, 16)
        searches = {"gevent/2": self.search("gevent/2", 15, 40), "hybrid@eqcpu": self.search("hybrid@eqcpu", 50, 100)}
        calls: list = []
        rows = bisection.bisect_all(models, searches, fake_runner({"gevent/2": 27, "hybrid@eqcpu": 70}, calls),
                                  repeats=3, equal_cpu_check=("hybrid@eqcpu", "gevent/2"))
        ceiling = searches["gevent/2"].lo
        last = [(label, rate) for label, rate, _, _ in calls[-3:]]
        self.assertEqual(last, [("hybrid@eqcpu", ceiling)] * 3)
        self.assertEqual({r["step"] for r in rows[-3:]}, {"at gevent/2's ceiling"})

    def test_max_steps_stops_a_search(self):
        s = self.search("hybrid", 10, 20, max_steps=1)
        self.assertEqual(s.next_rate(), 10)
        s.record(10, True)
        self.assertIsNone(s.next_rate())

    def test_a_model_failing_everywhere_stops(self):
        s = bisection.Bisection("x", 1, 2, 1.1, 20, min_rate=0.5)
        while (r := s.next_rate()) is not None:
            s.record(r, False)
        self.assertIsNone(s.lo)
        self.assertIn("fails even at", s.note)


class DisturbedRunsTest(unittest.TestCase):
    def test_disturbed_runs_never_enter_the_verdict_or_medians(self):
        rows = [
            {"label": "m", "rate": 10.0, "sustains": False, "disturbed": True, "slowdown_p99": 9.0, "throughput": 2.0},
            {"label": "m", "rate": 10.0, "sustains": False, "disturbed": True, "slowdown_p99": 8.0, "throughput": 3.0},
            {"label": "m", "rate": 10.0, "sustains": True, "disturbed": False, "slowdown_p99": 1.1, "throughput": 10.0},
        ]
        self.assertTrue(bisection.point_verdict(rows))
        self.assertEqual(report.cell(r["slowdown_p99"] for r in bisection.usable(rows)), "1.1")
        self.assertEqual(report.ceilings(rows), {"m": (10.0, None)})
        self.assertIsNone(bisection.point_verdict(rows[:2]), "no undisturbed run: undecided")

    def test_a_disturbed_run_is_repeated_and_the_retry_counts(self):
        models = compare.parse_models("hybrid", 2, 16)
        searches = {"hybrid": bisection.Bisection("hybrid", 10, 20, 1.1, 1)}
        calls: list = []
        rows = bisection.bisect_all(
            models, searches, fake_runner({"hybrid": 100}, calls, disturbed={("hybrid", 10, 0)}), repeats=1
        )
        self.assertEqual([r["disturbed"] for r in rows], [True, False])
        self.assertEqual(searches["hybrid"].lo, 10, "the retry sustained; the disturbed run was ignored")

    def test_median_run_decides(self):
        def row(ok, slow):
            return {"sustains": ok, "disturbed": False, "slowdown_p99": slow}

        self.assertTrue(bisection.point_verdict([row(True, 1.1), row(False, 1.3), row(True, 1.2)]))
        self.assertFalse(bisection.point_verdict([row(False, 1.4), row(False, 1.3), row(True, 1.2)]))

    def test_thresholds(self):
        self.assertFalse(machine_watch.is_disturbed(0.01, 0.049))
        self.assertTrue(machine_watch.is_disturbed(0.051, 0.0))
        self.assertTrue(machine_watch.is_disturbed(0.0, 0.2))
        self.assertFalse(machine_watch.is_disturbed(math.nan, math.nan))


class ParsingTest(unittest.TestCase):
    def test_pss_from_smaps_rollup(self):
        self.assertEqual(pz1.parse_pss_kib(SMAPS_ROLLUP), 23312)
        self.assertIsNone(pz1.parse_pss_kib("Rss: 12 kB\n"))

    def test_cpu_alone_line_of_rust_and_python(self):
        rust = (
            "hybrid at 5 tasks/s ...\n"
            "  CPU step alone (thread CPU clock, median): transform 1.179 ms = SHA-256 loop 1.074 ms + the rest 0.105 ms\n"
            "  CPU per task in the window: 2.632 ms = reactor 1.579 + CPU threads 1.053 + other threads 0.000\n"
        )
        self.assertEqual(
            pz1.parse_cpu_alone_line(rust), {"transform_ms": 1.179, "sha_ms": 1.074, "rest_ms": 0.105}
        )
        self.assertEqual(
            pz1.parse_cpu_per_task_line(rust),
            {"total_ms": 2.632, "reactor_ms": 1.579, "cpu_threads_ms": 1.053, "other_ms": 0.0},
        )
        line = pz1.CpuAlone(0.007251, 0.006485).line()
        self.assertEqual(pz1.parse_cpu_alone_line("x\n" + line + "\n"), {"transform_ms": 7.251, "sha_ms": 6.485, "rest_ms": 0.766})
        self.assertIsNone(pz1.parse_cpu_alone_line("nothing here"))
        self.assertIsNone(pz1.parse_cpu_per_task_line(line))

    def test_calibration_times_both_steps(self):
        alone = pz1.calibrate_cpu_alone(pz1.Params(rounds=20, items=10), runs=5, warm_up=1)
        self.assertGreater(alone.transform_s, 0)
        self.assertGreater(alone.sha_s, 0)
        self.assertGreaterEqual(alone.overhead_s, 0)

    def test_brackets_flag(self):
        self.assertEqual(compare.parse_brackets("hybrid=400:800,gevent=15:40"),
                         {"hybrid": (400.0, 800.0), "gevent": (15.0, 40.0)})


class HeadlineTest(unittest.TestCase):
    def test_each_system_at_its_own_ceiling_from_undisturbed_runs(self):
        def run(label, rate, ok, cpu, rss, slow, disturbed=False):
            return {"label": label, "rate": rate, "sustains": ok, "disturbed": disturbed, "slowdown_p99": slow,
                    "throughput": rate, "cpu_per_wall_s": cpu, "peak_rss_mb": rss, "cpu_ms_per_task": 1e3 * cpu / rate}
        rows = [run("prefork/16", 20, True, 0.4, 220, 1.1), run("prefork/16", 25, False, 0.5, 221, 1.4),
                run("gevent/2", 30, True, 0.6, 74, 1.2), run("gevent/2", 30, True, 0.6, 75, 1.21),
                run("gevent/2", 30, True, 1.9, 999, 1.0, disturbed=True),
                run("hybrid/1", 700, True, 1.0, 40, 1.1),
                run("hybrid", 900, True, 1.5, 50, 1.1), run("hybrid", 980, False, 1.8, 60, 4.0)]
        lines = report.headline(rows, 2)
        self.assertEqual(len(lines), 5, "header, rule, prefork, gevent, hybrid (not hybrid/1)")
        self.assertEqual(lines[2], "| prefork/16 | 20 | 20 | 220.0 | 1.100 | 20.00 |")
        self.assertEqual(lines[3], "| gevent/2 | 30 | 30 | 74.5 [74.0-75.0] | 1.205 [1.200-1.210] | 20.00 |",
                         "the disturbed run is left out")
        self.assertTrue(lines[4].startswith("| hybrid | 900 | 75 | 50.0 | 1.100 |"), lines[4])

    def test_a_fractional_ceiling_is_shown_as_the_rate_that_ran(self):
        # 17.7 ran and 18 did not: the table must not round a ceiling to an untried rate.
        rows = [{"label": "gevent/2", "rate": 17.7, "sustains": True, "slowdown_p99": 1.17, "throughput": 17.7,
                 "cpu_per_wall_s": 0.55, "peak_rss_mb": 75, "cpu_ms_per_task": 31.2},
                {"label": "gevent/2", "rate": 25, "sustains": False, "slowdown_p99": 1.27, "throughput": 25,
                 "cpu_per_wall_s": 0.8, "peak_rss_mb": 76, "cpu_ms_per_task": 32.0}]
        self.assertTrue(report.headline(rows, 2)[2].startswith("| gevent/2 | 17.7 | 28 |"))
        self.assertEqual(compare_base.fmt_rate(595.0), "595")
        self.assertEqual(compare_base.fmt_rate(2.75), "2.75")

    def test_the_machine_ceiling_counts_every_process_at_hybrids_lowest_rate(self):
        def run(rate, engine, disturbed=False):
            return {"label": "hybrid", "rate": rate, "disturbed": disturbed, "cpu_ms_per_task": engine,
                    "stores_cpu_ms_per_task": 0.3, "upstream_cpu_s": 0.2 * rate * 60 / 1e3, "tasks_scheduled": rate * 60}
        rows = [run(800, 1.5), run(200, 1.7), run(200, 1.7), run(200, 9.0, disturbed=True)]
        mc = report.machine_ceiling(rows, 2)
        self.assertEqual(mc["rate"], 200)
        self.assertAlmostEqual(mc["upstream_ms"], 0.2)
        self.assertAlmostEqual(mc["ceiling"], 2e3 / (1.7 + 0.3 + 0.2))
        self.assertAlmostEqual(mc["ceiling_without_upstream"], 2e3 / (1.7 + 0.3))


class MemoryTest(unittest.TestCase):
    def test_each_peer_at_its_ceiling_against_each_switchyard_model_at_its_own(self):
        def run(label, rate, ok, rss, disturbed=False):
            return {"label": label, "rate": rate, "sustains": ok, "disturbed": disturbed, "slowdown_p99": 1.1 if ok else 3,
                    "throughput": rate, "peak_rss_mb": rss}
        rows = [run("prefork/16", 20, True, 220), run("prefork/16", 25, False, 221),
                run("prefork/64", 80, True, 880), run("prefork/64", 80, True, 900),
                run("prefork/64", 80, True, 5000, disturbed=True), run("prefork/64", 90, False, 905),
                run("hybrid", 1000, True, 50), run("hybrid", 1100, False, 70)]
        lines = report.memory_section(rows)
        self.assertEqual(lines[4], "| prefork/16 / hybrid | 20 | 220.0 | 1000 | 50.0 | 4.4× | 220× |")
        self.assertEqual(lines[5], "| prefork/64 / hybrid | 80 | 890.0 | 1000 | 50.0 | 17.8× | 222× |",
                         "the disturbed run is left out, and the rate above the ceiling too")
        self.assertEqual(len(lines), 7)

    def test_nothing_without_a_ceiling_on_both_sides(self):
        rows = [{"label": "prefork/16", "rate": 20, "sustains": False, "slowdown_p99": 3, "throughput": 5, "peak_rss_mb": 220},
                {"label": "hybrid", "rate": 900, "sustains": True, "slowdown_p99": 1.1, "throughput": 900, "peak_rss_mb": 50}]
        self.assertEqual(report.memory_section(rows), [])


class TailTest(unittest.TestCase):
    def test_every_rate_runs_the_given_times_alternating_order(self):
        (model,) = compare.parse_models("hybrid", 2, 16)
        calls: list = []
        rows = bisection.tail_study(model, [150, 300, 480], fake_runner({"hybrid": 600}, calls), runs=4)
        self.assertEqual([rate for _, rate, _, _ in calls],
                         [150, 300, 480, 480, 300, 150, 150, 300, 480, 480, 300, 150])
        self.assertEqual(len(rows), 12)
        self.assertEqual({r["step"] for r in rows}, {"tail"}, "the runner is told the step, so the JSONL has it")
        self.assertEqual(report.tail_section(rows)[4][:5], "| 150", "the section reads the rows as written")

    def tail_row(self, rate, slow, disturbed=False):
        return {"label": "hybrid", "rate": rate, "step": "tail", "sustains": True, "disturbed": disturbed,
                "slowdown_p99": slow, "throughput": rate, "timeline": f"t-{rate}-{slow}.jsonl"}

    def bisection_rows(self):
        return [{"label": "hybrid", "rate": r, "step": "bisection", "sustains": ok, "disturbed": False,
                 "slowdown_p99": 1.05 if ok else 2.0, "throughput": r} for r, ok in ((600, True), (700, False))]

    def test_the_section_counts_runs_within_the_target_per_rate(self):
        slow480 = [1.04, 1.05, 1.12, 1.06, 1.07, 1.05, 1.08, 1.09, 1.03, 1.10]
        slow150 = [1.02] * 8 + [1.3, 1.4]
        rows = self.bisection_rows() + [self.tail_row(480, v) for v in slow480] + [self.tail_row(150, v) for v in slow150]
        rows.append(self.tail_row(480, 5.0, disturbed=True))
        lines = report.tail_section(rows)
        row150 = next(line for line in lines if line.startswith("| 150 |"))
        row480 = next(line for line in lines if line.startswith("| 480 |"))
        self.assertIn("| 25% | 10 (+0) |", row150)
        self.assertIn("| 8 of 10 |", row150)
        self.assertTrue(row150.endswith("**missed** |"), row150)
        self.assertIn("| 80% | 10 (+1) |", row480, "the disturbed run is counted apart")
        self.assertIn("| 9 of 10 |", row480, "1.10 itself is within the target")
        self.assertTrue(row480.endswith("**met** |"), row480)

    def test_tail_runs_leave_the_ceiling_and_the_table_alone(self):
        rows = self.bisection_rows() + [dict(self.tail_row(480, 3.0), sustains=False)]
        self.assertEqual(report.ceilings(rows)["hybrid"], (600, 700), "a failed tail run is not a bisection point")
        self.assertNotIn(("hybrid", 480), report.points_of(rows))
        self.assertEqual(report.tail_section(self.bisection_rows()), [])

    def test_the_worst_and_the_best_run_of_each_rate_are_drawn(self):
        rows = [self.tail_row(480, v) for v in (1.05, 1.2, 1.03)] + [self.tail_row(150, 1.01)]
        drawn = [(r["rate"], r["slowdown_p99"]) for r in report.tail_runs_to_draw(rows)]
        self.assertEqual(drawn, [(150, 1.01), (480, 1.2), (480, 1.03)])

    def test_fractions_flag(self):
        self.assertEqual(compare.parse_fractions("0.25, 0.5,0.8"), (0.25, 0.5, 0.8))
        for bad in ("", "0", "1.5", "a"):
            with self.assertRaises(Exception):
                compare.parse_fractions(bad)


if __name__ == "__main__":
    unittest.main()
