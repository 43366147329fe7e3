//! The `switchyard` binary.

mod bench;
mod cli;
mod metrics_server;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
