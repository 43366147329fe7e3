//! Conformance: reproduces every value of PZ-1's vectors file
//! (`tests/data/pz1_vectors.json`; the Python peers' tests read the same
//! values), through the compiled transform and through the configured
//! steps alike.

use serde_json::Value;
use switchyard_pipeline::{fingerprint, StepsTransform, Transform};
use switchyard_pz1::{self as pz1, Event, PollBody, Pz1Transform};

fn vectors() -> Value {
    serde_json::from_str(include_str!("data/pz1_vectors.json")).expect("vectors.json parses")
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("`{key}` is a string in {v}"))
}

fn u64_of(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("`{key}` is an unsigned integer in {v}"))
}

fn f64_of(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("`{key}` is a number in {v}"))
}

#[test]
fn events_items_canonical_forms_and_fingerprints() {
    let vectors = vectors();
    let events = vectors["events"].as_array().unwrap();
    assert!(!events.is_empty());
    for case in events {
        let (zap, e) = (str_of(case, "zap"), u64_of(case, "e"));
        let event = Event::generate(zap, e);
        assert_eq!(serde_json::to_value(&event).unwrap(), case["item"], "item of {zap}/{e}");

        let canonical = pz1::canonical(&event).unwrap();
        let json = pz1::canonical_json(&canonical);
        assert_eq!(json, str_of(case, "canonical"), "canonical of {zap}/{e}");
        assert_eq!(fingerprint(json.as_bytes(), 1), str_of(case, "fingerprint_rounds_1"));
        assert_eq!(fingerprint(json.as_bytes(), 400), str_of(case, "fingerprint_rounds_400"));

        // The same through the whole CPU step of the pipeline, from a body as
        // the upstream sends it: the compiled transform and the configured steps.
        let body = serde_json::to_vec(&PollBody { zap: zap.into(), seq: 1, items: vec![event] }).unwrap();
        let configured = StepsTransform::new("/items", "id", pz1::pz1_steps(400), 10);
        let transforms: [&dyn Transform; 2] = [&Pz1Transform::new(400), &configured];
        for transform in transforms {
            let out = transform.prepare(&body).unwrap().items;
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].canonical, str_of(case, "canonical"), "{transform:?}");
            assert_eq!(out[0].fingerprint, str_of(case, "fingerprint_rounds_400"), "{transform:?}");
        }
    }
}

#[test]
fn polls_return_the_expected_events_newest_first() {
    let vectors = vectors();
    let polls = vectors["polls"].as_array().unwrap();
    assert!(!polls.is_empty());
    for case in polls {
        let (seq, items, fresh) = (u64_of(case, "seq"), u64_of(case, "items"), u64_of(case, "fresh"));
        let want: Vec<u64> =
            case["events_newest_first"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        let got: Vec<u64> = pz1::poll_event_ids(seq, items, fresh).collect();
        assert_eq!(got, want, "seq {seq} items {items} fresh {fresh}");

        // The served body carries those events, in that order.
        let mut body = Vec::new();
        pz1::write_poll_body(&mut body, "z3", seq, items, fresh);
        let parsed: PollBody = serde_json::from_slice(&body).unwrap();
        let ids: Vec<String> = parsed.items.iter().map(|ev| ev.id.clone()).collect();
        assert_eq!(ids, want.iter().map(|e| format!("z3-{e}")).collect::<Vec<_>>());
    }
}

#[test]
fn delays() {
    let vectors = vectors();
    let delays = vectors["delays"].as_array().unwrap();
    assert!(!delays.is_empty());
    for case in delays {
        let got = pz1::delay_ms(
            str_of(case, "zap"),
            u64_of(case, "seq"),
            u32::try_from(u64_of(case, "step")).unwrap(),
            f64_of(case, "base_ms"),
            f64_of(case, "alpha"),
            u64_of(case, "max_ms"),
        );
        assert_eq!(got, u64_of(case, "delay_ms"), "{case}");
    }
}

/// Delays of the first `n` tasks of a schedule over zaps `z0..z{zaps-1}`:
/// task `i` is poll `i / zaps + 1` of zap `i mod zaps` (as in the schedule),
/// with the default distribution.
#[test]
fn delay_distribution() {
    let vectors = vectors();
    let check = &vectors["delay_distribution_check"];
    let (n, zaps) = (u64_of(check, "n"), u64_of(check, "zaps"));
    let step = u32::try_from(u64_of(check, "step")).unwrap();
    let p = pz1::Params::default();
    let mut delays: Vec<f64> = (0..n)
        .map(|i| {
            pz1::delay_ms(&format!("z{}", i % zaps), i / zaps + 1, step, p.base_ms, p.alpha, p.max_ms) as f64
        })
        .collect();
    delays.sort_by(f64::total_cmp);
    let mean = delays.iter().sum::<f64>() / n as f64;
    assert_eq!(pz1::percentile(&delays, 50.0), Some(f64_of(check, "p50")));
    assert_eq!(pz1::percentile(&delays, 99.0), Some(f64_of(check, "p99")));
    assert!((mean - f64_of(check, "mean")).abs() < 0.05, "mean {mean}");
}
