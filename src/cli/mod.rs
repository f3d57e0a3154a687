//! Command-line interface: argument parsing and one module per subcommand.

mod args;
mod bars;
mod bench;
#[cfg(feature = "gui")]
mod bench_gui;
mod demo;
mod device;
mod inspect;
mod lab;
mod lab_tune;
mod questions;
mod score;
mod study;
mod trajectory;

pub use bars::Stopped;
use clap::{Parser, Subcommand};

/// Compare the circuits of a base model and its fine-tuned version. Without a subcommand, open
/// the desktop app.
#[derive(Debug, Parser)]
#[command(name = "circuitdiff", version, about)]
pub struct Cli {
    /// CPU threads for tensor work (default: all cores).
    #[arg(long, global = true, value_parser = args::at_least(1))]
    pub threads: Option<usize>,
    /// App: neither read nor write saved settings.
    #[cfg(feature = "gui")]
    #[arg(long)]
    no_persist: bool,
    /// App: open this study, trajectory, comparison or run directory.
    #[cfg(feature = "gui")]
    #[arg(long)]
    open: Option<std::path::PathBuf>,
    /// App: save the shown view to this PNG once the results are on screen, then exit.
    #[cfg(feature = "gui")]
    #[arg(long)]
    screenshot: Option<std::path::PathBuf>,
    /// App: show this view (graph, heatmap, distributions, per_layer, comparison_table,
    /// faithfulness, questions, training, trajectory).
    #[cfg(feature = "gui")]
    #[arg(long)]
    view: Option<circuitdiff::app::views::View>,
    /// App: show this mode (base, tuned, difference, importance_change).
    #[cfg(feature = "gui")]
    #[arg(long)]
    mode: Option<circuitdiff::report::circuit::Mode>,
    /// App: the window's size in points, WIDTHxHEIGHT (default 1280x800); also the size of
    /// the app `demo` opens.
    #[cfg(feature = "gui")]
    #[arg(long, global = true, value_parser = args::window_size)]
    window: Option<[f32; 2]>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    Bench(bench::Args),
    #[cfg(feature = "gui")]
    BenchGui(bench_gui::Args),
    Compare(score::CompareArgs),
    Demo(demo::Args),
    Inspect(inspect::Args),
    Lab(lab::Args),
    Merge(study::MergeArgs),
    Score(score::ScoreArgs),
    Study(Box<study::Args>),
    Trajectory(Box<trajectory::Args>),
}

/// Run the chosen subcommand.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let Some(command) = cli.command else {
        #[cfg(feature = "gui")]
        return circuitdiff::app::run(circuitdiff::app::Options {
            persist: !cli.no_persist,
            open: cli.open,
            screenshot: cli.screenshot,
            view: cli.view,
            mode: cli.mode,
            window: cli.window,
        });
        #[cfg(not(feature = "gui"))]
        anyhow::bail!(
            "this build has no desktop app (built without the `gui` feature): run a subcommand, \
             e.g. `circuitdiff demo`, or see `circuitdiff --help`"
        );
    };
    match command {
        Command::Bench(args) => bench::run(&args),
        #[cfg(feature = "gui")]
        Command::BenchGui(args) => bench_gui::run(&args),
        Command::Compare(args) => score::compare(&args),
        #[cfg(feature = "gui")]
        Command::Demo(args) => demo::run(&args, cli.window),
        #[cfg(not(feature = "gui"))]
        Command::Demo(args) => demo::run(&args, None),
        Command::Inspect(args) => inspect::run(&args),
        Command::Lab(args) => lab::run(&args),
        Command::Merge(args) => study::merge(&args),
        Command::Score(args) => score::score(&args),
        Command::Study(args) => study::run(&args),
        Command::Trajectory(args) => trajectory::run(&args),
    }
}
