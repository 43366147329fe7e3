use std::time::Instant;

use serde::Serialize;
use switchyard_pipeline::{delivery_body, StepsTransform};

use super::*;
use crate::canonical::CanonicalItem;
use crate::event::write_poll_body;
use crate::transform::transform_poll;

fn body(zap: &str, seq: u64) -> Vec<u8> {
    let mut out = Vec::new();
    write_poll_body(&mut out, zap, seq, 50, 2);
    out
}

#[test]
fn the_compiled_transform_gives_exactly_what_the_configured_steps_give() {
    for rounds in [1, 7] {
        let configured = StepsTransform::new("/items", "id", pz1_steps(rounds), 10_000);
        let compiled = Pz1Transform::new(rounds);
        for (zap, seq) in [("z0", 1), ("z7", 2), ("z\"q", 30), ("z99", 1_000)] {
            let body = body(zap, seq);
            assert_eq!(compiled.prepare(&body).unwrap(), configured.prepare(&body).unwrap(), "{zap}/{seq}");
        }
    }
}

#[test]
fn requests_carry_the_workload_delays() {
    let params = Params { base_ms: 100.0, max_ms: 5_000, ..Params::default() };
    let requests = Pz1Requests::new("http://127.0.0.1:9/", params.clone());
    let job = PollJob { trigger: "z3".into(), seq: 7, released_at: Instant::now() };
    let poll = requests.poll(&job).unwrap();
    let d0 = delay_ms("z3", 7, 0, params.base_ms, params.alpha, params.max_ms);
    assert_eq!(
        poll.uri().to_string(),
        format!("http://127.0.0.1:9/poll/z3?seq=7&n=50&fresh=2&delay_ms={d0}")
    );
    assert_eq!(poll.method(), Method::GET);
    let action = requests.delivery(&job, 2, Bytes::from_static(b"{}")).unwrap();
    let d2 = delay_ms("z3", 7, 2, params.base_ms, params.alpha, params.max_ms);
    assert_eq!(action.uri().to_string(), format!("http://127.0.0.1:9/action/z3?delay_ms={d2}"));
    assert_eq!(action.method(), Method::POST);
    assert_eq!(action.headers()[CONTENT_TYPE], "application/json");
}

#[test]
fn the_action_body_is_the_item_in_its_canonical_form() {
    #[derive(Serialize)]
    struct Action<'a> {
        id: &'a str,
        fingerprint: &'a str,
        item: &'a CanonicalItem,
    }
    let typed = &transform_poll(&body("z\"q", 2), 1).unwrap()[0];
    let want = serde_json::to_string(&Action {
        id: &typed.id,
        fingerprint: &typed.fingerprint,
        item: &typed.canonical,
    })
    .unwrap();
    let prepared = &Pz1Transform::new(1).prepare(&body("z\"q", 2)).unwrap().items[0];
    assert_eq!(delivery_body(prepared), want.as_bytes());
}

#[test]
fn each_transform_drops_its_own_kind_of_repeat() {
    // An event twice (a repeat both drop), then its id again with other
    // content: a new fingerprint (the workload keeps it) but a repeated id
    // (configured pipelines drop it).
    let event = serde_json::to_value(crate::event::Event::generate("z1", 7)).unwrap();
    let mut changed = event.clone();
    changed["email"] = "changed@example.com".into();
    let body = serde_json::json!({"zap": "z1", "seq": 1, "items": [event, event, changed]}).to_string();
    let compiled = Pz1Transform::new(1).prepare(body.as_bytes()).unwrap().items;
    let configured =
        StepsTransform::new("/items", "id", pz1_steps(1), 10).prepare(body.as_bytes()).unwrap().items;
    assert_eq!(compiled.len(), 2, "the workload drops a repeated fingerprint only");
    assert_eq!(configured.len(), 1, "configured pipelines drop a repeated id");
    assert_eq!(compiled[0], configured[0]);
    assert!(compiled[1].canonical.contains("changed@example.com"));
}
