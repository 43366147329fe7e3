//! Several `switchyard run` processes on one Redis, as operators run them:
//! SIGKILLed at random and restarted, they lose no item, and an item sent
//! twice carries the same Idempotency-Key and was in flight at a kill; a
//! process killed in the middle of a transform leaves no partial effect and
//! its poll is redone elsewhere; SIGTERM stops intake at once and exits
//! within the deadline, and the next process finishes what was left.

#[path = "support/durable_world.rs"]
mod durable_world;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use durable_world::{arrivals, introduced, pseudo_random, setup, until, world, Process, WINDOW};
use switchyard_tests::redis_url;

#[test]
fn processes_killed_at_random_lose_nothing_and_repeat_only_what_was_in_flight() {
    let Some(redis) = redis_url() else { return };
    let world = world(Duration::from_millis(30));
    let pipelines = ["p0", "p1", "p2", "p3"];
    let setup = setup(&world, &redis, &pipelines, 20, "");
    let log = |i: usize, gen: usize| setup.dir.join(format!("process-{i}-{gen}.log"));
    let mut processes: Vec<Process> = (0..3).map(|i| Process::start(&setup.config, &log(i, 0))).collect();
    let mut kills = Vec::new();
    let mut seed = 0x2545_F491_4F6C_DD1D_u64 ^ u64::from(std::process::id());
    let soak_until = Instant::now() + Duration::from_secs(45);
    let mut generation = 1;
    while Instant::now() < soak_until {
        std::thread::sleep(Duration::from_millis(500 + pseudo_random(&mut seed) % 1_500));
        let victim = (pseudo_random(&mut seed) % 3) as usize;
        processes[victim].kill();
        kills.push(Instant::now());
        processes[victim] = Process::start(&setup.config, &log(victim, generation));
        generation += 1;
    }
    // Calm: the page stops moving, and everything introduced must arrive.
    std::thread::sleep(Duration::from_secs(2));
    world.frozen.store(true, Ordering::SeqCst);
    let expected = introduced(&world);
    assert!(expected.len() > 100, "too little work to mean anything: {}", expected.len());
    let all = until(Duration::from_secs(40), || {
        let got = arrivals(&world);
        expected.iter().all(|k| got.contains_key(k))
    });
    let got = arrivals(&world);
    let missing: Vec<_> = expected.iter().filter(|k| !got.contains_key(*k)).take(10).collect();
    assert!(all, "lost after {} kills: {missing:?} (of {})", kills.len(), expected.len());
    // A repeat follows a kill: its first arrival was at most a claim idle
    // time (plus the webhook's answer) before some kill, its second after it.
    let claim_window = Duration::from_millis(1_500 + 1_000);
    let repeats: Vec<_> = got.iter().filter(|(_, at)| at.len() > 1).collect();
    for ((p, id), at) in &repeats {
        let explained =
            kills.iter().any(|k| at[0] <= *k + Duration::from_millis(100) && at[0] + claim_window >= *k);
        assert!(explained, "{p}/{id} arrived {} times with no kill while it was in flight", at.len());
    }
    let started = world.started.lock().unwrap().len();
    eprintln!(
        "{} kills, {} items, {} deliveries started, {} repeated",
        kills.len(),
        expected.len(),
        started,
        repeats.len()
    );
    for p in &mut processes {
        p.term();
    }
    for p in &mut processes {
        p.wait(Duration::from_secs(10));
    }
}

#[test]
fn a_process_killed_mid_transform_leaves_no_partial_effect_and_its_poll_is_redone() {
    let Some(redis) = redis_url() else { return };
    let world = world(Duration::ZERO);
    // 20 items x 2,000,000 SHA-256 rounds: each poll's transform takes seconds.
    let setup = setup(&world, &redis, &["slow"], 2_000_000, "");
    let mut first = Process::start(&setup.config, &setup.dir.join("first.log"));
    // The seeding poll, then the second poll's request: kill in its transform.
    let polled = |seq| world.polls.lock().unwrap().iter().any(|(_, s)| *s == seq);
    assert!(until(Duration::from_secs(30), || polled(2)), "poll 2 never came");
    std::thread::sleep(Duration::from_millis(200));
    first.kill();
    assert!(world.received.lock().unwrap().is_empty(), "a delivery before the transform finished");
    // Nothing of poll 2 reached Redis: no delivery in the outbox, no id
    // marked seen beyond the seeding poll's page and the set's sentinel.
    let (outbox, seen) = (format!("{}:deliveries", setup.prefix), format!("{}:seen:slow", setup.prefix));
    assert_eq!(setup.redis_cli(&["XLEN", &outbox]), "0", "a partial outbox write");
    let seeded: usize = setup.redis_cli(&["ZCARD", &seen]).parse().unwrap();
    assert_eq!(seeded as u64, WINDOW + 1, "ids of the killed poll were marked seen");
    let _second = Process::start(&setup.config, &setup.dir.join("second.log"));
    // The same poll (seq 2) is asked again by the process that claimed it.
    let redone = until(Duration::from_secs(30), || {
        world.polls.lock().unwrap().iter().filter(|(_, s)| *s == 2).count() >= 2
    });
    assert!(redone, "poll 2 was not redone: {:?}", world.polls.lock().unwrap());
    assert!(until(Duration::from_secs(60), || world.received.lock().unwrap().len() >= 2));
    let got = arrivals(&world);
    assert!(got.values().all(|at| at.len() == 1), "an item of the redone poll arrived twice: {got:?}");
}

