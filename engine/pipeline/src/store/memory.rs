//! Dedup state and run records in this process's memory, bounded. Nothing
//! survives a restart: for the built-in demo, tests and benchmarks, and for
//! configured pipelines only when the operator accepts that.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use switchyard::TaskContext;

use super::{RunLog, RunRecord, SeenCheck, SeenStore, StoreFuture};

/// Most run records kept (oldest dropped first).
pub const MEMORY_MAX_RECORDS: usize = 100_000;
/// Most ids remembered per trigger (oldest forgotten first). A poll only
/// ever shows an API's recent items, so ids far older than a page cannot
/// come back; the bound keeps a long-running process's memory flat.
pub const MEMORY_MAX_SEEN_PER_TRIGGER: usize = 10_000;

/// One trigger's seen ids, bounded, forgetting the oldest first.
#[derive(Debug, Default)]
struct SeenSet {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

impl SeenSet {
    fn insert(&mut self, id: &str) {
        if self.ids.insert(id.to_string()) {
            self.order.push_back(id.to_string());
            if self.order.len() > MEMORY_MAX_SEEN_PER_TRIGGER {
                if let Some(oldest) = self.order.pop_front() {
                    self.ids.remove(&oldest);
                }
            }
        }
    }

    fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }
}

/// In-memory dedup state and run records; nothing survives the process.
#[derive(Debug, Default)]
pub struct MemoryStores {
    seen: Mutex<HashMap<String, SeenSet>>,
    records: Mutex<VecDeque<RunRecord>>,
}

impl MemoryStores {
    /// Empty stores.
    pub fn new() -> Arc<Self> {
        Arc::new(MemoryStores::default())
    }

    /// The records kept, oldest first.
    pub fn records(&self) -> Vec<RunRecord> {
        self.records.lock().expect("records lock").iter().cloned().collect()
    }

    /// Whether `trigger` has seen `id`.
    pub fn is_seen(&self, trigger: &str, id: &str) -> bool {
        self.seen.lock().expect("seen lock").get(trigger).is_some_and(|s| s.contains(id))
    }
}

impl SeenStore for MemoryStores {
    fn seen<'a>(
        &'a self,
        _cx: &'a TaskContext,
        trigger: &'a str,
        ids: &'a [&'a str],
        _want_state: bool,
    ) -> StoreFuture<'a, SeenCheck> {
        let seen = self.seen.lock().expect("seen lock");
        let set = seen.get(trigger);
        let check = SeenCheck {
            has_state: set.is_some(),
            seen: ids.iter().map(|id| set.is_some_and(|s| s.contains(id))).collect(),
        };
        Box::pin(std::future::ready(Ok(check)))
    }

    fn mark_seen<'a>(
        &'a self,
        _cx: &'a TaskContext,
        trigger: &'a str,
        ids: &'a [&'a str],
    ) -> StoreFuture<'a, ()> {
        if !ids.is_empty() {
            let mut seen = self.seen.lock().expect("seen lock");
            let set = seen.entry(trigger.to_string()).or_default();
            for id in ids {
                set.insert(id);
            }
        }
        Box::pin(std::future::ready(Ok(())))
    }
}

impl RunLog for MemoryStores {
    fn record<'a>(&'a self, _cx: &'a TaskContext, record: RunRecord) -> StoreFuture<'a, ()> {
        let mut records = self.records.lock().expect("records lock");
        if records.len() == MEMORY_MAX_RECORDS {
            records.pop_front();
        }
        records.push_back(record);
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seen_set_forgets_its_oldest_ids_past_its_bound() {
        let mut set = SeenSet::default();
        for i in 0..MEMORY_MAX_SEEN_PER_TRIGGER + 5 {
            set.insert(&format!("id-{i}"));
        }
        set.insert("id-100"); // already there: no change
        assert_eq!(set.ids.len(), MEMORY_MAX_SEEN_PER_TRIGGER);
        assert!(!set.contains("id-0") && !set.contains("id-4"));
        assert!(set.contains("id-5") && set.contains(&format!("id-{}", MEMORY_MAX_SEEN_PER_TRIGGER + 4)));
    }
}
