//! The `circuitdiff` binary: subcommands run headless jobs; without one it opens the app.

mod cli;

use clap::Parser as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    circuitdiff::runtime::run_on_huge_pages();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = cli::Cli::parse();
    circuitdiff::runtime::tune(args.threads);
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        // The command has said where it stopped and how to continue.
        Err(err) if err.is::<cli::Stopped>() => ExitCode::from(130),
        Err(err) => {
            eprintln!("error: {}", circuitdiff::message::chain(err.as_ref()));
            ExitCode::FAILURE
        }
    }
}
