//! The `circuitdiff` binary: subcommands run headless jobs; without one it opens the app.

mod cli;

use clap::Parser as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    circuitdiff::runtime::run_on_huge_pages();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = cli::Cli::parse();
    circuitdiff::runtime::tune(args.threads);
    if let Ok(v) = std::env::var("CD_LHS") {
        gemm::set_lhs_packing_threshold_single_thread(v.parse().unwrap());
    }
    if let Ok(v) = std::env::var("CD_RHS") {
        gemm::set_rhs_packing_threshold(v.parse().unwrap());
    }
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", circuitdiff::message::chain(err.as_ref()));
            ExitCode::FAILURE
        }
    }
}
