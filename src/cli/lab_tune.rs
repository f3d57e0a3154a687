//! `circuitdiff lab tune`: the command line of the lab's fine-tuner.

use super::args::{at_least, positive_finite};
use super::bars::{ctrl_c_token, Bars};
use super::device::AdapterBaseArg;
use anyhow::Context as _;
use circuitdiff::lab::tune::{self, DpoSettings, GrpoSettings, Method, TuneConfig, TuneEvent};
use circuitdiff::model::{LoadOptions, LoraSettings, LoraTarget};
use std::path::PathBuf;

/// `lab tune`'s defaults, which the library owns (the app's form starts from the same).
fn defaults() -> TuneConfig {
    TuneConfig::new("", "")
}

fn lora_default() -> LoraSettings {
    TuneConfig::default_lora(defaults().seed)
}

/// Target modules as `--lora-targets` takes them.
fn target_names(targets: &[LoraTarget]) -> String {
    targets
        .iter()
        .map(|t| t.name())
        .collect::<Vec<_>>()
        .join(",")
}

/// The fine-tuning algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum MethodArg {
    Grpo,
    Dpo,
}

#[derive(Debug, clap::Args)]
pub struct TuneArgs {
    /// The model to fine-tune: a Hugging Face folder, a .gguf file, a Hub id or a LoRA adapter.
    model: String,
    /// Questions with answers: builtin:arith[?…] or a JSON Lines file (e.g. the GSM8K test set).
    #[arg(long)]
    dataset: String,
    /// Output folder (checkpoint-N/, trainer_state.json, tune.json).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value_t = MethodArg::Grpo)]
    method: MethodArg,
    /// Train every weight instead of LoRA updates.
    #[arg(long, conflicts_with_all = ["lora_rank", "lora_alpha", "lora_targets", "rslora"])]
    full: bool,
    /// LoRA rank r (1 or more).
    #[arg(long, default_value_t = lora_default().rank)]
    lora_rank: usize,
    /// LoRA α (the update is scaled by α/r, or α/√r with --rslora).
    #[arg(long, default_value_t = lora_default().alpha, value_parser = positive_finite)]
    lora_alpha: f64,
    /// Comma-separated layers to adapt (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj,
    /// down_proj, lm_head), or all-linear.
    #[arg(long, default_value_t = target_names(&lora_default().targets))]
    lora_targets: String,
    /// rsLoRA scaling α/√r.
    #[arg(long)]
    rslora: bool,
    /// Optimiser steps.
    #[arg(long, default_value_t = defaults().steps, value_parser = at_least(1))]
    steps: usize,
    /// A checkpoint every this many steps (and after the last).
    #[arg(long, default_value_t = defaults().save_every, value_parser = at_least(1))]
    save_every: usize,
    /// Peak learning rate (AdamW; linear warm-up, then cosine to a tenth).
    #[arg(long, default_value_t = defaults().lr, value_parser = positive_finite)]
    lr: f64,
    #[arg(long, default_value_t = defaults().warmup)]
    warmup: usize,
    /// Maximum new tokens per sampled answer.
    #[arg(long, default_value_t = defaults().max_new_tokens, value_parser = at_least(1))]
    max_new_tokens: usize,
    /// Questions held out (the dataset's first) for the accuracy logged at each checkpoint.
    #[arg(long, default_value_t = defaults().eval_questions)]
    eval_questions: usize,
    #[arg(long, default_value_t = defaults().seed)]
    seed: u64,
    /// GRPO: questions per step.
    #[arg(long, default_value_t = GrpoSettings::default().questions, value_parser = at_least(1))]
    questions: usize,
    /// GRPO: answers sampled per question (generated in one batch).
    #[arg(long, default_value_t = GrpoSettings::default().group)]
    group: usize,
    /// Sampling temperature (GRPO's groups, DPO's own samples).
    #[arg(long, default_value_t = GrpoSettings::default().temperature, value_parser = positive_finite)]
    temperature: f64,
    /// GRPO: clip range ε of the probability ratio.
    #[arg(long, default_value_t = GrpoSettings::default().clip, value_parser = positive_finite)]
    clip: f64,
    /// KL weight β (GRPO, default 0.04) or DPO's inverse temperature β (default 0.1).
    #[arg(long)]
    beta: Option<f64>,
    /// GRPO: Dr. GRPO's length-unbiased loss (TRL's loss_type="dr_grpo").
    #[arg(long)]
    length_unbiased: bool,
    /// GRPO: rows (sampled answers) per forward and backward pass, their gradients accumulated
    /// into one update: bounds a step's memory (default: all of a step's rows in one pass).
    #[arg(long, value_name = "ROWS")]
    micro_batch: Option<usize>,
    /// DPO: pairs per step.
    #[arg(long, default_value_t = DpoSettings::default().batch)]
    batch: usize,
    /// DPO: answers sampled per question to find a correct and an incorrect one.
    #[arg(long, default_value_t = DpoSettings::default().samples, value_parser = at_least(2))]
    samples: usize,
    /// DPO: a JSON Lines file of {"prompt", "chosen", "rejected"} instead of own samples.
    #[arg(long)]
    pairs: Option<PathBuf>,
    #[command(flatten)]
    adapter: AdapterBaseArg,
}

