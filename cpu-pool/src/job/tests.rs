use super::*;
use crate::pool::tests::{pool, Gate};

#[tokio::test]
async fn submit_timed_reports_each_phase() {
    let pool = pool(1, 1);
    let nap = Duration::from_millis(20);
    let first = pool.submit_timed(move || {
        std::thread::sleep(nap);
        1
    });
    // The only slot is taken, so this producer must wait for it.
    let second = pool.submit_timed(|| 2);
    assert_eq!(pool.stats().waiting_producers, 1);

    let (first, second) = tokio::join!(first, second);
    let (one, first) = first.unwrap();
    let (two, second) = second.unwrap();
    assert_eq!((one, two), (1, 2));
    assert!(first.run >= nap, "{first:?}");
    assert_eq!(first.admission_wait, Duration::ZERO);
    assert!(second.admission_wait > Duration::ZERO, "{second:?}");
    assert_eq!(pool.stats().completed, 2);
}

#[tokio::test]
async fn a_job_submitted_while_waiting_runs_once_admitted() {
    let pool = pool(1, 1);
    let gate = Gate::new();
    let blocker = pool.submit({
        let gate = gate.clone();
        move || gate.wait()
    });
    let mut waiting = pool.submit(|| "late");
    // Polled once while full: it parks on the semaphore.
    assert!(futures_poll_once(&mut waiting).await.is_none());
    gate.open();
    blocker.await.unwrap();
    assert_eq!(waiting.await.unwrap(), "late");
    assert_eq!(pool.stats().waiting_producers, 0);
}

async fn futures_poll_once<F: Future + Unpin>(f: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        Poll::Ready(match Pin::new(&mut *f).poll(cx) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        })
    })
    .await
}

fn spinning_pool(threads: usize, spin_wait_us: u64) -> CpuPool {
    let config = crate::CpuPoolConfig { threads, queue_capacity: 0, spin_wait_us, ..Default::default() };
    CpuPool::new(&config).unwrap()
}

fn spins(pool: &CpuPool) -> (u64, u64) {
    let stats = pool.stats();
    (stats.spins_to_result, stats.spins_then_parked)
}

#[tokio::test]
async fn a_short_job_is_awaited_by_spinning() {
    let pool = spinning_pool(2, crate::MAX_SPIN_WAIT_US);
    let multicore = std::thread::available_parallelism().unwrap().get() > 1;
    // Each job's thread must be scheduled within the spin; over a few
    // hundred jobs some are, even on a busy machine.
    for i in 0..500u32 {
        assert_eq!(pool.submit(move || i * 2).await.unwrap(), i * 2);
        if spins(&pool).0 > 0 {
            break;
        }
    }
    let (to_result, _) = spins(&pool);
    if multicore {
        assert!(to_result > 0, "{:?}", pool.stats());
    } else {
        // A spinning producer would hold the only core the job needs.
        assert_eq!(spins(&pool), (0, 0));
    }
}

#[tokio::test]
async fn a_job_that_outlasts_the_spin_is_awaited_by_parking() {
    let pool = spinning_pool(1, 50);
    if pool.shared().spin_budget().is_none() {
        return assert_eq!(std::thread::available_parallelism().unwrap().get(), 1);
    }
    let gate = Gate::new();
    let mut job = pool.submit({
        let gate = gate.clone();
        move || {
            gate.wait();
            "late"
        }
    });
    // The first poll spins, the gate stays shut, so it parks.
    assert!(futures_poll_once(&mut job).await.is_none());
    assert_eq!(spins(&pool), (0, 1));
    gate.open();
    assert_eq!(job.await.unwrap(), "late");
    assert_eq!(spins(&pool), (0, 1));
}

#[tokio::test]
async fn producers_of_long_jobs_never_spin() {
    let pool = spinning_pool(1, 50);
    pool.submit(|| std::thread::sleep(Duration::from_millis(5))).await.unwrap();
    let before = spins(&pool);
    // The pool's recent jobs ran 100 times the spin: parking is cheaper.
    for _ in 0..3 {
        pool.submit(|| ()).await.unwrap();
    }
    assert_eq!(spins(&pool), before);

    let never = spinning_pool(1, 0);
    for _ in 0..3 {
        never.submit(|| ()).await.unwrap();
    }
    assert_eq!(spins(&never), (0, 0));
}

#[test]
fn debug_does_not_need_a_debug_value() {
    struct Opaque;
    let pool = pool(1, 1);
    assert_eq!(format!("{:?}", pool.submit(|| Opaque)), "Job { .. }");
    assert_eq!(format!("{:?}", pool.submit_timed(|| Opaque)), "TimedJob { .. }");
    assert!(format!("{pool:?}").starts_with("CpuPool { threads: 1, queue_capacity: 1"));
}
