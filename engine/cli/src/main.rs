//! The `switchyard` binary.

mod bench;
mod cli;
mod dead;
mod engine_args;
mod failure;
mod run;
mod signals;
mod upstream;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