#[test]
fn a_task_stuck_in_a_cpu_step_does_not_hold_the_exit_past_the_deadline() {
    let Some(redis) = redis_url() else { return };
    let world = world(Duration::ZERO);
    // Each poll's transform takes seconds and notices cancellation only when
    // it ends; the phases after the drain have bounds of their own that
    // together exceed a 1 s deadline.
    let setup = setup(&world, &redis, &["slow"], 2_000_000, "");
    let text = std::fs::read_to_string(&setup.config).unwrap().replacen(
        "shutdown_deadline_ms = 4000",
        "shutdown_deadline_ms = 1000",
        1,
    );
    std::fs::write(&setup.config, text).unwrap();
    let mut process = Process::start(&setup.config, &setup.dir.join("stuck.log"));
    let polled = |seq| world.polls.lock().unwrap().iter().any(|(_, s)| *s == seq);
    assert!(until(Duration::from_secs(30), || polled(2)), "poll 2 never came");
    std::thread::sleep(Duration::from_millis(200));
    let termed = Instant::now();
    process.term();
    let status = process.wait(Duration::from_secs(10)).expect("exits");
    let took = termed.elapsed();
    assert!(took <= Duration::from_millis(1_000 + 500), "took {took:?} against a 1 s deadline");
    assert_eq!(status.code(), Some(75), "work was left: {status:?}");
}

#[test]
fn sigterm_stops_intake_at_once_exits_in_time_and_the_next_process_finishes() {
    let Some(redis) = redis_url() else { return };
    // Each delivery takes 3 s and a process runs at most 3 tasks: at SIGTERM
    // three deliveries are in flight (one just started) and at least one
    // more waits in the stream, so a process that kept reading would start
    // it as soon as a slot freed.
    let world = world(Duration::from_secs(3));
    let setup = setup(&world, &redis, &["calm"], 5, "");
    let text = std::fs::read_to_string(&setup.config).unwrap().replacen(
        "[engine]\n",
        "[engine]\nmax_in_flight = 3\n",
        1,
    );
    std::fs::write(&setup.config, text).unwrap();
    let mut first = Process::start(&setup.config, &setup.dir.join("first.log"));
    let waiting = until(Duration::from_secs(20), || {
        let started = world.started.lock().unwrap().len();
        started >= 3 && introduced(&world).len() > started
    });
    assert!(waiting, "no delivery waited behind full slots");
    world.frozen.store(true, Ordering::SeqCst);
    let termed = Instant::now();
    first.term();
    let status = first.wait(Duration::from_secs(10)).expect("exits within the deadline");
    let took = termed.elapsed();
    assert!(took <= Duration::from_millis(4_000 + 500), "took {took:?} against a 4 s deadline");
    let late =
        world.started.lock().unwrap().iter().filter(|t| **t > termed + Duration::from_millis(100)).count();
    assert_eq!(late, 0, "deliveries started more than 100 ms after SIGTERM");
    // The delivery that had just started needs 3 s, more than the drain
    // leaves it: the exit code says work was left for other processes.
    assert_eq!(status.code(), Some(75), "{status:?}");
    // The next process finishes what was left (in the streams, not lost).
    let _next = Process::start(&setup.config, &setup.dir.join("next.log"));
    let expected = introduced(&world);
    let all = until(Duration::from_secs(60), || {
        let got = arrivals(&world);
        expected.iter().all(|k| got.contains_key(k))
    });
    assert!(all, "what the stopped process left was lost");
}
