use std::hint::black_box;
use std::time::Instant;
use switchyard_protocol::pz1::{self, PollBody};
#[test]
#[ignore]
fn parts() {
    let mut body = Vec::new();
    pz1::write_poll_body(&mut body, "z7", 30, 50, 2);
    let n = 2000u32;
    let t = Instant::now();
    for _ in 0..n { black_box(serde_json::from_slice::<PollBody>(black_box(&body)).unwrap()); }
    println!("parse {:?}", t.elapsed() / n);
    let poll: PollBody = serde_json::from_slice(&body).unwrap();
    let t = Instant::now();
    for _ in 0..n { for e in &poll.items { black_box(pz1::canonical(black_box(e)).unwrap()); } }
    println!("canonical x50 {:?}", t.elapsed() / n);
    let items: Vec<_> = poll.items.iter().map(|e| pz1::canonical(e).unwrap()).collect();
    let t = Instant::now();
    for _ in 0..n { for c in &items { black_box(pz1::canonical_json(black_box(c))); } }
    println!("json x50 {:?}", t.elapsed() / n);
    let t = Instant::now();
    for _ in 0..n { for c in &items { black_box(pz1::fingerprint_raw(black_box(b"abc"), 1)); let _ = c; } }
    println!("fp1 x50 {:?}", t.elapsed() / n);
}
