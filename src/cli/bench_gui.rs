//! `circuitdiff bench-gui`: frame time of the circuit graph view (BENCHMARKS.md).

use super::args::at_least;
use circuitdiff::app::bench::{run as run_bench, BenchOptions, Draw};

/// Frame time of the circuit graph in a window without vsync.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Layers of the synthetic model.
    #[arg(long, default_value_t = 32, value_parser = at_least(1))]
    layers: usize,
    /// Head-level graph with this many attention heads per layer.
    #[arg(long, value_parser = at_least(1))]
    heads: Option<usize>,
    /// Key/value heads of the head-level graph (they must divide --heads).
    #[arg(long, default_value_t = 4, value_parser = at_least(1), requires = "heads")]
    kv_heads: usize,
    /// Frames measured after the warm-up.
    #[arg(long, default_value_t = 300, value_parser = at_least(1))]
    frames: usize,
    /// What the window draws: nothing (the baseline), the graph's default edges, or every edge.
    #[arg(long, value_enum, default_value_t = Draw::Default)]
    draw: Draw,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let report = run_bench(BenchOptions {
        layers: args.layers,
        heads: args.heads.map(|h| (h, args.kv_heads)),
        frames: args.frames,
        size: [1280.0, 800.0],
        draw: args.draw,
    })?;
    println!("{report}");
    println!("CPU: {}", circuitdiff::runtime::CpuInfo::detect());
    Ok(())
}
