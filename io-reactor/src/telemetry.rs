//! Every metric the I/O side emits goes through here, named only through
//! the catalogue in `switchyard-protocol`.

use std::time::Duration;

use metrics::{counter, gauge, histogram};
use switchyard_protocol::catalogue as cat;

/// The closed set of `outcome` label values of `switchyard_http_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HttpOutcome {
    Status(u16),
    Timeout,
    Connect,
    BodyTooLarge,
    Error,
}

impl HttpOutcome {
    pub(crate) fn as_label(self) -> &'static str {
        match self {
            HttpOutcome::Status(s) => match s {
                100..=199 => "1xx",
                200..=299 => "2xx",
                300..=399 => "3xx",
                400..=499 => "4xx",
                _ => "5xx",
            },
            HttpOutcome::Timeout => "timeout",
            HttpOutcome::Connect => "connect",
            HttpOutcome::BodyTooLarge => "body_too_large",
            HttpOutcome::Error => "error",
        }
    }
}

pub(crate) fn http_finished(outcome: HttpOutcome, elapsed: Duration) {
    counter!(cat::HTTP_REQUESTS.name, "outcome" => outcome.as_label()).increment(1);
    histogram!(cat::HTTP_REQUEST_DURATION.name).record(elapsed.as_secs_f64());
}

pub(crate) fn http_in_flight(delta: f64) {
    gauge!(cat::HTTP_IN_FLIGHT.name).increment(delta);
}

pub(crate) fn http_host_limit_wait(waited: Duration) {
    histogram!(cat::HTTP_HOST_LIMIT_WAIT.name).record(waited.as_secs_f64());
}

/// The closed set of `outcome` label values of `switchyard_mysql_operations_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MysqlOutcome {
    Ok,
    Error,
    AcquireTimeout,
}

pub(crate) fn mysql_operation(outcome: MysqlOutcome) {
    let label = match outcome {
        MysqlOutcome::Ok => "ok",
        MysqlOutcome::Error => "error",
        MysqlOutcome::AcquireTimeout => "acquire_timeout",
    };
    counter!(cat::MYSQL_OPERATIONS.name, "outcome" => label).increment(1);
}

pub(crate) fn mysql_acquired(waited: Duration) {
    histogram!(cat::MYSQL_ACQUIRE_DURATION.name).record(waited.as_secs_f64());
}

pub(crate) fn mysql_pool(in_use: usize, waiters: usize, max: usize) {
    gauge!(cat::MYSQL_POOL_IN_USE.name).set(in_use as f64);
    gauge!(cat::MYSQL_POOL_WAITERS.name).set(waiters as f64);
    gauge!(cat::MYSQL_POOL_MAX.name).set(max as f64);
}

/// The closed set of `outcome` label values of `switchyard_redis_commands_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RedisOutcome {
    Ok,
    Retried,
    Error,
}

pub(crate) fn redis_command(outcome: RedisOutcome, elapsed: Duration) {
    let label = match outcome {
        RedisOutcome::Ok => "ok",
        RedisOutcome::Retried => "retried",
        RedisOutcome::Error => "error",
    };
    counter!(cat::REDIS_COMMANDS.name, "outcome" => label).increment(1);
    histogram!(cat::REDIS_COMMAND_DURATION.name).record(elapsed.as_secs_f64());
}

/// A reactor started with `threads` workers. Also registers the stall
/// counter at zero, so "no stalls" is a series at 0 (what `rate()` and the
/// dashboard need) rather than an absent one until the first stall.
pub(crate) fn reactor_threads(threads: usize) {
    gauge!(cat::REACTOR_THREADS.name).set(threads as f64);
    counter!(cat::REACTOR_STALLS.name).increment(0);
}

pub(crate) fn reactor_lag(lag: Duration) {
    histogram!(cat::REACTOR_LAG.name).record(lag.as_secs_f64());
}

pub(crate) fn reactor_stall() {
    counter!(cat::REACTOR_STALLS.name).increment(1);
}
