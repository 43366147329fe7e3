//! A configured polling pipeline: fetch (reactor) → parse, transform and
//! fingerprint (CPU pool) → seen check (Redis) → deliver each new item to
//! the webhook with retries (reactor) → mark delivered items seen → record.
//!
//! Delivery is at-least-once: an item is marked seen only after its webhook
//! call succeeded. When the webhook keeps failing past the retry budget,
//! the remaining items stay unseen and the next poll delivers them, so a
//! webhook outage delays items but loses none.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::Request;
use serde_json::Value;

use super::config::{ConfigError, PipelineConfig, StepConfig};
use super::steps::{prepare_item, PreparedItem};
use crate::pz1::{Pz1Error, Pz1Outcome, Stores};
use crate::TaskContext;

type Headers = Vec<(HeaderName, HeaderValue)>;

/// A member every seeded seen-set holds, so an empty first poll still
/// counts as seeded. No API id starts with a control character.
const SEED_MARKER: &str = "\u{1}seeded";

/// Counters of one pipeline, for `/status`.
#[derive(Debug, Default)]
pub struct PipelineCounters {
    /// Polls that finished without error.
    pub polls_ok: AtomicU64,
    /// Polls that failed at some stage.
    pub polls_failed: AtomicU64,
    /// Items delivered to the webhook.
    pub delivered: AtomicU64,
    /// Webhook attempts that failed (each retry counts).
    pub delivery_failures: AtomicU64,
}

/// A pipeline with its configuration resolved.
#[derive(Debug)]
pub struct Pipeline {
    name: String,
    source_url: String,
    source_headers: Headers,
    items_pointer: String,
    id_field: String,
    newest_first: bool,
    seed_on_first_poll: bool,
    max_items: usize,
    steps: Vec<StepConfig>,
    rounds: u32,
    action_url: String,
    action_headers: Headers,
    backoff: ExponentialBuilder,
    stores: Stores,
    run_id: String,
    seq: AtomicU64,
    counters: Arc<PipelineCounters>,
}

fn headers(
    config: &std::collections::BTreeMap<String, super::secret::Template>,
    key: &str,
) -> Result<Headers, ConfigError> {
    config
        .iter()
        .map(|(name, value)| {
            let key = format!("{key}.{name}");
            let name = HeaderName::try_from(name.as_str())
                .map_err(|_| ConfigError::new(&key, "invalid header name"))?;
            let mut value = HeaderValue::try_from(value.resolve(&key)?)
                .map_err(|_| ConfigError::new(&key, "invalid header value"))?;
            value.set_sensitive(true);
            Ok((name, value))
        })
        .collect()
}

