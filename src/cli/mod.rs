//! Command-line interface: argument parsing and one module per subcommand.

mod inspect;

use clap::{Parser, Subcommand};

/// Compare the circuits of a base model and its fine-tuned version.
#[derive(Debug, Parser)]
#[command(name = "circuitdiff", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Inspect(inspect::Args),
}

/// Run the chosen subcommand.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Inspect(args) => inspect::run(&args),
    }
}
