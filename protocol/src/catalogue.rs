//! The metric catalogue: every metric Switchyard emits, described once.
//!
//! Crates emit through the `metrics` facade, from their telemetry modules,
//! with handles resolved once from the constants below
//! (`counter!(CPU_JOBS.name, "outcome" => "completed")`); the service (or a
//! host, through `switchyard::telemetry::prometheus`) describes each entry to
//! its exporter and sets the histogram buckets from here, so no histogram is
//! ever exported as a summary. Dashboards and alert rules are checked
//! against [`CATALOGUE`] by tests.
//!
//! Conventions (Prometheus): the `switchyard_` prefix, base units in the name
//! (`_seconds`, `_bytes`), counters end in `_total`, and label values are
//! bounded, never ids or URLs: each label's [`LabelValues`] is either a closed
//! set written here or the names the operator's configuration gives (a
//! pipeline's name), as data that code, dashboards and tests read.

/// The kind of a metric, as Prometheus knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// A monotonically increasing count.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// A distribution with explicit buckets.
    Histogram,
}

/// The base unit of a metric's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Seconds (durations).
    Seconds,
    /// Bytes (sizes).
    Bytes,
    /// A plain count of things.
    Count,
}

/// The values a label may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelValues {
    /// Exactly these values, and no others.
    Closed(&'static [&'static str]),
    /// Names the operator's configuration gives, so bounded by it; the
    /// string says what names them (e.g. "the pipeline's configured name").
    Configured(&'static str),
}

impl LabelValues {
    /// The closed set, or `None` for configured values.
    pub const fn closed(&self) -> Option<&'static [&'static str]> {
        match *self {
            LabelValues::Closed(values) => Some(values),
            LabelValues::Configured(_) => None,
        }
    }
}

/// One label of a metric: its key and the values it may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelDef {
    /// The label key.
    pub name: &'static str,
    /// The values it may take.
    pub values: LabelValues,
}

/// One catalogue entry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricDef {
    /// Full Prometheus name, with prefix and unit suffix.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// Base unit of the values.
    pub unit: Unit,
    /// One sentence for the exporter's `# HELP` line.
    pub help: &'static str,
    /// Labels, in the order code attaches them, each with its values.
    pub labels: &'static [LabelDef],
    /// Histogram bucket upper bounds (empty for counters and gauges).
    pub buckets: &'static [f64],
}

impl MetricDef {
    /// The label called `name`, if this metric has one.
    pub fn label(&self, name: &str) -> Option<&LabelDef> {
        self.labels.iter().find(|l| l.name == name)
    }
}

/// Buckets for short waits measured in seconds (reactor lag, queue waits).
pub const SHORT_SECONDS_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
/// Buckets for task-level durations measured in seconds.
pub const TASK_SECONDS_BUCKETS: &[f64] =
    &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// Buckets for one CPU job's run time in seconds.
pub const CPU_JOB_SECONDS_BUCKETS: &[f64] =
    &[0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

const fn counter(name: &'static str, help: &'static str, labels: &'static [LabelDef]) -> MetricDef {
    MetricDef { name, kind: MetricKind::Counter, unit: Unit::Count, help, labels, buckets: &[] }
}
const fn gauge(name: &'static str, unit: Unit, help: &'static str) -> MetricDef {
    MetricDef { name, kind: MetricKind::Gauge, unit, help, labels: &[], buckets: &[] }
}
const fn histogram(name: &'static str, help: &'static str, buckets: &'static [f64]) -> MetricDef {
    MetricDef { name, kind: MetricKind::Histogram, unit: Unit::Seconds, help, labels: &[], buckets }
}
/// An `outcome` label with a closed set of values.
const fn outcome(values: &'static [&'static str]) -> LabelDef {
    LabelDef { name: "outcome", values: LabelValues::Closed(values) }
}
/// The `pipeline` label: a pipeline's configured name.
const PIPELINE: LabelDef =
    LabelDef { name: "pipeline", values: LabelValues::Configured("the pipeline's configured name") };
