//! The `circuitdiff` binary: subcommands run headless jobs; without one it opens the app.

mod cli;

use clap::Parser as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = cli::Cli::parse();
    tune_runtime(args.threads);
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Process-wide settings for candle on the CPU, applied before any tensor exists.
///
/// - `threads`: worker threads for matmuls and elementwise kernels (default: all cores).
/// - candle's elementwise pool spins 25,000 times waiting for work; on a few cores that spinning
///   competes with the matmul workers; 2,500–5,000 measured fastest (BENCHMARKS.md). An explicit
///   `CANDLE_BARRIER_POOL_SPIN_LIMIT` wins.
/// - glibc serves large blocks with fresh `mmap`s and returns freed memory to the kernel, so
///   each of the thousands of activation-sized tensors of a pass is page-faulted anew (12 % of
///   the time in `perf`, and a 1.7× slower differentiable pass). Keep freed memory in the heap.
fn tune_runtime(threads: Option<usize>) {
    if let Some(n) = threads {
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
    }
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "4000");
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; it is called before any other thread
    // exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