impl Pipeline {
    /// Resolves `config` (`key` names it in errors, e.g. `pipelines[0]`).
    pub fn new(
        config: &PipelineConfig,
        key: &str,
        stores: Stores,
        run_id: &str,
    ) -> Result<Arc<Pipeline>, ConfigError> {
        let a = &config.action;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(a.initial_backoff_ms))
            .with_max_delay(Duration::from_millis(a.max_backoff_ms))
            .with_max_times(a.max_attempts.saturating_sub(1) as usize)
            .with_jitter();
        Ok(Arc::new(Pipeline {
            name: config.name.clone(),
            source_url: config.source.url.resolve(&format!("{key}.source.url"))?,
            source_headers: headers(&config.source.headers, &format!("{key}.source.headers"))?,
            items_pointer: config.source.items_pointer.clone(),
            id_field: config.source.id_field.clone(),
            newest_first: config.source.newest_first,
            seed_on_first_poll: config.source.seed_on_first_poll,
            max_items: config.source.max_items,
            steps: config.steps.clone(),
            rounds: config.fingerprint_rounds(),
            action_url: a.url.resolve(&format!("{key}.action.url"))?,
            action_headers: headers(&a.headers, &format!("{key}.action.headers"))?,
            backoff,
            stores,
            run_id: run_id.to_string(),
            seq: AtomicU64::new(0),
            counters: Arc::new(PipelineCounters::default()),
        }))
    }

    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its counters.
    pub fn counters(&self) -> &PipelineCounters {
        &self.counters
    }

    /// A shared handle on its counters, for status reports.
    pub fn counters_handle(&self) -> Arc<PipelineCounters> {
        self.counters.clone()
    }

    /// The stores it uses.
    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    /// One poll, recorded whether it succeeded or not.
    pub async fn poll(&self, cx: &TaskContext) -> Result<Pz1Outcome, Pz1Error> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let started = Instant::now();
        let result = self.execute(cx, seq).await;
        let counter = if result.is_ok() { &self.counters.polls_ok } else { &self.counters.polls_failed };
        counter.fetch_add(1, Ordering::Relaxed);
        self.stores.record_result(cx, &self.run_id, &self.name, seq, started, result).await
    }

    async fn execute(&self, cx: &TaskContext, seq: u64) -> Result<Pz1Outcome, Pz1Error> {
        let mut done = Pz1Outcome { requests: 1, ..Pz1Outcome::default() };
        let url = self.source_url.replace("{seq}", &seq.to_string());
        let mut request =
            Request::get(url).body(Bytes::new()).map_err(|e| Pz1Error::at("poll_failed", e, done))?;
        request.headers_mut().extend(self.source_headers.iter().cloned());
        let response = cx.http().send(request).await.and_then(|r| r.error_for_status());
        let body = response.map_err(|e| Pz1Error::at("poll_failed", e, done))?.body;

        let (pointer, id_field, steps) =
            (self.items_pointer.clone(), self.id_field.clone(), self.steps.clone());
        let (rounds, max_items) = (self.rounds, self.max_items);
        let items = cx
            .cpu_stage("transform", move || {
                prepare_poll(&body, &pointer, &id_field, &steps, rounds, max_items)
            })
            .await
            .map_err(|e| Pz1Error::at("transform_failed", e, done))?
            .map_err(|e| Pz1Error::at("transform_failed", e, done))?;
        done.items = u32::try_from(items.len()).unwrap_or(u32::MAX);

        let mut ids: Vec<String> = items.iter().map(|i| i.id.clone()).collect();
        if self.seed_on_first_poll
            && !self.stores.has_state(cx, &self.name).await.map_err(|e| e.with_partial(done))?
        {
            // The marker creates the state even when the first poll is empty.
            ids.push(SEED_MARKER.to_string());
            self.stores.mark_seen(cx, &self.name, &ids).await.map_err(|e| e.with_partial(done))?;
            return Ok(done);
        }
        let seen = self.stores.seen(cx, &self.name, &ids).await.map_err(|e| e.with_partial(done))?;
        let mut new: Vec<&PreparedItem> =
            items.iter().zip(seen).filter(|(_, s)| !s).map(|(i, _)| i).collect();
        if self.newest_first {
            new.reverse();
        }
        let mut delivered = Vec::with_capacity(new.len());
        let mut failure = None;
        for item in new {
            let body = Bytes::from(format!(
                r#"{{"id":{},"fingerprint":"{}","item":{}}}"#,
                Value::String(item.id.clone()),
                item.fingerprint,
                item.canonical
            ));
            match self.deliver(cx, body, &mut done).await {
                Ok(()) => delivered.push(item.id.clone()),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        done.new_items = u32::try_from(delivered.len()).unwrap_or(u32::MAX);
        self.counters.delivered.fetch_add(delivered.len() as u64, Ordering::Relaxed);
        self.stores.mark_seen(cx, &self.name, &delivered).await.map_err(|e| e.with_partial(done))?;
        match failure {
            Some(e) => Err(Pz1Error::at("action_failed", e, done)),
            None => Ok(done),
        }
    }

    /// One item to the webhook, retried with exponential backoff and jitter
    /// while the failure is worth retrying (transport errors, 408, 429, 5xx).
    async fn deliver(
        &self,
        cx: &TaskContext,
        body: Bytes,
        done: &mut Pz1Outcome,
    ) -> Result<(), switchyard_io_reactor::Error> {
        let attempts = AtomicU64::new(0);
        let attempt = || async {
            attempts.fetch_add(1, Ordering::Relaxed);
            let mut request = Request::post(self.action_url.as_str())
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone())
                .expect("a validated URL and a static header");
            request.headers_mut().extend(self.action_headers.iter().cloned());
            let result = cx.http().send(request).await.and_then(|r| r.error_for_status()).map(drop);
            if result.is_err() {
                self.counters.delivery_failures.fetch_add(1, Ordering::Relaxed);
            }
            result
        };
        let result = attempt.retry(self.backoff).sleep(tokio::time::sleep).when(retryable).await;
        done.requests += u32::try_from(attempts.load(Ordering::Relaxed)).unwrap_or(u32::MAX);
        result
    }
}

fn retryable(e: &switchyard_io_reactor::Error) -> bool {
    match e.status() {
        Some(status) => status == 408 || status == 429 || status >= 500,
        None => !e.is_body_too_large(),
    }
}

/// Parses a poll body and prepares each item; duplicates of an id within
/// the poll keep their first occurrence.
fn prepare_poll(
    body: &[u8],
    pointer: &str,
    id_field: &str,
    steps: &[StepConfig],
    rounds: u32,
    max_items: usize,
) -> Result<Vec<PreparedItem>, String> {
    let mut doc: Value =
        serde_json::from_slice(body).map_err(|e| format!("poll body is not valid JSON: {e}"))?;
    let items = match doc.pointer_mut(pointer).map(Value::take) {
        Some(Value::Array(items)) => items,
        Some(_) => return Err(format!("{pointer:?} is not an array")),
        None => return Err(format!("no {pointer:?} in the poll body")),
    };
    if items.len() > max_items {
        return Err(format!("{} items exceed max_items {max_items}", items.len()));
    }
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let prepared = prepare_item(item, id_field, steps, rounds).map_err(|e| format!("item {i}: {e}"))?;
        if seen.insert(prepared.id.clone()) {
            out.push(prepared);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poll_body_is_read_through_its_pointer_and_bounded() {
        let body = br#"{"data":{"items":[{"id":"a"},{"id":"b"},{"id":"a"}]}}"#;
        let items = prepare_poll(body, "/data/items", "id", &[], 1, 10).unwrap();
        assert_eq!(items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert!(prepare_poll(body, "/data/items", "id", &[], 1, 2).unwrap_err().contains("exceed max_items"));
        assert!(prepare_poll(body, "/data/nope", "id", &[], 1, 10)
            .unwrap_err()
            .contains("no \"/data/nope\""));
        assert!(prepare_poll(b"[", "", "id", &[], 1, 10).unwrap_err().contains("not valid JSON"));
        let root = prepare_poll(br#"[{"id":7}]"#, "", "id", &[], 1, 10).unwrap();
        assert_eq!(root[0].id, "7");
    }
}
