//! `circuitdiff score` and `circuitdiff compare`: score given token sequences into a run
//! directory, and compare two run directories sample by sample.

use super::args::at_least;
use super::bars::{ctrl_c_token, Bars};
use super::device::{AdapterBaseArg, DeviceArgs};
use anyhow::{bail, Context as _};
use circuitdiff::attribution::compare::CompareOptions;
use circuitdiff::attribution::correction::Correction;
use circuitdiff::attribution::exact::{ExactOptions, ALL_EDGES_MAX};
use circuitdiff::attribution::metrics::MetricOptions;
use circuitdiff::attribution::Level;
use circuitdiff::engine::check::check_run;
use circuitdiff::engine::score::Outcome;
use circuitdiff::engine::spec::RunSpec;
use circuitdiff::lock::DirLock;
use circuitdiff::report::comparison;
use circuitdiff::report::edge_change::{self, EdgeChanges};
use circuitdiff::report::run;
use circuitdiff::report::span::ScoredSpan;
use circuitdiff::report::table::Table;
use circuitdiff::report::validation::{self, ExactConfig, SampleCount};
use std::path::PathBuf;

/// Score token sequences as given (no generation, no filtering) and write a run directory.
#[derive(Debug, clap::Args)]
pub struct ScoreArgs {
    /// A model folder, a .gguf file, a Hugging Face id, or a PEFT LoRA adapter folder.
    #[arg(long)]
    model: String,
    /// JSON list of {"prompt_ids": [...], "answer_ids": [...]} (optional "id").
    #[arg(long)]
    samples: PathBuf,
    /// Cut length K ≥ 1: score the first K answer tokens (clamped to each answer's length).
    #[arg(long, value_parser = at_least(1))]
    cut: usize,
    /// Output run directory; re-running with the same arguments resumes it.
    #[arg(long)]
    out: PathBuf,
    /// Head-level graph (per-head attention sources and q/k/v destinations).
    #[arg(long)]
    heads: bool,
    /// Compute in f64 (exact checks; slow; overrides --dtype).
    #[arg(long)]
    f64: bool,
    #[command(flatten)]
    metrics: MetricArgs,
    #[command(flatten)]
    exact: ExactArgs,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    adapter: AdapterBaseArg,
}

/// The check of EAP against exact edge effects (method.md §7).
#[derive(Debug, clap::Args)]
pub struct ExactArgs {
    /// Samples that get exact edge effects and a faithfulness curve: a number (a seeded sample
    /// of the scored samples; 0: none) or `all` [default: 20 in `study`, 0 in `score`].
    #[arg(long, value_name = "N|all")]
    exact_samples: Option<SampleCount>,
    /// Top edges by |S| per checked sample whose exact effect is computed.
    #[arg(long, default_value_t = 32, value_parser = at_least(1))]
    exact_top: usize,
    /// Random other real edges per checked sample (seeded).
    #[arg(long, default_value_t = 32, value_parser = at_least(0))]
    exact_random: usize,
    /// Ablated passes run together in one batch (more: faster, more memory).
    #[arg(long, default_value_t = 8, value_parser = at_least(1))]
    exact_batch: usize,
    /// A graph with at most this many real edges gets the exact effect of every edge on each
    /// checked sample (instead of its top and random ones), so that the verdicts are judged on
    /// the headline metrics' own edges; 0: never.
    #[arg(long, default_value_t = ALL_EDGES_MAX, value_name = "N")]
    exact_all_edges_max: usize,
}

impl ExactArgs {
    /// The check's settings, with `samples` when none are given and `seed`.
    pub fn config(&self, samples: SampleCount, seed: u64) -> ExactConfig {
        ExactConfig {
            samples: self.exact_samples.unwrap_or(samples),
            options: ExactOptions {
                top: self.exact_top,
                random: self.exact_random,
                seed,
                batch: self.exact_batch,
                all_edges_max: self.exact_all_edges_max,
            },
        }
    }
}

