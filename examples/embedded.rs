//! A host service that owns its tokio runtime and embeds Switchyard.
//!
//! The host builds its own runtime (as any tokio service does), hands the
//! engine its `Handle`, and feeds work through a bounded in-memory source.
//! Waits run on the host's runtime; CPU steps run on Switchyard's pool, so
//! the host's own timers and sockets stay responsive while records are
//! digested.
//!
//! The slow API is the loopback upstream of the project's workload PZ-1
//! (`switchyard-pz1`), which answers after the delay the request asks for.
//!
//! Run with: `cargo run --release --example embedded`

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use switchyard::io_reactor::EgressConfig;
use switchyard::{Engine, ExecutionModel, MemorySource, TaskContext, TaskError};
use switchyard_pz1::Pz1Upstream;

/// Digests a JSON array of records: parse, then a SHA-256 chain over each
/// record. The CPU step.
fn digest_records(body: &[u8], rounds: u32) -> Result<[u8; 32], serde_json::Error> {
    let page: serde_json::Value = serde_json::from_slice(body)?;
    let mut digest = [0u8; 32];
    for record in page["items"].as_array().into_iter().flatten() {
        let mut h = Sha256::digest(record.to_string().as_bytes());
        for _ in 1..rounds {
            h = Sha256::digest(h);
        }
        digest.iter_mut().zip(h).for_each(|(d, b)| *d ^= b);
    }
    Ok(digest)
}

/// One job: fetch a batch of records (I/O), digest them (CPU), log the result.
async fn digest_batch(cx: TaskContext, url: String) -> Result<(), TaskError> {
    let response = cx.http().get(&url).await?.error_for_status()?;
    let digest = cx.cpu_stage("digest", move || digest_records(&response.body, 400)).await??;
    tracing::debug!(%url, first_byte = digest[0], "digested");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // The host's runtime: Switchyard attaches to it instead of starting one.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let engine = Engine::builder()
        .runtime_handle(runtime.handle().clone())
        .model(ExecutionModel::Hybrid)
        .max_in_flight(500)
        // The example's API runs on this machine; the egress policy refuses
        // loopback unless told otherwise.
        .egress(EgressConfig::allowing_loopback())
        .build()?;

    // A loopback API that answers after 100 ms, like a slow one.
    let upstream = Pz1Upstream::start(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let url = |i: u64| format!("{}/poll/batch?seq={}&n=50&fresh=2&delay_ms=100", upstream.base_url(), i + 1);

    runtime.block_on(async {
        // The host keeps its own periodic work going; we measure how late it runs.
        let heartbeat = tokio::spawn(async {
            let mut worst = Duration::ZERO;
            for _ in 0..200 {
                let asked = Instant::now();
                tokio::time::sleep(Duration::from_millis(10)).await;
                worst = worst.max(asked.elapsed().saturating_sub(Duration::from_millis(10)));
            }
            worst
        });

        let (producer, source) = MemorySource::bounded(1_000);
        let running = engine.start(source, digest_batch).await?;
        for i in 0..1_000 {
            // `send` waits when the source is full: backpressure reaches the producer.
            producer.send(url(i), format!("batch-{i}")).await.ok();
        }
        drop(producer);
        let report = running.finished().await;
        let worst_host_lateness = heartbeat.await?;

        println!(
            "{} batches digested, {} failed, in {:.2} s; peak in flight {}",
            report.stats.ok,
            report.stats.failed + report.stats.panicked,
            report.elapsed.as_secs_f64(),
            report.stats.peak_in_flight
        );
        println!("host timer was at most {worst_host_lateness:?} late while the CPU pool was busy");
        engine.shutdown(Duration::from_secs(5)).await;
        anyhow::Ok(())
    })
}
