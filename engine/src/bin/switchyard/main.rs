//! The `switchyard` binary.

mod bench;
mod cli;
mod run;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