/// Metric choices of method.md §5.
#[derive(Debug, clap::Args)]
pub struct MetricArgs {
    /// Kurtosis of |s| instead of the signed scores.
    #[arg(long)]
    kurtosis_abs: bool,
    /// Entropy of a histogram of the scores with this many bins (≥ 2), instead of the entropy
    /// of the |s| mass distribution.
    #[arg(long, value_parser = at_least(2))]
    entropy_bins: Option<usize>,
}

impl MetricArgs {
    pub fn options(&self) -> MetricOptions {
        MetricOptions {
            kurtosis_of_abs: self.kurtosis_abs,
            entropy_bins: self.entropy_bins,
        }
    }
}

pub fn score(args: &ScoreArgs) -> anyhow::Result<()> {
    if args.heads && args.exact.config(SampleCount::Count(0), 0).samples != SampleCount::Count(0) {
        bail!("--exact-samples: exact effects are computed on the block-level graph; score without --heads, or drop --exact-samples");
    }
    let samples = run::read_samples(&args.samples)?;
    // Held until the run and its exact effects are written: a second writer into the same
    // directory is refused before it loads a model.
    let lock = DirLock::acquire(&args.out)?;
    let finished = score_locked(args, &samples)?;
    drop(lock);
    if finished {
        Ok(())
    } else {
        Err(super::bars::Stopped.into())
    }
}

/// Score `samples` into the locked run directory, then their exact effects; `false` when
/// stopped by Ctrl-C (said on stderr).
fn score_locked(args: &ScoreArgs, samples: &[run::ScoreSample]) -> anyhow::Result<bool> {
    let mut opts = args.device.load_options()?;
    opts.hub = args.adapter.hub(false);
    if args.f64 {
        opts.dtype = candle_core::DType::F64;
    }
    let level = if args.heads {
        Level::Head
    } else {
        Level::Block
    };
    let spec = RunSpec::new(level, args.cut, args.metrics.options());
    opts.plan = Some(spec.plan(samples));
    let model = super::bars::load_model(&args.model, &opts)?;
    let cancel = ctrl_c_token();
    let mut bars = Bars::default();
    let outcome = spec.score(
        "score",
        &args.out,
        &model,
        (samples, None),
        &mut bars,
        &cancel,
    )?;
    drop(bars);
    match outcome {
        Outcome::Cancelled { scored, total } => {
            eprintln!("stopped after {scored}/{total} samples; run the same command to resume");
            Ok(false)
        }
        Outcome::Finished(r) => {
            print_finished(args, &r, r.manifest.num_edges);
            check(args, &model, &r, samples, &cancel)
        }
    }
}

/// Exact effects of the chosen samples into `RUN/exact/` and `RUN/validation.json`; `false`
/// when stopped by Ctrl-C.
fn check(
    args: &ScoreArgs,
    model: &circuitdiff::model::Model,
    r: &run::Run,
    samples: &[run::ScoreSample],
    cancel: &circuitdiff::progress::CancelToken,
) -> anyhow::Result<bool> {
    let cfg = args.exact.config(SampleCount::Count(0), 42);
    let chosen = cfg.chosen(r.scores.len());
    if chosen.is_empty() {
        return Ok(true);
    }
    let mut bars = Bars::default();
    let checks = check_run(
        "exact effects",
        model,
        r,
        None,
        samples,
        &chosen,
        &cfg.options,
        &mut bars,
        cancel,
    )?;
    drop(bars);
    let Some(checks) = checks else {
        eprintln!("stopped; run the same command to resume");
        return Ok(false);
    };
    let summary = validation::RunCheck::of(&checks);
    validation::write_run_check(&args.out, &summary)?;
    println!("EAP vs exact effects: {}", summary.line());
    Ok(true)
}

fn print_finished(args: &ScoreArgs, r: &run::Run, num_edges: usize) {
    let clamped = r.scores.iter().filter(|s| s.k < args.cut).count();
    let m = &r.metrics.mean.overall;
    println!(
        "scored {} samples ({num_edges} edges) into {}",
        r.scores.len(),
        args.out.display()
    );
    if clamped > 0 {
        println!("{clamped} answers were shorter than K={} and were scored on their full length (see metrics.csv)", args.cut);
    }
    println!(
        "mean vector: intensity {:.4e}  entropy {:.4} ({:.4} normalised)  kurtosis {:.3}",
        m.intensity, m.entropy, m.entropy_normalized, m.kurtosis
    );
}

