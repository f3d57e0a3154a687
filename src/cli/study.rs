//! `circuitdiff study`: the whole study, headless, with a progress bar per stage.

use super::args::shard;
use super::bars::{ctrl_c_token, Bars};
use super::device::{AdapterBaseArg, DeviceArgs};
use super::questions::{load_options, QuestionArgs};
use super::score::{table, ExactArgs};
use anyhow::Context as _;
use circuitdiff::report::validation::ExactConfig;
use circuitdiff::study::answer_format::AnswerFormat;
use circuitdiff::study::dir::{StudyConfig, StudyDir};
use circuitdiff::study::imported::AnswerFiles;
use circuitdiff::study::job::{merge_shards, run_study, StudyOutcome};
use circuitdiff::study::kind::Kind;
use std::path::PathBuf;

/// Answer, grade, select, score both models and compare them.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The base model: folder, .gguf or Hugging Face id.
    #[arg(long)]
    base: String,
    /// The fine-tuned model (also a PEFT LoRA adapter folder).
    #[arg(long)]
    tuned: String,
    #[command(flatten)]
    questions: QuestionArgs,
    #[command(flatten)]
    exact: ExactArgs,
    /// Use only the local Hugging Face cache.
    #[arg(long)]
    offline: bool,
    /// Answer only the chunks of --batch questions numbered i, i+n, i+2n, … (`i/n`, 0 ≤ i < n)
    /// and stop; `circuitdiff merge` joins the shards and finishes the study.
    #[arg(long, value_name = "I/N", value_parser = shard)]
    shard: Option<(usize, usize)>,
    /// Output directory; re-running the same command continues an interrupted study.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    brought: AnswerArgs,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    adapter: AdapterBaseArg,
}

/// Answers brought from elsewhere instead of generated.
#[derive(Debug, clap::Args)]
struct AnswerArgs {
    /// Take both models' answers from this file instead of generating them: circuitdiff's
    /// answers.jsonl of an earlier study.
    #[arg(long, value_name = "FILE")]
    answers: Option<PathBuf>,
    /// Take the base model's answers from this file (any --answers-format).
    #[arg(long, value_name = "FILE")]
    base_answers: Option<PathBuf>,
    /// Take the tuned model's answers from this file (any --answers-format).
    #[arg(long, value_name = "FILE")]
    tuned_answers: Option<PathBuf>,
    /// The format of the answers files: study (math_eval.py output), lm-eval (samples_*.jsonl),
    /// vllm (RequestOutput JSON lines) or circuitdiff; detected from the fields when left out.
    #[arg(long, value_name = "FORMAT")]
    answers_format: Option<AnswerFormat>,
}

impl AnswerArgs {
    /// The files the study takes its answers from, when any.
    fn files(&self) -> Option<AnswerFiles> {
        let files = AnswerFiles {
            base: self.base_answers.clone().or_else(|| self.answers.clone()),
            tuned: self.tuned_answers.clone().or_else(|| self.answers.clone()),
            format: self.answers_format,
        };
        (files.base.is_some() || files.tuned.is_some()).then_some(files)
    }
}

/// Join study or trajectory shards and finish the study or trajectory.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// Shard directories written by `study --shard i/n` or `trajectory --shard i/n`.
    #[arg(required = true)]
    shards: Vec<PathBuf>,
    /// Use only the local Hugging Face cache.
    #[arg(long)]
    offline: bool,
    /// Output directory of the merged study.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    adapter: AdapterBaseArg,
}

pub fn merge(args: &MergeArgs) -> anyhow::Result<()> {
    let load = load_options(args.adapter.hub(args.offline), &args.device)?;
    if args
        .shards
        .iter()
        .any(|s| Kind::detect(s) == Some(Kind::Trajectory))
    {
        return super::trajectory::merge(&args.shards, &load, &args.out);
    }
    let cancel = ctrl_c_token();
    let mut bars = Bars::default();
    let outcome = merge_shards(&args.shards, &load, &args.out, &mut bars, &cancel)
        .with_context(|| format!("merging into {}", args.out.display()))?;
    drop(bars);
    finish(outcome, &args.out)
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let cfg = StudyConfig {
        shard: args.shard,
        exact: args
            .exact
            .config(ExactConfig::default().samples, args.questions.seed),
        adapter_base: args.adapter.base(),
        answers: args.brought.files(),
        ..args.questions.config(&args.base, &args.tuned)?
    };
    let cancel = ctrl_c_token();
    let mut bars = Bars::default();
    let outcome = run_study(
        &cfg,
        &load_options(args.adapter.hub(args.offline), &args.device)?,
        &args.out,
        &mut bars,
        &cancel,
    )
    .with_context(|| format!("study into {}", args.out.display()))?;
    drop(bars);
    finish(outcome, &args.out)
}

fn finish(outcome: StudyOutcome, out: &std::path::Path) -> anyhow::Result<()> {
    match outcome {
        StudyOutcome::ShardAnswered { answered } => {
            println!("shard answered {answered} questions into {}; join the shards with `circuitdiff merge`", out.display());
        }
        StudyOutcome::Cancelled => {
            eprintln!("stopped; run the same command to continue");
            return Err(super::bars::Stopped.into());
        }
        StudyOutcome::Finished(result) => {
            let (cmp, counts) = *result;
            println!(
                "asked {}, base correct {}, tuned correct {}, both correct {}, after filters {}, scored {} (K = {}, T̄ = {:.1})",
                counts.asked,
                counts.models.base.correct,
                counts.models.tuned.correct,
                counts.both_correct,
                counts.after_filters,
                counts.scored,
                counts.k,
                counts.t_bar
            );
            if let Some(d) = counts.discordant {
                println!("accuracy change: {}", d.words());
            }
            for imported in &counts.imported {
                println!("{}", imported.describe());
            }
            print!("{}", table(&cmp));
            println!("wrote {}", StudyDir::new(out).report_path().display());
        }
    }
    Ok(())
}
