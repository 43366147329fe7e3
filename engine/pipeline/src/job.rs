//! One poll of a pipeline: what it is asked to do, what it did, and why it
//! failed.

use std::fmt;
use std::time::Instant;

/// One poll to run: poll number `seq` of `trigger`.
///
/// A trigger is one thing polled on its own schedule with its own dedup
/// state: a configured pipeline is one trigger (named after it); PZ-1 runs
/// one pipeline over many triggers (its zaps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollJob {
    /// The trigger's name: the key of its dedup state and of its run records.
    pub trigger: String,
    /// The poll's number, from 1.
    pub seq: u64,
    /// When the poll was released (a benchmark: its scheduled release; the
    /// service: when its task started); its recorded latency counts from here.
    pub released_at: Instant,
}

/// What a poll did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollOutcome {
    /// Items the poll returned (after in-poll dedup).
    pub items: u32,
    /// Items delivered.
    pub new_items: u32,
    /// HTTP requests made: the poll and every delivery attempt.
    pub requests: u32,
}

/// The stage a poll failed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Fetching the source.
    Poll,
    /// Parsing and transforming what it returned.
    Transform,
    /// Reading or writing dedup state or the run record.
    Store,
    /// Delivering a new item.
    Action,
}

impl Stage {
    /// The run record's status for a poll that failed here.
    pub const fn status(self) -> &'static str {
        match self {
            Stage::Poll => "poll_failed",
            Stage::Transform => "transform_failed",
            Stage::Store => "store_failed",
            Stage::Action => "action_failed",
        }
    }
}

/// Why a poll failed, naming the stage, with what it had done by then
/// (items it delivered before failing stay delivered).
#[derive(Debug, Clone)]
pub struct PollError {
    stage: Stage,
    message: String,
    /// What the poll did before it failed.
    pub partial: PollOutcome,
}

impl PollError {
    /// A failure at `stage`.
    pub fn at(stage: Stage, error: impl fmt::Display, partial: PollOutcome) -> Self {
        PollError { stage, message: error.to_string(), partial }
    }

    /// A failure of a store.
    pub fn store(error: impl fmt::Display) -> Self {
        PollError::at(Stage::Store, error, PollOutcome::default())
    }

    /// The same failure, with what the poll had done when it happened.
    pub fn with_partial(self, partial: PollOutcome) -> Self {
        PollError { partial, ..self }
    }

    /// The stage that failed.
    pub fn stage(&self) -> Stage {
        self.stage
    }
}

impl fmt::Display for PollError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.stage.status().replace('_', " "), self.message)
    }
}

impl std::error::Error for PollError {}
