//! The pipeline metrics: the only place this crate touches the `metrics`
//! facade. Handles are resolved once per pipeline (its name is the
//! `pipeline` label), so a poll pays for atomic updates only.

// The one place this crate may use the raw metrics macros (see clippy.toml).
#![allow(clippy::disallowed_macros)]

use metrics::{counter, Counter};
use switchyard::protocol::catalogue::{
    DEAD_LETTER_REASON_MALFORMED, PIPELINE_DELIVERY_ATTEMPTS, PIPELINE_ITEMS_DELIVERED,
    PIPELINE_ITEMS_REJECTED, PIPELINE_POLLS, PIPELINE_STATE_LOST, STREAM_DEAD_LETTERS,
};

use crate::durable::Verdict;

/// The `outcome` values of `PIPELINE_POLLS`, in the order of
/// [`PipelineMetrics::polls`].
const POLL_OUTCOMES: [&str; 2] = ["ok", "failed"];
/// The `outcome` values of `PIPELINE_DELIVERY_ATTEMPTS`, in the order of
/// [`PipelineMetrics::attempts`].
const ATTEMPT_OUTCOMES: [&str; 3] = ["delivered", "retry", "permanent"];

pub(crate) struct PipelineMetrics {
    polls: [Counter; 2],
    delivered: Counter,
    rejected: Counter,
    state_lost: Counter,
    attempts: [Counter; 3],
}

impl PipelineMetrics {
    pub(crate) fn new(pipeline: &str) -> Self {
        let name = pipeline.to_string();
        let metrics = PipelineMetrics {
            polls: POLL_OUTCOMES.map(
                |outcome| counter!(PIPELINE_POLLS.name, "pipeline" => name.clone(), "outcome" => outcome),
            ),
            delivered: counter!(PIPELINE_ITEMS_DELIVERED.name, "pipeline" => name.clone()),
            rejected: counter!(PIPELINE_ITEMS_REJECTED.name, "pipeline" => name.clone()),
            state_lost: counter!(PIPELINE_STATE_LOST.name, "pipeline" => name.clone()),
            attempts: ATTEMPT_OUTCOMES.map(|outcome| {
                counter!(PIPELINE_DELIVERY_ATTEMPTS.name, "pipeline" => name.clone(), "outcome" => outcome)
            }),
        };
        // Series at 0 from the start, so "none" is a value, not missing data.
        metrics.rejected.increment(0);
        metrics.state_lost.increment(0);
        metrics
    }

    pub(crate) fn state_lost(&self) {
        self.state_lost.increment(1);
    }

    pub(crate) fn delivered(&self, n: u32) {
        self.delivered.increment(u64::from(n));
    }

    pub(crate) fn delivery_attempt(&self, verdict: &Verdict) {
        let index = match verdict {
            Verdict::Delivered => 0,
            Verdict::Retry(_) => 1,
            Verdict::Permanent(_) => 2,
            // Not an attempt: nothing was sent.
            Verdict::Unavailable(_) => return,
        };
        self.attempts[index].increment(1);
    }

    pub(crate) fn rejected(&self, n: usize) {
        self.rejected.increment(n as u64);
    }

    /// Rejected items a durable poll put into `stream`'s dead letters,
    /// counted with the stream's own dead letters (the handle is looked up
    /// per call: this happens once per malformed item, not per task).
    pub(crate) fn dead_lettered_malformed(&self, stream: &str, n: u32) {
        let [stream_label, reason_label] =
            [STREAM_DEAD_LETTERS.labels[0].name, STREAM_DEAD_LETTERS.labels[1].name];
        counter!(STREAM_DEAD_LETTERS.name, stream_label => stream.to_string(), reason_label => DEAD_LETTER_REASON_MALFORMED)
            .increment(u64::from(n));
    }

    pub(crate) fn polled(&self, ok: bool, delivered: u32) {
        self.polls[usize::from(!ok)].increment(1);
        self.delivered.increment(u64::from(delivered));
    }
}

impl std::fmt::Debug for PipelineMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineMetrics").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard::protocol::catalogue::LabelValues;

    #[test]
    fn labels_are_the_catalogue_ones() {
        let names: Vec<_> = PIPELINE_POLLS.labels.iter().map(|l| l.name).collect();
        assert_eq!(names, ["pipeline", "outcome"]);
        let Some(LabelValues::Closed(outcomes)) = PIPELINE_POLLS.label("outcome").map(|l| l.values) else {
            panic!("outcome is a closed set")
        };
        assert_eq!(outcomes, POLL_OUTCOMES);
        let Some(LabelValues::Closed(outcomes)) =
            PIPELINE_DELIVERY_ATTEMPTS.label("outcome").map(|l| l.values)
        else {
            panic!("outcome is a closed set")
        };
        assert_eq!(outcomes, ATTEMPT_OUTCOMES);
        for def in [PIPELINE_ITEMS_DELIVERED, PIPELINE_ITEMS_REJECTED, PIPELINE_STATE_LOST] {
            let names: Vec<_> = def.labels.iter().map(|l| l.name).collect();
            assert_eq!(names, ["pipeline"]);
        }
    }
}
