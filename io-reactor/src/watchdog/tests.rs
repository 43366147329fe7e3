use super::*;

fn one_worker() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap()
}

fn config(stall_threshold_ms: u64) -> WatchdogConfig {
    WatchdogConfig { interval_ms: 10, stall_threshold_ms }
}

/// Polls `done` for up to 5 s (a loaded machine can be slow to schedule).
fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    done()
}

#[test]
fn blocking_the_reactor_is_a_stall_blamed_on_the_marked_stage() {
    let runtime = one_worker();
    let watchdog = StallWatchdog::start(runtime.handle(), &config(50)).unwrap();
    assert!(eventually(|| watchdog.stats().beats >= 3), "heartbeat never ran");
    let wd = watchdog.clone();
    let blocker = runtime.spawn(async move {
        let _stage = wd.stage("transform");
        thread::sleep(Duration::from_millis(200));
    });
    runtime.block_on(blocker).unwrap();
    assert!(eventually(|| watchdog.stats().stalls >= 1), "{:?}", watchdog.stats());
    let stats = watchdog.stats();
    assert!(stats.max_lag >= Duration::from_millis(150), "{stats:?}");
    assert!(watchdog.lag_quantile(1.0) >= Duration::from_millis(140), "{:?}", watchdog.lag_quantile(1.0));
    assert_eq!(watchdog.last_stall_stage(), Some("transform"));
    let reported = watchdog.owner.state.reported.load(Relaxed);
    assert!((1..=stats.stalls).contains(&reported), "{reported} reports for {stats:?}: one per stall");
    watchdog.stop();
}

#[test]
fn an_idle_reactor_does_not_stall() {
    let runtime = one_worker();
    let watchdog = StallWatchdog::start(runtime.handle(), &config(100)).unwrap();
    let _marked = watchdog.stage("idle");
    thread::sleep(Duration::from_millis(300));
    let stats = watchdog.stats();
    assert!(stats.beats >= 5, "{stats:?}");
    assert_eq!(stats.stalls, 0, "{stats:?}");
    assert_eq!(watchdog.last_stall_stage(), None);
    assert!(watchdog.lag_quantile(0.5) < Duration::from_millis(100));
}

#[test]
fn guards_unmark_only_their_own_stage() {
    let runtime = one_worker();
    let watchdog = StallWatchdog::start(runtime.handle(), &config(50)).unwrap();
    let state = Arc::clone(&watchdog.owner.state);
    let outer = watchdog.stage("outer");
    let inner = watchdog.stage("inner");
    let again = watchdog.stage("outer");
    assert_eq!(state.marked_stages(), ["outer", "inner"]);
    drop(outer);
    assert_eq!(state.marked_stages(), ["inner", "outer"]);
    drop((inner, again));
    assert!(state.marked_stages().is_empty());
}

#[test]
fn stop_is_idempotent_and_the_last_clone_stops_it() {
    let runtime = one_worker();
    let watchdog = StallWatchdog::start(runtime.handle(), &config(50)).unwrap();
    watchdog.stop();
    watchdog.stop();
    assert!(lock(&watchdog.owner.observer).is_none());

    let watchdog = StallWatchdog::start(runtime.handle(), &config(50)).unwrap();
    let state = Arc::clone(&watchdog.owner.state);
    let clone = watchdog.clone();
    drop(watchdog);
    let beats = state.beats.load(Relaxed);
    assert!(eventually(|| state.beats.load(Relaxed) > beats), "a clone still lives: keeps beating");
    drop(clone);
    assert!(state.finished.load(Relaxed));
    let beats = state.beats.load(Relaxed);
    thread::sleep(Duration::from_millis(60));
    assert_eq!(state.beats.load(Relaxed), beats);
}

#[test]
fn runtime_shutdown_ends_the_observer_without_a_false_stall() {
    let runtime = one_worker();
    let watchdog = StallWatchdog::start(runtime.handle(), &config(30)).unwrap();
    assert!(eventually(|| watchdog.stats().beats >= 1));
    drop(runtime);
    thread::sleep(Duration::from_millis(100));
    assert_eq!(watchdog.owner.state.reported.load(Relaxed), 0);
    watchdog.stop();
}

#[test]
fn bad_config_names_the_field() {
    let runtime = one_worker();
    let err = StallWatchdog::start(runtime.handle(), &WatchdogConfig { interval_ms: 0, ..config(50) });
    assert_eq!(err.unwrap_err().config_field(), Some("watchdog.interval_ms"));
}
