//! What `study` and `trajectory` share: the questions, their answers, the selection and the
//! graph, and the load options of their models.

use super::args::{at_least, open_unit, positive_finite, stop_string, unit_above_zero};
use super::device::DeviceArgs;
use super::score::MetricArgs;
use circuitdiff::attribution::compare::CompareOptions;
use circuitdiff::attribution::select::{SelectOptions, TBar};
use circuitdiff::attribution::Level;
use circuitdiff::model::{GenerateOptions, HubOptions, LoadOptions, Sampling};
use circuitdiff::study::dir::StudyConfig;
use circuitdiff::study::prompt::Template;

/// The questions, their answers, the selection and the graph: what a study and a trajectory
/// share.
#[derive(Debug, clap::Args)]
pub struct QuestionArgs {
    /// A JSONL file (fields detected per file) or `builtin:arith[?n=200&seed=42&max=99&terms=2&ops=+-]`.
    #[arg(long, default_value = StudyConfig::DEFAULT_DATASET)]
    dataset: String,
    /// Skip this many questions of the dataset (fewer than it holds).
    #[arg(long, default_value_t = 0, value_parser = at_least(0))]
    offset: usize,
    /// Ask at most this many questions.
    #[arg(long, value_parser = at_least(1))]
    limit: Option<usize>,
    /// Questions to score after filtering.
    #[arg(long, default_value_t = 100, value_parser = at_least(1))]
    n: usize,
    /// K = max(⌊α·T̄⌋, 1), with α in (0, 1).
    #[arg(long, default_value_t = 0.05, value_parser = open_unit)]
    alpha: f64,
    /// Score the first K answer tokens, this K, instead of K = max(⌊α·T̄⌋, 1).
    #[arg(long, value_parser = at_least(1))]
    cut: Option<usize>,
    /// Warn when K, the answer tokens scored, is below this.
    #[arg(long, default_value_t = circuitdiff::report::span::DEFAULT_MIN_K, value_parser = at_least(1))]
    min_k_warning: usize,
    /// T̄: `min` of the two models' mean answer lengths, or `pooled` mean.
    #[arg(long, default_value = "min", value_parser = ["min", "pooled"])]
    t_bar: String,
    /// Seed of the question sample and the bootstrap.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Maximum new tokens per answer.
    #[arg(long, default_value_t = StudyConfig::DEFAULT_MAX_NEW_TOKENS, value_parser = at_least(1))]
    max_new_tokens: usize,
    /// deepseek-math, mistral, qwen25-math-cot, chat, plain, or a text with {question}
    /// (default: the tokenizer's chat template when it has one, else plain).
    #[arg(long)]
    template: Option<String>,
    /// Head-level graph.
    #[arg(long)]
    heads: bool,
    /// Keep questions whatever their prompt and answer lengths (no length filters).
    #[arg(long)]
    no_length_filters: bool,
    #[command(flatten)]
    metrics: MetricArgs,
    /// Sample answers at this temperature (> 0) instead of greedy decoding.
    #[arg(long, value_parser = positive_finite)]
    temperature: Option<f64>,
    /// Nucleus sampling mass in (0, 1] (with --temperature).
    #[arg(long, default_value_t = 1.0, value_parser = unit_above_zero, requires = "temperature")]
    top_p: f64,
    /// Extra strings that end an answer.
    #[arg(long, value_parser = stop_string)]
    stop: Vec<String>,
    /// Extra token ids that end an answer (besides the tokenizer's end-of-sequence ids).
    #[arg(long)]
    stop_id: Vec<u32>,
    #[command(flatten)]
    correction: super::score::CorrectionArg,
    /// Questions generated together in one batch (the weights are read once per step for all).
    #[arg(long, default_value_t = StudyConfig::DEFAULT_BATCH, value_parser = at_least(1))]
    batch: usize,
}

impl QuestionArgs {
    /// The study of `base` and `tuned` these arguments describe (no exact check, no shard).
    pub fn config(&self, base: &str, tuned: &str) -> anyhow::Result<StudyConfig> {
        let args = self;
        let t_bar = match args.t_bar.as_str() {
            "min" => TBar::MinOfMeans,
            _ => TBar::Pooled,
        };
        let template = args.template.as_deref().map(Template::parse).transpose()?;
        let defaults = SelectOptions::default();
        Ok(StudyConfig {
            dataset: args.dataset.clone(),
            offset: args.offset,
            limit: args.limit,
            template,
            generation: GenerateOptions {
                max_new_tokens: args.max_new_tokens,
                sampling: match args.temperature {
                    Some(temperature) => Sampling::Sample {
                        temperature,
                        top_p: args.top_p,
                        seed: args.seed,
                    },
                    None => Sampling::Greedy,
                },
                stop_ids: args.stop_id.clone(),
                stop_strings: args.stop.clone(),
            },
            select: SelectOptions {
                n: args.n,
                seed: args.seed,
                alpha: args.alpha,
                cut: args.cut,
                t_bar,
                equal_prompt_length: !args.no_length_filters,
                pair_mean_window: defaults
                    .pair_mean_window
                    .filter(|_| !args.no_length_filters),
                max_relative_length_difference: defaults
                    .max_relative_length_difference
                    .filter(|_| !args.no_length_filters),
            },
            level: if args.heads {
                Level::Head
            } else {
                Level::Block
            },
            metrics: args.metrics.options(),
            compare: CompareOptions {
                seed: args.seed,
                correction: args.correction.correction,
                ..CompareOptions::default()
            },
            batch: args.batch,
            min_k_warning: args.min_k_warning,
            answers: None,
            ..StudyConfig::new(base, tuned)
        })
    }
}

/// The models' load options: `hub` (the Hub, the adapter base) on the chosen device.
pub fn load_options(hub: HubOptions, device: &DeviceArgs) -> anyhow::Result<LoadOptions> {
    Ok(LoadOptions {
        hub,
        ..device.load_options()?
    })
}