/// The `stream` label: a Redis stream's configured key.
const STREAM: LabelDef =
    LabelDef { name: "stream", values: LabelValues::Configured("the stream's configured key") };
/// The `host` label: `scheme://host:port` of a host the configuration
/// lists (`http.hosts`, and the service's pipeline URLs), else `other`.
const HOST: LabelDef = LabelDef {
    name: "host",
    values: LabelValues::Configured(
        "a configured host (scheme://host:port), or `other` for every other host",
    ),
};
const fn stream_gauge(name: &'static str, unit: Unit, help: &'static str) -> MetricDef {
    MetricDef { name, kind: MetricKind::Gauge, unit, help, labels: &[STREAM], buckets: &[] }
}

// ---- CPU pool -------------------------------------------------------------

/// Worker threads of the CPU pool.
pub const CPU_THREADS: MetricDef =
    gauge("switchyard_cpu_threads", Unit::Count, "Worker threads in the CPU pool.");
/// Threads currently running a job.
pub const CPU_BUSY_THREADS: MetricDef =
    gauge("switchyard_cpu_busy_threads", Unit::Count, "CPU pool threads currently running a job.");
/// Capacity of the bounded CPU queue (queued plus running jobs).
pub const CPU_QUEUE_CAPACITY: MetricDef = gauge(
    "switchyard_cpu_queue_capacity",
    Unit::Count,
    "Most CPU jobs that may be queued or running at once.",
);
/// Jobs admitted and waiting for a thread.
pub const CPU_QUEUE_DEPTH: MetricDef = gauge(
    "switchyard_cpu_queue_depth",
    Unit::Count,
    "CPU jobs admitted to the pool and waiting for a thread.",
);
/// Time a producer waited for a queue slot (backpressure).
pub const CPU_ADMISSION_WAIT: MetricDef = histogram(
    "switchyard_cpu_admission_wait_seconds",
    "Time a producer was blocked waiting for a CPU queue slot (backpressure).",
    SHORT_SECONDS_BUCKETS,
);
/// Time a job waited in the queue for a thread.
pub const CPU_QUEUE_WAIT: MetricDef = histogram(
    "switchyard_cpu_queue_wait_seconds",
    "Time a CPU job waited in the queue before a thread picked it up.",
    SHORT_SECONDS_BUCKETS,
);
/// Time a job ran on a thread.
pub const CPU_JOB_DURATION: MetricDef = histogram(
    "switchyard_cpu_job_duration_seconds",
    "Time a CPU job ran on a pool thread.",
    CPU_JOB_SECONDS_BUCKETS,
);
/// Jobs finished, by outcome.
pub const CPU_JOBS: MetricDef = counter(
    "switchyard_cpu_jobs_total",
    "CPU jobs settled, by outcome (overloaded: no slot came free within cpu.slot_wait_ms; the job never ran).",
    &[outcome(&["completed", "panicked", "cancelled", "rejected", "overloaded"])],
);

/// Producers that spun for a short job's result, by how the spin ended.
pub const CPU_SPIN_WAITS: MetricDef = counter(
    "switchyard_cpu_spin_waits_total",
    "Producers that spun for a short CPU job's result instead of parking, by outcome \
     (result: it arrived during the spin; parked: it did not, and the producer parked).",
    &[outcome(&["result", "parked"])],
);

// ---- Reactor --------------------------------------------------------------

/// Worker threads of the reactor runtime.
pub const REACTOR_THREADS: MetricDef =
    gauge("switchyard_reactor_threads", Unit::Count, "Worker threads of the tokio reactor.");
