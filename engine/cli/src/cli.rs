//! Command line. Settings come, lowest first, from built-in defaults, the
//! TOML file (`--config`), `SWITCHYARD_*` environment variables and flags;
//! every flag has an environment twin.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::bench::BenchArgs;
use crate::dead::DeadArgs;
use crate::failure::{Failure, EXIT_CONFIG, EXIT_WORK_LEFT};
use crate::run::RunArgs;
use crate::upstream::UpstreamArgs;

#[derive(Parser, Debug)]
#[command(name = "switchyard", version, about = "A task engine for mixed network-wait and CPU-heavy work")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the service: configured pipelines, or the built-in PZ-1 zaps when none are configured.
    Run(RunArgs),
    /// Print the effective configuration (secrets redacted) and check it.
    CheckConfig(RunArgs),
    /// Run workload PZ-1 under each execution model and compare them.
    Bench(Box<BenchArgs>),
    /// Serve the PZ-1 upstream HTTP contract until stopped.
    Upstream(UpstreamArgs),
    /// List, replay or discard the durable service's dead letters.
    Dead(DeadArgs),
}

pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let command = cli.command.unwrap_or(Command::Run(RunArgs::default()));
    let result = match command {
        Command::Run(args) => crate::run::run(args),
        Command::CheckConfig(args) => crate::run::check_config(args),
        Command::Bench(args) => crate::bench::bench(*args),
        Command::Upstream(args) => crate::upstream::upstream(args),
        Command::Dead(args) => crate::dead::dead(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(e)) => {
            eprintln!("switchyard: configuration: {e:#}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(Failure::WorkLeft(n)) => {
            eprintln!("switchyard: stopped with {n} tasks unfinished at the shutdown deadline");
            ExitCode::from(EXIT_WORK_LEFT)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("switchyard: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHYARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // Machines read the logs when stdout is not a terminal: give them JSON.
    if std::io::stdout().is_terminal() {
        builder.init();
    } else {
        builder.json().init();
    }
}