/// Compare two run directories paired by sample id.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// The base model's run directory.
    base: PathBuf,
    /// The tuned model's run directory.
    tuned: PathBuf,
    /// Where to write comparison.json, comparison.csv, most_changed_edges.csv and figures/.
    #[arg(long)]
    out: PathBuf,
    /// Bootstrap resamples (≥ 1) for the confidence interval of the mean difference.
    #[arg(long, default_value_t = 10_000, value_parser = at_least(1))]
    bootstrap: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Warn when K, the answer tokens scored, is below this.
    #[arg(long, default_value_t = circuitdiff::report::span::DEFAULT_MIN_K, value_parser = at_least(1))]
    min_k_warning: usize,
    #[command(flatten)]
    correction: CorrectionArg,
}

/// How the p-values of a family of tests are adjusted (method.md §8).
#[derive(Debug, clap::Args)]
pub struct CorrectionArg {
    /// Correction for multiple comparisons over the metrics of a comparison (and the
    /// checkpoints of a trajectory): `holm` (Holm–Bonferroni) or `bh` (Benjamini–Hochberg).
    #[arg(long, default_value = "holm", value_name = "holm|bh")]
    pub correction: Correction,
}

pub fn compare(args: &CompareArgs) -> anyhow::Result<()> {
    let base = run::load(&args.base)?;
    let tuned = run::load(&args.tuned)?;
    comparison::check_pairable(&base, &tuned)?;
    let opts = CompareOptions {
        bootstrap_resamples: args.bootstrap,
        seed: args.seed,
        correction: args.correction.correction,
        ..CompareOptions::default()
    };
    let mut c = comparison::compare(&base, &tuned, &opts)?;
    if let Some(span) = &mut c.span {
        span.min_k = args.min_k_warning;
    }
    let _lock = DirLock::acquire(&args.out)?;
    comparison::write(&args.out, &c)?;
    let edges = EdgeChanges::of_runs(&base, &tuned, &opts, edge_change::TOP)?;
    let csv = args.out.join(circuitdiff::study::dir::EDGE_CHANGES);
    circuitdiff::fsutil::write_atomic(&csv, edges.exact_table().csv().as_bytes())
        .with_context(|| csv.display().to_string())?;
    circuitdiff::report::render::write_comparison_figures(
        &base,
        &tuned,
        &opts,
        &args.out.join("figures"),
    )?;
    print!("{}", table(&c));
    println!("wrote {}", comparison::path(&args.out).display());
    Ok(())
}

/// The scored span's line and its warning, each ending in a newline (nothing for a comparison
/// written before the span was recorded).
pub fn span_lines(span: Option<&ScoredSpan>) -> String {
    let Some(span) = span else {
        return String::new();
    };
    let mut text = format!("{}\n", span.line());
    if let Some(w) = span.warning() {
        text.push_str(&format!("warning: {w}\n"));
    }
    text
}

/// A plain-text table of a comparison, with the saturation of its samples and its warning.
pub fn table(c: &comparison::Comparison) -> String {
    let mut text = format!(
        "{} paired samples: base {} vs tuned {}\n{}",
        c.n,
        c.base.model,
        c.tuned.model,
        Table::paired(&c.metrics).text()
    );
    text.push_str(&span_lines(c.span.as_ref()));
    if c.identical {
        text.push_str(&format!(
            "{}\n",
            circuitdiff::report::figures::NO_DIFFERENCE
        ));
    }
    text.push_str(&format!(
        "adjusted p: {}; conclusions read it at the significance level {}\n",
        if c.family.is_empty() {
            "not recorded in these results"
        } else {
            &c.family
        },
        c.options.significance_level()
    ));
    if let Some(s) = &c.saturation {
        text.push_str(&s.line());
        text.push('\n');
        if let Some(w) = s.warning() {
            text.push_str(&format!("warning: {w}\n"));
        }
    }
    if let Some(v) = &c.validation {
        for line in v.brief().lines() {
            text.push_str(&line);
            text.push('\n');
        }
    }
    text
}
