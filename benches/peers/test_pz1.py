"""Conformance tests of ``pz1.py``: reproduce every value of PZ-1's vectors file
(``data/pz1_vectors.json``), plus the edge cases the Rust unit tests pin.

Run from this folder: ``python -m unittest -v test_pz1``.
"""

from __future__ import annotations

import json
import math
import unittest
from pathlib import Path
from typing import Any

import pz1

VECTORS_PATH = Path(__file__).resolve().parent / "data" / "pz1_vectors.json"


def load_vectors() -> dict[str, Any]:
    with VECTORS_PATH.open(encoding="utf-8") as f:
        return json.load(f)


class VectorTests(unittest.TestCase):
    """Every value of ``vectors.json``."""

    vectors: dict[str, Any]

    @classmethod
    def setUpClass(cls) -> None:
        cls.vectors = load_vectors()

    def test_events_items_canonical_forms_and_fingerprints(self) -> None:
        events = self.vectors["events"]
        self.assertTrue(events)
        for case in events:
            zap, e = case["zap"], case["e"]
            with self.subTest(zap=zap, e=e):
                event = pz1.generate_event(zap, e)
                self.assertEqual(event, case["item"])
                # Wire order of the fields, as the upstream sends them.
                self.assertEqual(list(event), list(case["item"]))
                text = pz1.canonical_json(pz1.canonical(event))
                self.assertEqual(text, case["canonical"])
                self.assertEqual(pz1.fingerprint(text.encode(), 1), case["fingerprint_rounds_1"])
                self.assertEqual(pz1.fingerprint(text.encode(), 400), case["fingerprint_rounds_400"])
                # The same through the whole CPU step, from a body as the upstream sends it.
                body = json.dumps({"zap": zap, "seq": 1, "items": [event]}, separators=(",", ":")).encode()
                out = pz1.transform_poll(body, 400)
                self.assertEqual(len(out), 1)
                self.assertEqual(out[0].canonical_json, case["canonical"])
                self.assertEqual(out[0].fingerprint, case["fingerprint_rounds_400"])
                self.assertEqual(out[0].id, case["item"]["id"])

    def test_polls_return_the_expected_events_newest_first(self) -> None:
        polls = self.vectors["polls"]
        self.assertTrue(polls)
        for case in polls:
            seq, items, fresh = case["seq"], case["items"], case["fresh"]
            with self.subTest(seq=seq, items=items, fresh=fresh):
                want = case["events_newest_first"]
                self.assertEqual(list(pz1.poll_event_ids(seq, items, fresh)), want)
                parsed = json.loads(pz1.poll_body("z3", seq, items, fresh))
                self.assertEqual([ev["id"] for ev in parsed["items"]], [f"z3-{e}" for e in want])
                self.assertEqual((parsed["zap"], parsed["seq"]), ("z3", seq))

    def test_delays(self) -> None:
        delays = self.vectors["delays"]
        self.assertTrue(delays)
        for case in delays:
            with self.subTest(case=case):
                got = pz1.delay_ms(
                    case["zap"], case["seq"], case["step"], case["base_ms"], case["alpha"], case["max_ms"]
                )
                self.assertEqual(got, case["delay_ms"])

    def test_delay_distribution(self) -> None:
        check = self.vectors["delay_distribution_check"]
        n, zaps, step = check["n"], check["zaps"], check["step"]
        p = pz1.Params()
        delays = sorted(
            float(pz1.delay_ms(f"z{i % zaps}", i // zaps + 1, step, p.base_ms, p.alpha, p.max_ms)) for i in range(n)
        )
        self.assertEqual(pz1.percentile(delays, 50), check["p50"])
        self.assertEqual(pz1.percentile(delays, 99), check["p99"])
        self.assertLess(abs(sum(delays) / n - check["mean"]), 0.05)


class PureFunctionTests(unittest.TestCase):
    """The edge cases the Rust unit tests of ``engine/pz1/src`` and ``engine/pipeline/src/text.rs`` pin."""

    def test_params_defaults_zaps_and_window(self) -> None:
        p = pz1.Params().validate()
        self.assertEqual(p.resolved_zaps(), 100)
        self.assertEqual(p.poll_period_s(), 2.0)
        self.assertLess(p.poll_period_s(), p.warmup_s)
        self.assertEqual(pz1.Params(zaps=0).resolved_zaps(), 100)
        self.assertEqual(pz1.Params(zaps=7).resolved_zaps(), 7)
        self.assertEqual(pz1.Params(rate=0.1).resolved_zaps(), 1)
        self.assertEqual(pz1.Params(rate=2.6).resolved_zaps(), 5)
        self.assertEqual(pz1.Params(rate=2.25).resolved_zaps(), 5)  # half away from zero, as Rust
        self.assertEqual(pz1.Params(rate=math.nan).resolved_zaps(), 1)
        self.assertEqual(pz1.Params(rate=0.25).poll_period_s(), 4.0)
        self.assertFalse(p.in_measured_window(4.999))
        self.assertTrue(p.in_measured_window(5.0))
        self.assertFalse(p.in_measured_window(60.0))

    def test_validate_names_the_bad_field(self) -> None:
        cases: list[tuple[str, dict[str, Any]]] = [
            ("rate", dict(rate=0.0)),
            ("rate", dict(rate=math.inf)),
            ("duration_s", dict(duration_s=-1.0)),
            ("warmup_s", dict(warmup_s=60.0)),
            ("drain_s", dict(drain_s=math.nan)),
            ("items", dict(items=0)),
            ("fresh", dict(fresh=0)),
            ("fresh", dict(fresh=51)),
            ("rounds", dict(rounds=0)),
            ("base_ms", dict(base_ms=-1.0)),
            ("alpha", dict(alpha=0.0)),
        ]
        for name, kwargs in cases:
            with self.subTest(name=name, kwargs=kwargs):
                with self.assertRaises(pz1.ParamsError) as cm:
                    pz1.Params(**kwargs).validate()
                self.assertEqual(cm.exception.field, name)
        pz1.Params(warmup_s=0.0, drain_s=0.0, base_ms=0.0, fresh=50).validate()

    def test_delay_edges(self) -> None:
        def d(zap: str, seq: int, step: int) -> int:
            return pz1.delay_ms(zap, seq, step, 120.0, 2.5, 5000)

        for seq in range(1, 500):
            self.assertTrue(120 <= d("z1", seq, 0) <= 5000)
        self.assertEqual(pz1.delay_ms("z1", 1, 0, 0.0, 2.5, 5000), 0)
        self.assertEqual(pz1.delay_ms("z1", 1, 0, 120.0, 2.5, 0), 0)
        self.assertNotEqual(d("z1", 11, 0), d("z11", 1, 0))
        poll, actions = pz1.task_delays("z42", 17, 3, pz1.Params())
        self.assertEqual(poll, d("z42", 17, 0))
        self.assertEqual(actions, [d("z42", 17, 1), 211, d("z42", 17, 3)])

    def test_updated_at(self) -> None:
        self.assertEqual(pz1.updated_at(0), pz1.EPOCH_RFC3339)
        self.assertEqual(pz1.updated_at(1234), "2026-01-01T00:20:34Z")
        self.assertEqual(pz1.updated_at(86_400 * 59), "2026-03-01T00:00:00Z")  # 2026 is not a leap year
        self.assertEqual(pz1.updated_at(86_400 * 365 * 2 + 86_400 * 59), "2028-02-29T00:00:00Z")

    def test_event_and_body(self) -> None:
        ev = pz1.generate_event("z3", 1234)
        self.assertEqual(ev["amount"], "234.34")
        self.assertEqual(pz1.generate_event("z", 1005)["amount"], "5.05")
        self.assertEqual(pz1.generate_event("z", 0)["amount"], "0.00")
        self.assertEqual(ev["tags"], ["Tag2", "tag4", "TAG1"])
        self.assertEqual(len(pz1.NOTE), 200)
        body = pz1.poll_body("z1", 2, 5, 2)
        self.assertTrue(body.startswith(b'{"zap":"z1","seq":2,"items":[{"id":"z1-10","updated_at":'))
        for items, fresh in [(50, 2), (5, 4), (1, 1), (7, 7), (10, 3)]:
            prev = None
            for seq in range(1, 20):
                ids = list(pz1.poll_event_ids(seq, items, fresh))
                self.assertEqual(len(ids), items)
                self.assertGreaterEqual(ids[-1], 1)
                if prev is not None:
                    self.assertEqual(len(set(ids) - set(prev)), fresh)
                prev = ids

    def test_string_steps(self) -> None:
        self.assertEqual(pz1.trim("  a b \t\n"), "a b")
        self.assertEqual(pz1.trim("\x1fa"), "\x1fa")  # not White_Space, unlike str.strip()
        self.assertEqual(pz1.lower_case("ÉCOLE Straße"), "école straße")
        self.assertEqual(pz1.collapse_whitespace("  a \t\n b  "), " a b ")
        self.assertEqual(pz1.collapse_whitespace("a\u00a0\u2003b"), "a b")
        self.assertEqual(pz1.sort_dedupe(["tag1", "Tag1", "tag1", "b", "a"]), ["Tag1", "a", "b", "tag1"])

    def test_amounts(self) -> None:
        ok = [
            ("12.05", 1205),
            ("12.5", 1250),
            ("12", 1200),
            ("-3.10", -310),
            ("0.00", 0),
            ("-0", 0),
            ("007.1", 710),
            ("92233720368547758.07", 2**63 - 1),
            ("-92233720368547758.08", -(2**63)),
        ]
        for s, want in ok:
            self.assertEqual(pz1.decimal_to_cents(s), want, s)
        bad = [
            ("", "empty"),
            ("-", "empty"),
            ("1e5", "not a decimal"),
            ("1.", "not a decimal"),
            (".5", "not a decimal"),
            ("+1", "not a decimal"),
            (" 1", "not a decimal"),
            ("--1", "not a decimal"),
            ("١٢", "not a decimal"),
            ("1.234", "more than two decimal places"),
            ("92233720368547758.08", "out of range"),
        ]
        for s, why in bad:
            with self.subTest(s=s):
                with self.assertRaises(pz1.TransformError) as cm:
                    pz1.decimal_to_cents(s)
                self.assertEqual(cm.exception.kind, "bad_amount")
                self.assertIn(why, str(cm.exception))

    def test_canonical_json_matches_the_rust_writer(self) -> None:
        event = {
            "id": "z1-9",
            "updated_at": "2026-01-01T00:00:09Z",
            "email": "\t MiXed@Case.ORG\n",
            "name": "  Ada \t\n  LOVELACE  ",
            "amount": "-3.1",
            "tags": ["B", "a", "b", "A", "a"],
            "note": "n",
        }
        self.assertEqual(
            pz1.canonical_json(pz1.canonical(event)),
            '{"amount_cents":-310,"email":"mixed@case.org","id":"z1-9","name":"ada lovelace",'
            '"note":"n","tags":["a","b"],"updated_at":"2026-01-01T00:00:09Z"}',
        )
        # serde_json's escapes: lower-case \u00xx for control characters, non-ASCII as is.
        item = {
            "amount_cents": 0,
            "email": "a\\b\x01\n",
            "id": "é€",
            "name": "",
            "note": "\t",
            "tags": ['"q"'],
            "updated_at": "",
        }
        self.assertEqual(
            pz1.canonical_json(item),
            '{"amount_cents":0,"email":"a\\\\b\\u0001\\n","id":"é€","name":"","note":"\\t",'
            '"tags":["\\"q\\""],"updated_at":""}',
        )

    def test_fingerprint_chain(self) -> None:
        self.assertEqual(pz1.fingerprint(b"abc", 1), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        import hashlib

        h2 = hashlib.sha256(hashlib.sha256(b"abc").digest()).hexdigest()
        self.assertEqual(pz1.fingerprint(b"abc", 2), h2)
        with self.assertRaises(ValueError):
            pz1.fingerprint(b"abc", 0)

    def test_transform_poll(self) -> None:
        out = pz1.transform_poll(pz1.poll_body("z7", 1, 50, 2), 3)
        self.assertEqual(len(out), 50)
        self.assertEqual((out[0].id, out[49].id), ("z7-52", "z7-3"))
        for t in out:
            self.assertEqual(t.fingerprint, pz1.fingerprint(t.canonical_json.encode(), 3))
        # Repeats (same canonical form) are dropped, the first kept; the hook runs per item.
        poll = json.loads(pz1.poll_body("z2", 1, 4, 1))
        first = dict(poll["items"][1])
        poll["items"].append(first)
        poll["items"].insert(3, first)
        messy = dict(poll["items"][0], email=poll["items"][0]["email"].upper(), name="\t" + poll["items"][0]["name"])
        poll["items"].append(messy)
        calls = []
        out = pz1.transform_poll(json.dumps(poll).encode(), 2, lambda: calls.append(1))
        self.assertEqual([t.id for t in out], ["z2-5", "z2-4", "z2-3", "z2-2"])
        self.assertEqual(len(calls), 7)

    def test_bad_bodies_name_the_field(self) -> None:
        cases = [
            ('{"seq":1,"items":[]}', "zap"),
            ('{"zap":"z","seq":1}', "items"),
            ('{"zap":"z","seq":1,"items":{}}', "items"),
            ('{"zap":"z","seq":1,"items":[7]}', "items[0]"),
            (
                '{"zap":"z","seq":1,"items":[{"id":"a","updated_at":"t","email":"e","name":"n","tags":[],"note":"x"}]}',
                "items[0].amount",
            ),
            (
                '{"zap":"z","seq":1,"items":[{"id":"a","updated_at":"t","email":null,"name":"n","amount":"1",'
                '"tags":[],"note":"x"}]}',
                "items[0].email",
            ),
            (
                '{"zap":"z","seq":1,"items":[{"id":"a","updated_at":"t","email":"e","name":"n","amount":"1",'
                '"tags":["a",2],"note":"x"}]}',
                "items[0].tags[1]",
            ),
            (
                '{"zap":"z","seq":1,"items":[{"id":"a","updated_at":"t","email":"e","name":"n","amount":"1e5",'
                '"tags":[],"note":"x"}]}',
                "items[0].amount",
            ),
        ]
        for body, name in cases:
            with self.subTest(body=body):
                with self.assertRaises(pz1.TransformError) as cm:
                    pz1.transform_poll(body.encode(), 1)
                self.assertEqual(cm.exception.field, name)
        with self.assertRaises(pz1.TransformError) as cm:
            pz1.transform_poll(b"not json", 1)
        self.assertEqual(cm.exception.kind, "json")
        self.assertEqual(pz1.transform_poll(b'{"zap":"z","seq":1,"items":[],"next":null}', 1), [])

    def test_action_body(self) -> None:
        t = pz1.transform_poll(pz1.poll_body('z"q', 2, 2, 1), 1)[0]
        want = json.dumps(
            {"id": t.id, "fingerprint": t.fingerprint, "item": t.canonical}, separators=(",", ":"), ensure_ascii=False
        )
        self.assertEqual(pz1.action_body(t), want)

    def test_schedule(self) -> None:
        p = pz1.Params()
        tasks = list(pz1.schedule(p))
        self.assertEqual(len(tasks), 3000)
        self.assertEqual(tasks[0], pz1.Task(0, 0.0, "z0", 1))
        self.assertEqual(tasks[100], pz1.Task(100, 2.0, "z0", 2))
        self.assertEqual(sum(1 for t in tasks if p.in_measured_window(t.release_s)), 2750)
        p = pz1.Params(rate=3.0, duration_s=1.0, warmup_s=0.0, zaps=2)
        self.assertEqual([(t.zap, t.seq) for t in pz1.schedule(p)], [("z0", 1), ("z1", 1), ("z0", 2)])
        self.assertEqual([t.release_s for t in pz1.schedule(pz1.Params(rate=0.4, duration_s=5.0))], [0.0, 2.5])
        for rate in (0.0, -1.0, math.nan, math.inf):
            self.assertEqual(list(pz1.schedule(pz1.Params(rate=rate))), [])

    def test_ideal_clock_and_slowdown(self) -> None:
        clock = pz1.IdealClock()
        self.assertEqual(clock.ideal("z0", 0.0, 3.0), (0.0, 3.0))
        self.assertEqual(clock.ideal("z0", 2.0, 0.5), (3.0, 3.5))
        self.assertEqual(clock.ideal("z1", 2.0, 0.5), (2.0, 2.5))
        self.assertEqual(clock.ideal("z0", 10.0, 1.0), (10.0, 11.0))
        self.assertEqual(clock.ideal("z1", 2.1, 0.0), (2.5, 2.5))
        self.assertEqual(pz1.slowdown(0.3, 0.2), 1.4999999999999998)
        self.assertEqual(pz1.slowdown(0.0, 0.0), 1.0)
        self.assertEqual(pz1.slowdown(0.1, 0.0), math.inf)

    def test_nearest_rank_percentiles(self) -> None:
        v = [float(i) for i in range(1, 101)]
        for p, want in [(50, 50), (99, 99), (99.5, 100), (100, 100), (0, 1), (0.5, 1), (1.01, 2), (250, 100), (-5, 1)]:
            self.assertEqual(pz1.percentile(v, p), want, p)
        self.assertEqual(pz1.percentile([7.0], 99), 7.0)
        self.assertEqual(pz1.percentile([1.0, 2.0], 50), 1.0)
        self.assertEqual(pz1.percentile([1.0, 2.0, 3.0], 50), 2.0)
        self.assertIsNone(pz1.percentile([], 50))
        big = [float(i) for i in range(1, 100_001)]
        self.assertEqual(pz1.percentile(big, 99), 99_000.0)
        self.assertEqual(pz1.percentile(big, 99.9), 99_900.0)

    def test_summarise_and_report_keys(self) -> None:
        p = pz1.Params(rate=4.0, duration_s=4.0, warmup_s=1.0, zaps=2, base_ms=0.0, max_ms=0)
        # Every task takes exactly its ideal (zero delays, 10 ms CPU), starting at release.
        records = [
            pz1.TaskRecord(t.index, t.release_s, t.release_s, t.release_s + 0.01, True, 1 if t.seq == 1 else 3)
            for t in pz1.schedule(p)
        ]
        records[-1].ok = False
        r = pz1.summarise(p, "test", 0.01, records, 0.5, 12.0)
        self.assertEqual(tuple(r), pz1.REPORT_KEYS)
        self.assertEqual((r["completed"], r["errors"]), (11, 1))
        self.assertAlmostEqual(r["slowdown_p99"], 1.0)
        self.assertAlmostEqual(r["throughput"], 11 / 3)
        self.assertAlmostEqual(r["upstream_rps"], 36 / 3)
        self.assertFalse(pz1.sustains(r))  # 11 of 12: one task of the window failed
        self.assertTrue(pz1.sustains(dict(r, completed=12, errors=0)))
        # 2,723 of 2,750 is 99.02 %, 2,722 is 98.98 %; the slowdown limit is inclusive.
        self.assertTrue(pz1.sustains({"completed": 2723, "errors": 27, "slowdown_p99": 1.25}))
        self.assertFalse(pz1.sustains({"completed": 2722, "errors": 28, "slowdown_p99": 1.0}))
        self.assertFalse(pz1.sustains({"completed": 2750, "errors": 0, "slowdown_p99": 1.2500001}))
        self.assertFalse(pz1.sustains({"completed": 2750, "errors": 0, "slowdown_p99": None}))
        self.assertFalse(pz1.sustains({"completed": 0, "errors": 0, "slowdown_p99": None}))
        # Throughput (tasks finished inside the window) short of 99 % of the rate does not
        # decide: a task released at the window's end finishes after it.
        self.assertTrue(pz1.sustains({"completed": 53, "errors": 0, "slowdown_p99": 1.02, "throughput": 52 / 17}))
        line = json.loads(pz1.report_json(dict(r, latency_max_ms=math.nan)))
        self.assertEqual(list(line), list(pz1.REPORT_KEYS))
        self.assertIsNone(line["latency_max_ms"])


if __name__ == "__main__":
    unittest.main()