/// Lateness of the reactor heartbeat.
pub const REACTOR_LAG: MetricDef = histogram(
    "switchyard_reactor_lag_seconds",
    "How late the reactor's heartbeat timer fired (time the reactor could not serve I/O).",
    SHORT_SECONDS_BUCKETS,
);
/// Heartbeats later than the stall threshold.
pub const REACTOR_STALLS: MetricDef =
    counter("switchyard_reactor_stalls_total", "Reactor heartbeats later than the stall threshold.", &[]);

// ---- HTTP -----------------------------------------------------------------

/// Outbound requests, by outcome and host.
pub const HTTP_REQUESTS: MetricDef = counter(
    "switchyard_http_requests_total",
    "Outbound HTTP requests, by outcome (the response's status class, or how the request failed) and host.",
    &[
        outcome(&[
            "1xx",
            "2xx",
            "3xx",
            "4xx",
            "5xx",
            "timeout",
            "connect",
            "body_too_large",
            "unavailable",
            "error",
        ]),
        HOST,
    ],
);
/// Outbound request duration, headers and body, by host.
pub const HTTP_REQUEST_DURATION: MetricDef = MetricDef {
    labels: &[HOST],
    ..histogram(
        "switchyard_http_request_duration_seconds",
        "Outbound HTTP request time, from send to the last body byte, by host.",
        TASK_SECONDS_BUCKETS,
    )
};
/// Outbound requests in flight.
pub const HTTP_IN_FLIGHT: MetricDef =
    gauge("switchyard_http_in_flight", Unit::Count, "Outbound HTTP requests in flight.");
/// Time spent waiting at a host's gate: Retry-After, rate and concurrency limits.
pub const HTTP_HOST_LIMIT_WAIT: MetricDef = MetricDef {
    labels: &[HOST],
    ..histogram(
        "switchyard_http_host_limit_wait_seconds",
        "Time a request waited at its host's gate (a Retry-After pause, the rate limit, the concurrency limit), by host.",
        SHORT_SECONDS_BUCKETS,
    )
};
/// Circuit breakers open, by host.
pub const HTTP_BREAKERS_OPEN: MetricDef = MetricDef {
    labels: &[HOST],
    ..gauge(
        "switchyard_http_breakers_open",
        Unit::Count,
        "Circuit breakers open (failing calls at once), by host; the breakers of several clients add up.",
    )
};
/// The adaptive concurrency limit, by host.
pub const HTTP_HOST_CONCURRENCY_LIMIT: MetricDef = MetricDef {
    labels: &[HOST],
    ..gauge(
        "switchyard_http_host_concurrency_limit",
        Unit::Count,
        "Requests allowed in flight at once by the adaptive concurrency limit, by configured host (under its static cap).",
    )
};
/// Outbound requests the egress policy refused, by rule.
pub const HTTP_EGRESS_REFUSED: MetricDef = counter(
    "switchyard_http_egress_refused_total",
    "Outbound requests the egress policy refused before connecting, by the rule that refused them.",
    &[LabelDef {
        name: "rule",
        values: LabelValues::Closed(&[
            "scheme",
            "loopback",
            "private",
            "unique_local",
            "link_local",
            "shared_address_space",
            "unspecified",
            "multicast",
            "broadcast",
            "reserved",
            "embeds_ipv4",
            "own_listener",
        ]),
    }],
);

// ---- MySQL ----------------------------------------------------------------

/// Pooled connections checked out.
pub const MYSQL_POOL_IN_USE: MetricDef =
    gauge("switchyard_mysql_pool_in_use", Unit::Count, "MySQL connections checked out of the pool.");
/// Callers waiting for a pooled connection.
pub const MYSQL_POOL_WAITERS: MetricDef = gauge(
    "switchyard_mysql_pool_waiters",
    Unit::Count,
    "Callers waiting for a MySQL connection from the pool.",
);
/// Most connections the pool opens.
pub const MYSQL_POOL_MAX: MetricDef =
    gauge("switchyard_mysql_pool_max", Unit::Count, "Most connections the MySQL pool opens.");
