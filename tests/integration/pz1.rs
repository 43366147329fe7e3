//! PZ-1's pipeline on the engine: dedup semantics, at-least-once delivery
//! across a failed action, and bad upstream input failing only its task.

use crate::support::engine_allowing_loopback;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use switchyard::io_reactor::mysql_async::prelude::Queryable;
use switchyard::io_reactor::{
    redis, EgressConfig, HttpConfig, MysqlConfig, MysqlPool, RedisClient, RedisConfig,
};
use switchyard::{Engine, MemorySource, RunReport, TaskContext, TaskError};
use switchyard_pipeline::{create_runs_table, MemoryStores, Pipeline, PollJob, Stores};
use switchyard_pz1::{poll_event_ids, pz1_pipeline, Fault, FaultTarget, Params, Pz1Upstream, PZ_RUNS_TABLE};
use switchyard_tests::{mysql_url, redis_url, unique};

fn upstream() -> Pz1Upstream {
    Pz1Upstream::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap()
}

fn fast_params() -> Params {
    // Tiny delays keep the test quick; the semantics do not depend on them.
    Params { base_ms: 1.0, max_ms: 5, rounds: 3, ..Params::default() }
}

/// Runs the given polls one after another (a zap's polls are serial) and
/// returns each run's report.
fn run_polls(engine: &Engine, pipeline: &Arc<Pipeline>, polls: &[(&str, u64)]) -> Vec<RunReport> {
    polls
        .iter()
        .map(|&(zap, seq)| {
            let (producer, source) = MemorySource::bounded(1);
            let poll = PollJob { trigger: zap.to_string(), seq, released_at: std::time::Instant::now() };
            producer.try_send(poll, format!("{zap}/{seq}")).unwrap();
            drop(producer);
            let pipeline = pipeline.clone();
            engine
                .block_on(async {
                    let running = engine
                        .start(source, move |cx: TaskContext, poll: PollJob| {
                            let pipeline = pipeline.clone();
                            async move {
                                pipeline.poll(&cx, &poll).await?;
                                Ok::<_, TaskError>(())
                            }
                        })
                        .await
                        .unwrap();
                    tokio::time::timeout(Duration::from_secs(20), running.finished()).await.expect("no stall")
                })
                .unwrap()
        })
        .collect()
}

fn id(zap: &str, e: u64) -> String {
    format!("{zap}-{e}")
}

/// The dedup walk: seed, two fresh, a failed action, then recovery.
fn check_dedup_semantics(
    engine: &Engine,
    stores: Stores,
    run_id: &str,
    is_seen: impl Fn(&str, &str) -> bool,
) -> Vec<RunReport> {
    let up = upstream();
    let params = fast_params();
    let pipeline = pz1_pipeline("pz1", up.base_url(), &params, stores, run_id);
    let zap = "z5";

    let first = run_polls(engine, &pipeline, &[(zap, 1)]);
    assert_eq!(first[0].stats.ok, 1);
    assert_eq!(up.counters().actions(), 0, "the first poll seeds and fires nothing");
    for e in poll_event_ids(1, params.items, params.fresh) {
        assert!(is_seen(zap, &id(zap, e)), "seq 1 must seed {e}");
    }

    run_polls(engine, &pipeline, &[(zap, 2)]);
    assert_eq!(up.counters().actions(), params.fresh, "a later poll fires exactly `fresh` actions");
    assert!(is_seen(zap, &id(zap, 53)) && is_seen(zap, &id(zap, 54)));

    // The oldest new item of poll 3 (event 55) fails: the task fails, and
    // neither 55 nor the never-attempted 56 is marked seen.
    up.inject(FaultTarget::Action, Fault::Status(503), 1);
    let third = run_polls(engine, &pipeline, &[(zap, 3)]);
    assert_eq!(third[0].stats.failed, 1, "{:?}", third[0]);
    assert_eq!(up.counters().actions(), params.fresh + 1, "actions stop at the first failure");
    assert!(!is_seen(zap, &id(zap, 55)) && !is_seen(zap, &id(zap, 56)));

    // The next poll retries 55 and 56 along with its own fresh 57 and 58.
    run_polls(engine, &pipeline, &[(zap, 4)]);
    assert_eq!(up.counters().actions(), params.fresh + 1 + 4);
    for e in 55..=58 {
        assert!(is_seen(zap, &id(zap, e)), "{e} delivered on retry");
    }
    [first, third].concat()
}

#[test]
fn dedup_with_embedded_stores_seeds_fires_fresh_and_retries_failed_actions() {
    let engine = engine_allowing_loopback().cpu_threads(1).build().unwrap();
    let memory = MemoryStores::new();
    let probe = memory.clone();
    check_dedup_semantics(&engine, Stores::memory(memory.clone()), "embedded", move |zap, id| {
        probe.is_seen(zap, id)
    });
    let rows = memory.records();
    assert_eq!(
        rows.iter().map(|r| (r.seq, r.status, r.new_items)).collect::<Vec<_>>(),
        vec![(1, "ok", 0), (2, "ok", 2), (3, "action_failed", 0), (4, "ok", 4)]
    );
    assert!(rows[2].error.as_deref().unwrap().contains("503"), "{:?}", rows[2]);
}

