//! Command-line interface: argument parsing and one module per subcommand.

mod bars;
mod bench;
mod demo;
mod device;
mod inspect;
mod lab;
mod score;
mod study;

use clap::{Parser, Subcommand};

/// Compare the circuits of a base model and its fine-tuned version.
#[derive(Debug, Parser)]
#[command(name = "circuitdiff", version, about)]
pub struct Cli {
    /// CPU threads for tensor work (default: all cores).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Bench(bench::Args),
    Compare(score::CompareArgs),
    Demo(demo::Args),
    Inspect(inspect::Args),
    Lab(lab::Args),
    Merge(study::MergeArgs),
    Score(score::ScoreArgs),
    Study(Box<study::Args>),
}

/// Run the chosen subcommand.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Bench(args) => bench::run(&args),
        Command::Compare(args) => score::compare(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Inspect(args) => inspect::run(&args),
        Command::Lab(args) => lab::run(&args),
        Command::Merge(args) => study::merge(&args),
        Command::Score(args) => score::score(&args),
        Command::Study(args) => study::run(&args),
    }
}