/// Time to acquire a pooled connection.
pub const MYSQL_ACQUIRE_DURATION: MetricDef = histogram(
    "switchyard_mysql_acquire_duration_seconds",
    "Time a caller waited for a MySQL connection from the pool.",
    SHORT_SECONDS_BUCKETS,
);
/// Time of a scoped MySQL operation, from asking for a connection until it
/// is back in the pool (the latency a task sees), whatever the outcome.
pub const MYSQL_OPERATION_DURATION: MetricDef = histogram(
    "switchyard_mysql_operation_duration_seconds",
    "Time of a scoped MySQL operation, from asking for a connection until it is back in the pool.",
    SHORT_SECONDS_BUCKETS,
);
/// Scoped MySQL operations, by outcome.
pub const MYSQL_OPERATIONS: MetricDef = counter(
    "switchyard_mysql_operations_total",
    "Scoped MySQL operations, by outcome.",
    &[outcome(&["ok", "error", "acquire_timeout"])],
);

// ---- Redis ----------------------------------------------------------------

/// Redis commands, by outcome.
pub const REDIS_COMMANDS: MetricDef = counter(
    "switchyard_redis_commands_total",
    "Redis commands, by outcome (retried: succeeded on the retry).",
    &[outcome(&["ok", "retried", "error"])],
);
/// Redis command duration.
pub const REDIS_COMMAND_DURATION: MetricDef = histogram(
    "switchyard_redis_command_duration_seconds",
    "Time a Redis command took, including a retry.",
    SHORT_SECONDS_BUCKETS,
);

// ---- Engine and tasks -----------------------------------------------------

/// Tasks currently admitted.
pub const TASKS_IN_FLIGHT: MetricDef =
    gauge("switchyard_tasks_in_flight", Unit::Count, "Tasks admitted and not yet settled.");
/// Most tasks admitted at once.
pub const TASKS_MAX_IN_FLIGHT: MetricDef =
    gauge("switchyard_tasks_max_in_flight", Unit::Count, "Most tasks the engine admits at once.");
/// Tasks settled, by outcome.
pub const TASKS: MetricDef = counter(
    "switchyard_tasks_total",
    "Tasks settled, by outcome (timed_out: cancelled at its deadline and handed back for a retry).",
    &[outcome(&["ok", "failed", "retried", "panicked", "abandoned", "timed_out"])],
);
/// Whole task time, from admission to settlement.
pub const TASK_DURATION: MetricDef = histogram(
    "switchyard_task_duration_seconds",
    "Task time from admission to settlement.",
    TASK_SECONDS_BUCKETS,
);
/// Time an item waited for an in-flight slot.
pub const TASK_ADMISSION_WAIT: MetricDef = histogram(
    "switchyard_task_admission_wait_seconds",
    "Time a source item waited for an in-flight slot before its task started.",
    TASK_SECONDS_BUCKETS,
);
/// Time a task spent waiting on I/O (everything that was not CPU).
pub const TASK_IO_WAIT: MetricDef = histogram(
    "switchyard_task_io_wait_seconds",
    "Time a task spent awaiting I/O and timers (task time less CPU-queue wait and CPU time).",
    TASK_SECONDS_BUCKETS,
);
/// Time a task's CPU steps waited for a CPU slot and thread.
pub const TASK_CPU_QUEUE_WAIT: MetricDef = histogram(
    "switchyard_task_cpu_queue_wait_seconds",
    "Time a task's CPU steps waited for a queue slot and a pool thread.",
    TASK_SECONDS_BUCKETS,
);
/// Time a task's CPU steps ran.
pub const TASK_CPU_TIME: MetricDef =
    histogram("switchyard_task_cpu_seconds", "Time a task's CPU steps ran.", TASK_SECONDS_BUCKETS);

// ---- Pipelines ------------------------------------------------------------

