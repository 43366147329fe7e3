//! What PZ-1's CPU steps cost on one core, alone: the fingerprint of one
//! item, the transform of one poll body (parse, canonicalise, fingerprint
//! every item, at `rounds` 1 and 400) through PZ-1's compiled transform
//! (what `switchyard bench` runs) and through the same steps configured
//! (what a configured pipeline runs), and building one poll body the way
//! the upstream does. These are the "CPU measured alone" of the workload's
//! ideal latency (`docs/pz1.md`), and the yardstick for the per-task CPU
//! figures of `switchyard bench` in `BENCHMARKS.md` section 4.
//!
//! Run: `cargo bench -p switchyard-benches --bench pz1_transform`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use switchyard_benches::machine;
use switchyard_pipeline::{fingerprint, StepsTransform, Transform};
use switchyard_pz1::{self as pz1, Event, Pz1Transform};

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
        black_box(fingerprint(black_box(json.as_bytes()), 400));
    });
    println!("fingerprint(rounds=400): {per_item:?} per item ({} bytes canonical)", json.len());

    let mut body = Vec::new();
    pz1::write_poll_body(&mut body, "z7", 30, 50, 2);
    for (rounds, polls) in [(1, 2_000), (400, 200)] {
        let compiled = Pz1Transform::new(rounds);
        let per_poll = mean_of(polls, |_| {
            black_box(compiled.prepare(black_box(&body)).expect("valid body"));
        });
        println!("transform_poll(50 items, rounds={rounds}): {per_poll:?} per poll");
        let configured = StepsTransform::new("/items", "id", pz1::pz1_steps(rounds), 10_000);
        let per_poll = mean_of(polls, |_| {
            black_box(configured.prepare(black_box(&body)).expect("valid body"));
        });
        println!("configured steps(50 items, rounds={rounds}): {per_poll:?} per poll");
    }

    let per_body = mean_of(20_000, |seq| {
        body.clear();
        pz1::write_poll_body(&mut body, "z7", u64::from(seq) + 1, 50, 2);
        black_box(&body);
    });
    println!("write_poll_body(50 items, {} bytes): {per_body:?} per body", body.len());
}
