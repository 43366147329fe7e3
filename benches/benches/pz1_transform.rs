//! What PZ-1's CPU steps cost on one core, alone: the fingerprint of one
//! item, the transform of one poll body (parse, canonicalise, fingerprint
//! every item, at `rounds` 1 and 400), and building one poll body the way
//! the upstream does. These are the "CPU measured alone" of the spec's ideal
//! latency, and the yardstick for the per-task CPU figures of `switchyard
//! bench` in `BENCHMARKS.md` section 4.
//!
//! Run: `cargo bench -p switchyard-benches --bench pz1_transform`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use switchyard::protocol::pz1::{self, Event};
use switchyard_benches::machine;

/// Runs `f` `iterations` times and returns the mean time per call.
fn mean_of(iterations: u32, mut f: impl FnMut(u32)) -> Duration {
    let start = Instant::now();
    for i in 0..iterations {
        f(i);
    }
    start.elapsed() / iterations
}

fn main() {
    // `cargo bench -- --list` and the like: nothing to list.
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    println!("pz1_transform: {}", machine());

    let json = pz1::canonical_json(&pz1::canonical(&Event::generate("z7", 1)).expect("valid event"));
    let per_item = mean_of(20_000, |_| {
        black_box(pz1::fingerprint(black_box(json.as_bytes()), 400));
    });
    println!("fingerprint(rounds=400): {per_item:?} per item ({} bytes canonical)", json.len());

    let mut body = Vec::new();
    pz1::write_poll_body(&mut body, "z7", 30, 50, 2);
    for (rounds, polls) in [(1, 2_000), (400, 200)] {
        let per_poll = mean_of(polls, |_| {
            black_box(pz1::transform_poll(black_box(&body), rounds).expect("valid body"));
        });
        println!("transform_poll(50 items, rounds={rounds}): {per_poll:?} per poll");
    }

    let per_body = mean_of(20_000, |seq| {
        body.clear();
        pz1::write_poll_body(&mut body, "z7", u64::from(seq) + 1, 50, 2);
        black_box(&body);
    });
    println!("write_poll_body(50 items, {} bytes): {per_body:?} per body", body.len());
}
