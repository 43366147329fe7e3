use super::super::event::{write_poll_body, PollBody};
use super::*;
use switchyard_pipeline::fingerprint;

fn body(zap: &str, seq: u64, items: u64, fresh: u64) -> Vec<u8> {
    let mut out = Vec::new();
    write_poll_body(&mut out, zap, seq, items, fresh);
    out
}

#[test]
fn transform_poll_keeps_order_and_fingerprints() {
    let out = transform_poll(&body("z7", 1, 50, 2), 3).unwrap();
    assert_eq!(out.len(), 50);
    assert_eq!(out[0].id, "z7-52");
    assert_eq!(out[49].id, "z7-3");
    for t in &out {
        assert_eq!(t.id, t.canonical.id);
        assert_eq!(t.canonical_json, canonical_json(&t.canonical));
        assert_eq!(t.fingerprint, fingerprint(t.canonical_json.as_bytes(), 3));
    }
}

#[test]
fn repeated_fingerprints_are_dropped_keeping_the_first() {
    let mut poll = PollBody::generate("z2", 1, 4, 1);
    let first = poll.items[1].clone();
    poll.items.push(first.clone());
    poll.items.insert(3, first);
    // Same canonical form (case and spacing differ), same fingerprint.
    let mut messy = poll.items[0].clone();
    messy.email = messy.email.to_uppercase();
    messy.name = format!("\t{}  ", messy.name);
    poll.items.push(messy);
    let out = transform_poll(&serde_json::to_vec(&poll).unwrap(), 2).unwrap();
    let ids: Vec<&str> = out.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["z2-5", "z2-4", "z2-3", "z2-2"]);
}

#[test]
fn bad_bodies_name_the_field() {
    let cases: [(&str, &str); 12] = [
        (r#"{"seq":1,"items":[]}"#, "zap"),
        (r#"{"zap":"z","seq":-1,"items":[]}"#, "seq"),
        (r#"{"zap":"z","seq":1.5,"items":[]}"#, "seq"),
        (r#"{"zap":"z","seq":1}"#, "items"),
        (r#"{"zap":"z","seq":1,"items":{}}"#, "items"),
        (r#"{"zap":"z","seq":1,"items":[7]}"#, "items[0]"),
        (r#"{"zap":5,"seq":1,"items":[]}"#, "zap"),
        (
            r#"{"zap":"z","seq":1,"items":[{"id":"a","updated_at":"t","email":"e","name":"n","tags":[],"note":"x"}]}"#,
            "items[0].amount",
        ),
        (
            r#"{"zap":"z","seq":1,"items":[{"id":"a","updated_at":"t","email":null,"name":"n","amount":"1","tags":[],"note":"x"}]}"#,
            "items[0].email",
        ),
        (
            r#"{"zap":"z","seq":1,"items":[{"id":"a","updated_at":"t","email":"e","name":"n","amount":"1","tags":["a",2],"note":"x"}]}"#,
            "items[0].tags[1]",
        ),
        (
            r#"{"zap":"z","seq":1,"items":[{"id":"a","updated_at":"t","email":"e","name":"n","amount":"1","tags":"a","note":"x"}]}"#,
            "items[0].tags",
        ),
        (
            r#"{"zap":"z","seq":1,"items":[{"id":"a","updated_at":"t","email":"e","name":"n","amount":"1","tags":[]}]}"#,
            "items[0].note",
        ),
    ];
    for (body, field) in cases {
        let err = transform_poll(body.as_bytes(), 1).unwrap_err();
        assert_eq!(err.field(), Some(field), "{body}: {err}");
        assert!(err.is_missing_field() || err.is_wrong_type(), "{body}: {err}");
        assert!(err.to_string().contains(field));
    }
}

#[test]
fn bad_amounts_and_syntax() {
    let mut poll = PollBody::generate("z2", 1, 3, 1);
    poll.items[2].amount = "1e5".into();
    let err = transform_poll(&serde_json::to_vec(&poll).unwrap(), 1).unwrap_err();
    assert!(err.is_bad_amount());
    assert_eq!(err.field(), Some("items[2].amount"));

    for bad in [&b""[..], b"{", b"not json", b"[1,2]", b"{\"zap\":\"z\",\"seq\":1,\"items\":[]} x"] {
        let err = transform_poll(bad, 1).unwrap_err();
        assert!(err.is_json() || err.is_wrong_type(), "{err}");
    }
    assert!(transform_poll(b"[1,2]", 1).unwrap_err().is_wrong_type());
    // Unknown fields are tolerated, and an empty poll is fine.
    let ok = br#"{"zap":"z","seq":1,"items":[],"next":null}"#;
    assert!(transform_poll(ok, 1).unwrap().is_empty());
}

#[test]
fn prepare_poll_gives_what_transform_poll_gives() {
    let mut messy = PollBody::generate("z9", 3, 6, 2);
    messy.items[1].name = " ΌΣΟΣ\t\u{b} Σ ".into();
    messy.items[2].tags = vec!["B".into(), "b".into(), "ÉTÉ".into(), "été".into()];
    messy.items.push(messy.items[0].clone());
    let bodies = [body("z1", 1, 50, 2), body("z8", 7, 20, 5), serde_json::to_vec(&messy).unwrap()];
    for body in &bodies {
        let expected = transform_poll(body, 4).unwrap();
        let got = prepare_poll(body, 4).unwrap();
        assert_eq!(got.len(), expected.len());
        for (g, e) in got.iter().zip(&expected) {
            assert_eq!((&g.id, &g.fingerprint, &g.canonical), (&e.id, &e.fingerprint, &e.canonical_json));
        }
    }
    let mut bad = messy.clone();
    bad.items[4].amount = "1.2.3".into();
    let bad = serde_json::to_vec(&bad).unwrap();
    assert_eq!(
        prepare_poll(&bad, 4).unwrap_err().to_string(),
        transform_poll(&bad, 4).unwrap_err().to_string()
    );
    assert_eq!(
        prepare_poll(b"{\"zap\":1}", 4).unwrap_err().to_string(),
        transform_poll(b"{\"zap\":1}", 4).unwrap_err().to_string()
    );
}
