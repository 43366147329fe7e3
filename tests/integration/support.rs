//! What several tests run: a task that waits on the PZ-1 upstream and then
//! does PZ-1's CPU step, so tests get real waits and real CPU work without
//! any server to set up.

use switchyard::{TaskContext, TaskError};

/// GET `url` (a PZ-1 poll), then transform and fingerprint what came back
/// on the CPU side with `rounds` SHA-256 rounds per item.
pub(crate) async fn fetch_and_digest(cx: TaskContext, url: String, rounds: u32) -> Result<(), TaskError> {
    let response = cx.http().get(&url).await?.error_for_status()?;
    cx.cpu_stage("digest", move || switchyard_pz1::transform_poll(&response.body, rounds)).await??;
    Ok(())
}

/// A PZ-1 poll URL on the upstream at `base`: `items` events after `delay_ms`.
pub(crate) fn poll_url(base: &str, items: u64, delay_ms: u64) -> String {
    format!("{base}/poll/z1?seq=1&n={items}&fresh=2&delay_ms={delay_ms}")
}
