//! Why the binary stopped, as an exit code.

/// Exit code for a configuration the binary cannot run with (sysexits' EX_CONFIG).
pub(crate) const EXIT_CONFIG: u8 = 78;
/// Exit code for a stop that left tasks unfinished at the shutdown deadline
/// (sysexits' EX_TEMPFAIL): with durable pipelines, work for other processes.
pub(crate) const EXIT_WORK_LEFT: u8 = 75;

/// Why the binary stopped: bad configuration (exit 78), work left at the
/// shutdown deadline (75), or a runtime failure (1).
#[derive(Debug)]
pub(crate) enum Failure {
    Config(anyhow::Error),
    WorkLeft(usize),
    Runtime(anyhow::Error),
}

impl Failure {
    /// A service error, classified by what it says about itself.
    pub(crate) fn of_service(e: switchyard_service::ServiceError) -> Failure {
        if e.is_config() {
            Failure::Config(e.into())
        } else {
            Failure::Runtime(e.into())
        }
    }
}