impl TuneArgs {
    fn config(&self) -> anyhow::Result<TuneConfig> {
        let lora = if self.full {
            None
        } else {
            Some(LoraSettings {
                rank: self.lora_rank,
                alpha: self.lora_alpha,
                rslora: self.rslora,
                targets: LoraTarget::parse_list(&self.lora_targets)?,
                seed: self.seed,
            })
        };
        let method = match self.method {
            MethodArg::Grpo => Method::Grpo(GrpoSettings {
                questions: self.questions,
                group: self.group,
                temperature: self.temperature,
                clip: self.clip,
                beta: self.beta.unwrap_or(GrpoSettings::default().beta),
                length_unbiased: self.length_unbiased,
                micro_batch: self.micro_batch,
            }),
            MethodArg::Dpo => Method::Dpo(DpoSettings {
                beta: self.beta.unwrap_or(DpoSettings::default().beta),
                batch: self.batch,
                samples: self.samples,
                temperature: self.temperature,
                pairs: self.pairs.clone(),
            }),
        };
        Ok(TuneConfig {
            model: self.model.clone(),
            dataset: self.dataset.clone(),
            method,
            lora,
            steps: self.steps,
            lr: self.lr,
            warmup: self.warmup,
            save_every: self.save_every,
            max_new_tokens: self.max_new_tokens,
            eval_questions: self.eval_questions,
            seed: self.seed,
        })
    }
}

pub fn run(args: &TuneArgs) -> anyhow::Result<()> {
    let cfg = args.config()?;
    let opts = LoadOptions {
        hub: args.adapter.hub(false),
        ..LoadOptions::default()
    };
    let cancel = ctrl_c_token();
    let mut bars = Bars::default();
    let mut seconds = Vec::new();
    let mut watch = |e: &TuneEvent| seconds.extend(e.seconds);
    let report = tune::run_watched(&cfg, &opts, &args.out, &mut bars, &cancel, &mut watch)
        .with_context(|| format!("fine-tuning {} into {}", cfg.model, args.out.display()))?;
    drop(bars);
    if let Some(line) = step_times(&seconds) {
        println!("{line}");
    }
    if report.steps < cfg.steps {
        eprintln!(
            "stopped after step {}; run the same command again to continue from the last checkpoint",
            report.steps
        );
    }
    if let Some(acc) = report.accuracy {
        println!("held-out accuracy at step {}: {acc:.3}", report.steps);
    }
    println!(
        "wrote {} checkpoints into {}; compare them with `circuitdiff trajectory {}`",
        report.checkpoints.len(),
        args.out.display(),
        args.out.display()
    );
    Ok(())
}

/// The wall time of this run's steps: the first (which warms up) and the median of the others.
fn step_times(seconds: &[f64]) -> Option<String> {
    let (first, rest) = seconds.split_first()?;
    let mut rest = rest.to_vec();
    rest.sort_by(f64::total_cmp);
    Some(match rest.get(rest.len() / 2) {
        Some(median) => format!(
            "step time: {first:.2} s the first, then a median of {median:.2} s over {} steps",
            rest.len()
        ),
        None => format!("step time: {first:.2} s"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        tune: TuneArgs,
    }

    fn config(extra: &[&str]) -> TuneConfig {
        let args = ["tune", "m", "--dataset", "d", "--out", "o"];
        let cli = Cli::try_parse_from(args.iter().chain(extra)).unwrap();
        cli.tune.config().unwrap()
    }

    /// The command line's defaults are the library's, as the app's form's are.
    #[test]
    fn the_default_command_line_is_the_librarys_default_run() {
        assert_eq!(config(&[]), TuneConfig::new("m", "d"));
        let dpo = TuneConfig {
            method: Method::Dpo(DpoSettings::default()),
            ..TuneConfig::new("m", "d")
        };
        assert_eq!(config(&["--method", "dpo"]), dpo);
        let full = TuneConfig {
            lora: None,
            ..TuneConfig::new("m", "d")
        };
        assert_eq!(config(&["--full"]), full);
    }
}