/// Polls of each configured pipeline, by outcome.
pub const PIPELINE_POLLS: MetricDef = counter(
    "switchyard_pipeline_polls_total",
    "Polls of each pipeline, by outcome.",
    &[PIPELINE, outcome(&["ok", "failed"])],
);
/// Items delivered to each pipeline's action.
pub const PIPELINE_ITEMS_DELIVERED: MetricDef = counter(
    "switchyard_pipeline_items_delivered_total",
    "New items delivered to each pipeline's action.",
    &[PIPELINE],
);

/// Items a pipeline's transform could not prepare (malformed), each counted
/// once per poll that saw it.
pub const PIPELINE_ITEMS_REJECTED: MetricDef = counter(
    "switchyard_pipeline_items_rejected_total",
    "Items each pipeline's transform rejected as malformed (the rest of the poll goes on).",
    &[PIPELINE],
);

/// Times a durable pipeline found its dedup state lost (the marker outlived the set).
pub const PIPELINE_STATE_LOST: MetricDef = counter(
    "switchyard_pipeline_state_lost_total",
    "Times a durable pipeline found its dedup state lost; its page is then delivered again, keyed.",
    &[PIPELINE],
);
/// Delivery attempts of durable pipelines, by outcome.
pub const PIPELINE_DELIVERY_ATTEMPTS: MetricDef = counter(
    "switchyard_pipeline_delivery_attempts_total",
    "Delivery attempts of each durable pipeline, by outcome (retry: tried again later; permanent: dead-lettered).",
    &[PIPELINE, outcome(&["delivered", "retry", "permanent"])],
);

// ---- Redis streams --------------------------------------------------------

/// Entries in a stream: waiting to be read or read and not yet settled.
pub const STREAM_LENGTH: MetricDef = stream_gauge(
    "switchyard_stream_length",
    Unit::Count,
    "Entries in the stream, waiting to be read or read and not yet settled.",
);
/// Entries read by a consumer and not yet settled.
pub const STREAM_PENDING: MetricDef = stream_gauge(
    "switchyard_stream_pending",
    Unit::Count,
    "Entries read by a consumer of the stream's group and not yet settled.",
);
/// Entries waiting out a retry delay before they go back to the stream.
pub const STREAM_DELAYED: MetricDef = stream_gauge(
    "switchyard_stream_delayed",
    Unit::Count,
    "Entries waiting out a retry delay before they return to the stream.",
);
/// Dead letters the stream keeps, waiting for an operator.
pub const STREAM_DEAD_LETTERS_KEPT: MetricDef = stream_gauge(
    "switchyard_stream_dead_letters_kept",
    Unit::Count,
    "Dead letters of the stream kept for an operator (switchyard dead list, replay, discard).",
);
/// Age of the oldest entry read and not yet settled.
pub const STREAM_OLDEST_PENDING_AGE: MetricDef = stream_gauge(
    "switchyard_stream_oldest_pending_age_seconds",
    Unit::Seconds,
    "Age of the oldest entry read from the stream and not yet settled.",
);
/// Age of the oldest entry no consumer has read yet: how far behind the group is.
pub const STREAM_OLDEST_UNREAD_AGE: MetricDef = stream_gauge(
    "switchyard_stream_oldest_unread_age_seconds",
    Unit::Seconds,
    "Age of the oldest entry no consumer of the stream's group has read yet (0 when caught up).",
);
/// Entries taken over from a consumer that stopped renewing them.
pub const STREAM_CLAIMS: MetricDef = counter(
    "switchyard_stream_claims_total",
    "Entries claimed from a consumer that stopped renewing them (it died or stalled).",
    &[STREAM],
);
/// Entries delivered again: after a retry delay or a claim.
pub const STREAM_REDELIVERIES: MetricDef = counter(
    "switchyard_stream_redeliveries_total",
    "Entries delivered again, after a retry delay or a claim.",
    &[STREAM],
);
/// The dead-letter reason of items a pipeline's transform rejected: the
/// pipeline writes those dead letters itself (with its outbox), not the
/// engine's stream source, which owns every other reason.
pub const DEAD_LETTER_REASON_MALFORMED: &str = "malformed";

