//! `circuitdiff lab`: train the demo model zoo, fine-tune any checkpoint, and measure a model's
//! task accuracy.

use super::args::{at_least, whole_in};
use super::bars::{ctrl_c_token, Bars};
use super::device::AdapterBaseArg;
use anyhow::Context as _;
use circuitdiff::lab::task::{eval_questions, EVAL_N};
use circuitdiff::lab::{eval, train_zoo, LabConfig};
use circuitdiff::model::{LoadOptions, Model};
use std::path::PathBuf;

/// The built-in RL lab: the demo zoo, and fine-tuning any checkpoint.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Train the zoo from scratch: the SFT base, then GRPO, PPO and DPO fine-tunes of it.
    Train(TrainArgs),
    /// Greedy accuracy of models on the held-out split of the built-in task.
    Eval(EvalArgs),
    /// Fine-tune any checkpoint (folder, .gguf, Hub id, adapter) with GRPO or DPO, LoRA or
    /// full, into a TRL-layout folder (checkpoint-N/, trainer_state.json) that `trajectory`
    /// reads; re-running the same command continues an interrupted run.
    Tune(Box<super::lab_tune::TuneArgs>),
}

#[derive(Debug, clap::Args)]
struct TrainArgs {
    /// Output directory (base/, grpo/, ppo/, dpo/, checkpoints/, lab.json, zoo.json);
    /// re-running the same command continues an interrupted run.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// A few steps of every stage on a smaller model (a smoke test, not the zoo).
    #[arg(long)]
    quick: bool,
}

#[derive(Debug, clap::Args)]
struct EvalArgs {
    /// Model folders (or any model spec, PEFT LoRA adapter folders included).
    #[arg(required = true)]
    models: Vec<String>,
    /// Held-out questions to ask (the first N of `builtin:arith`, at most the split's size).
    #[arg(long, default_value_t = EVAL_N, value_parser = whole_in(1, EVAL_N))]
    n: usize,
    /// Maximum new tokens per answer.
    #[arg(long, default_value_t = 40, value_parser = at_least(1))]
    max_new_tokens: usize,
    #[command(flatten)]
    adapter: AdapterBaseArg,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    match &args.command {
        Command::Train(a) => train(a),
        Command::Eval(a) => evaluate(a),
        Command::Tune(a) => super::lab_tune::run(a),
    }
}

fn train(args: &TrainArgs) -> anyhow::Result<()> {
    let cfg = if args.quick {
        LabConfig::quick(args.seed)
    } else {
        LabConfig::full(args.seed)
    };
    let cancel = ctrl_c_token();
    let mut bars = Bars::default();
    let report = train_zoo(&args.out, &cfg, &mut bars, &cancel)
        .with_context(|| format!("training the zoo into {}", args.out.display()))?;
    drop(bars);
    let Some(report) = report else {
        eprintln!("stopped; run the same command again to continue from the last finished stage");
        return Ok(());
    };
    println!(
        "held-out accuracy ({} questions of builtin:arith, greedy):",
        report.eval_questions
    );
    for (name, acc) in &report.accuracy {
        let secs = report.train_seconds.get(name).copied().unwrap_or(f64::NAN);
        println!("  {name:<5} {acc:>6.3}   trained in {secs:.0} s");
    }
    println!(
        "wrote {}",
        circuitdiff::lab::layout::LabDir::new(&args.out)
            .report_path()
            .display()
    );
    Ok(())
}

fn evaluate(args: &EvalArgs) -> anyhow::Result<()> {
    let questions = eval_questions(args.n);
    let opts = LoadOptions {
        hub: args.adapter.hub(false),
        ..LoadOptions::default()
    };
    for spec in &args.models {
        let model = Model::load(spec, &opts).with_context(|| format!("loading {spec}"))?;
        let acc = eval::accuracy(&model, &questions, args.max_new_tokens)
            .with_context(|| format!("evaluating {spec}"))?;
        println!("{spec}\t{acc:.4}\t({} questions)", questions.len());
    }
    Ok(())
}