#[test]
fn dedup_with_real_redis_and_mysql_records_every_run() {
    let (Some(mysql), Some(redis_url)) = (mysql_url(), redis_url()) else { return };
    let prefix = format!("{}:", unique("pz:it:seen"));
    let engine = engine_allowing_loopback()
        .cpu_threads(1)
        .mysql(MysqlConfig::new(&mysql))
        .redis(RedisConfig::new(&redis_url))
        .build()
        .unwrap();
    let probe_runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let probe = probe_runtime.block_on(RedisClient::connect(&RedisConfig::new(&redis_url))).unwrap();
    let pool = MysqlPool::new(&MysqlConfig::new(&mysql));
    probe_runtime.block_on(create_runs_table(pool.as_ref().unwrap(), PZ_RUNS_TABLE)).unwrap();
    let key_prefix = prefix.clone();
    let is_seen = |zap: &str, id: &str| -> bool {
        let cmd = redis::cmd("SISMEMBER").arg(format!("{key_prefix}{zap}")).arg(id).clone();
        probe_runtime.block_on(probe.query::<bool>(&cmd)).unwrap()
    };
    let stores = Stores::redis_mysql(prefix.clone(), PZ_RUNS_TABLE);
    let run_id = unique("dedup");
    check_dedup_semantics(&engine, stores, &run_id, is_seen);
    let query = format!("SELECT seq, status, new_items FROM pz_runs WHERE run_id = '{run_id}' ORDER BY seq");
    let rows: Vec<(u64, String, u32)> =
        probe_runtime.block_on(pool.as_ref().unwrap().with_conn(move |c| Box::pin(c.query(query)))).unwrap();
    let expected = [(1, "ok", 0), (2, "ok", 2), (3, "action_failed", 0), (4, "ok", 4)];
    assert_eq!(
        rows,
        expected.map(|(s, st, n)| (s, st.to_string(), n)).to_vec(),
        "one row per run in pz_runs"
    );
    let ttl: i64 = probe_runtime.block_on(probe.query(redis::cmd("TTL").arg(format!("{prefix}z5")))).unwrap();
    assert!(ttl > 0, "seen-sets must expire, ttl {ttl}");
    let _: i64 = probe_runtime.block_on(probe.query(redis::cmd("DEL").arg(format!("{prefix}z5")))).unwrap();
}

#[test]
fn bad_upstream_input_fails_only_its_task_with_a_clear_recorded_error() {
    let up = upstream();
    let engine = engine_allowing_loopback()
        .cpu_threads(1)
        .max_in_flight(1) // one at a time, so each injected fault meets a known poll
        .http(HttpConfig {
            request_timeout_ms: 500,
            max_body_bytes: 1024 * 1024,
            egress: EgressConfig::allowing_loopback(),
            ..HttpConfig::default()
        })
        .build()
        .unwrap();
    let memory = MemoryStores::new();
    let pipeline =
        pz1_pipeline("pz1", up.base_url(), &fast_params(), Stores::memory(memory.clone()), "faults");
    let faults = [
        Fault::InvalidJson,
        Fault::MissingField,
        Fault::Status(500),
        Fault::Oversized,
        Fault::ExtraDelay(Duration::from_secs(3)),
    ];
    for fault in faults {
        up.inject(FaultTarget::Poll, fault, 1);
    }
    let polls: Vec<(String, u64)> = (0..8).map(|z| (format!("z{z}"), 1)).collect();
    let polls: Vec<(&str, u64)> = polls.iter().map(|(z, s)| (z.as_str(), *s)).collect();
    let started = std::time::Instant::now();
    let reports = run_polls(&engine, &pipeline, &polls);
    assert!(started.elapsed() < Duration::from_secs(15), "faults must not stall the engine");
    let failed: u64 = reports.iter().map(|r| r.stats.failed).sum();
    let ok: u64 = reports.iter().map(|r| r.stats.ok).sum();
    assert_eq!((failed, ok), (5, 3));
    let rows = memory.records();
    let errors: Vec<(&str, String)> =
        rows.iter().filter(|r| r.status != "ok").map(|r| (r.status, r.error.clone().unwrap())).collect();
    assert_eq!(errors.len(), 5, "every failure is recorded: {rows:?}");
    assert_eq!(errors[0].0, "transform_failed");
    assert!(errors[0].1.contains("poll body is not valid"), "{}", errors[0].1);
    assert_eq!(errors[1].0, "transform_failed");
    assert!(errors[1].1.contains("items"), "the missing field is named: {}", errors[1].1);
    assert_eq!(errors[2].0, "poll_failed");
    assert!(errors[2].1.contains("500"), "{}", errors[2].1);
    assert_eq!(errors[3].0, "poll_failed");
    assert!(errors[3].1.contains("exceeds 1048576 bytes"), "{}", errors[3].1);
    assert_eq!(errors[4].0, "poll_failed");
    assert!(errors[4].1.contains("timed out"), "{}", errors[4].1);
}

#[test]
fn a_failed_first_poll_leaves_every_item_of_the_next_poll_new() {
    let up = upstream();
    let engine = engine_allowing_loopback().cpu_threads(1).build().unwrap();
    let params = fast_params();
    let memory = MemoryStores::new();
    let pipeline = pz1_pipeline("pz1", up.base_url(), &params, Stores::memory(memory.clone()), "first-fails");
    up.inject(FaultTarget::Poll, Fault::Status(500), 1);
    let first = run_polls(&engine, &pipeline, &[("z9", 1)]);
    assert_eq!(first[0].stats.failed, 1);
    // Poll 2 does not seed (only poll 1 does): all of its items are new.
    run_polls(&engine, &pipeline, &[("z9", 2)]);
    assert_eq!(up.counters().actions(), params.items, "poll 2 delivers its whole page");
    for e in poll_event_ids(2, params.items, params.fresh) {
        assert!(memory.is_seen("z9", &id("z9", e)), "{e} delivered and marked seen");
    }
}