/// Entries moved to the dead-letter stream, by reason.
pub const STREAM_DEAD_LETTERS: MetricDef = counter(
    "switchyard_stream_dead_letters_total",
    "Entries moved to the stream's dead letters, by reason.",
    &[
        STREAM,
        LabelDef {
            name: "reason",
            values: LabelValues::Closed(&[
                "failed",
                "panicked",
                "retries_exhausted",
                "claims_exhausted",
                "undecodable",
                DEAD_LETTER_REASON_MALFORMED,
            ]),
        },
    ],
);

// ---- Process --------------------------------------------------------------

/// Resident set size of the process.
pub const PROCESS_RESIDENT_MEMORY: MetricDef = gauge(
    "switchyard_process_resident_memory_bytes",
    Unit::Bytes,
    "Resident memory of the switchyard process.",
);
/// CPU time used by the process.
pub const PROCESS_CPU: MetricDef = MetricDef {
    name: "switchyard_process_cpu_seconds_total",
    kind: MetricKind::Counter,
    unit: Unit::Seconds,
    help: "User and system CPU time used by the switchyard process.",
    labels: &[],
    buckets: &[],
};

/// Every metric Switchyard emits.
pub const CATALOGUE: &[MetricDef] = &[
    CPU_THREADS,
    CPU_BUSY_THREADS,
    CPU_QUEUE_CAPACITY,
    CPU_QUEUE_DEPTH,
    CPU_ADMISSION_WAIT,
    CPU_QUEUE_WAIT,
    CPU_JOB_DURATION,
    CPU_JOBS,
    CPU_SPIN_WAITS,
    REACTOR_THREADS,
    REACTOR_LAG,
    REACTOR_STALLS,
    HTTP_REQUESTS,
    HTTP_REQUEST_DURATION,
    HTTP_IN_FLIGHT,
    HTTP_HOST_LIMIT_WAIT,
    HTTP_EGRESS_REFUSED,
    HTTP_BREAKERS_OPEN,
    HTTP_HOST_CONCURRENCY_LIMIT,
    MYSQL_POOL_IN_USE,
    MYSQL_POOL_WAITERS,
    MYSQL_POOL_MAX,
    MYSQL_ACQUIRE_DURATION,
    MYSQL_OPERATION_DURATION,
    MYSQL_OPERATIONS,
    REDIS_COMMANDS,
    REDIS_COMMAND_DURATION,
    TASKS_IN_FLIGHT,
    TASKS_MAX_IN_FLIGHT,
    TASKS,
    TASK_DURATION,
    TASK_ADMISSION_WAIT,
    TASK_IO_WAIT,
    TASK_CPU_QUEUE_WAIT,
    TASK_CPU_TIME,
    PIPELINE_POLLS,
    PIPELINE_ITEMS_DELIVERED,
    PIPELINE_ITEMS_REJECTED,
    PIPELINE_STATE_LOST,
    PIPELINE_DELIVERY_ATTEMPTS,
    STREAM_LENGTH,
    STREAM_PENDING,
    STREAM_DELAYED,
    STREAM_DEAD_LETTERS_KEPT,
    STREAM_OLDEST_PENDING_AGE,
    STREAM_OLDEST_UNREAD_AGE,
    STREAM_CLAIMS,
    STREAM_REDELIVERIES,
    STREAM_DEAD_LETTERS,
    PROCESS_RESIDENT_MEMORY,
    PROCESS_CPU,
];

/// Looks a metric up by its full name.
pub fn find(name: &str) -> Option<&'static MetricDef> {
    CATALOGUE.iter().find(|m| m.name == name)
}

#[cfg(test)]
mod tests;
