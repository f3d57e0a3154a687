//! `circuitdiff lab tune`: the command line of the lab's fine-tuner.

use super::args::{at_least, positive_finite};
use super::bars::{ctrl_c_token, Bars};
use super::device::AdapterBaseArg;
use anyhow::Context as _;
use circuitdiff::lab::tune::{self, Method, TuneConfig};
use circuitdiff::model::{LoadOptions, LoraSettings, LoraTarget};
use std::path::PathBuf;

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
    #[arg(long, default_value_t = 8)]
    lora_rank: usize,
    /// LoRA α (the update is scaled by α/r, or α/√r with --rslora).
    #[arg(long, default_value_t = 16.0, value_parser = positive_finite)]
    lora_alpha: f64,
    /// Comma-separated layers to adapt (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj,
    /// down_proj, lm_head), or all-linear.
    #[arg(long, default_value = "q_proj,k_proj,v_proj,o_proj")]
    lora_targets: String,
    /// rsLoRA scaling α/√r.
    #[arg(long)]
    rslora: bool,
    /// Optimiser steps.
    #[arg(long, default_value_t = 20, value_parser = at_least(1))]
    steps: usize,
    /// A checkpoint every this many steps (and after the last).
    #[arg(long, default_value_t = 5, value_parser = at_least(1))]
    save_every: usize,
    /// Peak learning rate (AdamW; linear warm-up, then cosine to a tenth).
    #[arg(long, default_value_t = 1e-4, value_parser = positive_finite)]
    lr: f64,
    #[arg(long, default_value_t = 0)]
    warmup: usize,
    /// Maximum new tokens per sampled answer.
    #[arg(long, default_value_t = 64, value_parser = at_least(1))]
    max_new_tokens: usize,
    /// Questions held out (the dataset's first) for the accuracy logged at each checkpoint.
    #[arg(long, default_value_t = 50)]
    eval_questions: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// GRPO: questions per step.
    #[arg(long, default_value_t = 4, value_parser = at_least(1))]
    questions: usize,
    /// GRPO: answers sampled per question (generated in one batch).
    #[arg(long, default_value_t = 8)]
    group: usize,
    /// Sampling temperature (GRPO's groups, DPO's own samples).
    #[arg(long, default_value_t = 1.0, value_parser = positive_finite)]
    temperature: f64,
    /// GRPO: clip range ε of the probability ratio.
    #[arg(long, default_value_t = 0.2, value_parser = positive_finite)]
    clip: f64,
    /// KL weight β (GRPO, default 0.04) or DPO's inverse temperature β (default 0.1).
    #[arg(long)]
    beta: Option<f64>,
    /// GRPO: Dr. GRPO's length-unbiased loss (TRL's loss_type="dr_grpo").
    #[arg(long)]
    length_unbiased: bool,
    /// DPO: pairs per step.
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// DPO: answers sampled per question to find a correct and an incorrect one.
    #[arg(long, default_value_t = 4, value_parser = at_least(2))]
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
            MethodArg::Grpo => Method::Grpo {
                questions: self.questions,
                group: self.group,
                temperature: self.temperature,
                clip: self.clip,
                beta: self.beta.unwrap_or(0.04),
                length_unbiased: self.length_unbiased,
            },
            MethodArg::Dpo => Method::Dpo {
                beta: self.beta.unwrap_or(0.1),
                batch: self.batch,
                samples: self.samples,
                temperature: self.temperature,
                pairs: self.pairs.clone(),
            },
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
    let report = tune::run(&cfg, &opts, &args.out, &mut bars, &cancel)
        .with_context(|| format!("fine-tuning {} into {}", cfg.model, args.out.display()))?;
    drop(bars);
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
