//! `lab train`: the whole zoo, stage by stage (base, then GRPO, PPO and DPO from the base),
//! resumable at stage boundaries, and the held-out accuracy of every model.

use super::layout::LabDir;
use super::policy::{load_frozen, Policy};
use super::sft::SftConfig;
use super::task::{eval_questions, tokenizer_json, train_questions, CHAT_TEMPLATE, EVAL_N};
use super::{dpo, eval, grpo, ppo, sft, LabError, Result, StageContext};
use crate::model::{random_weights, write_hf_folder, ModelConfig};
use crate::progress::{CancelToken, Progress};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

/// The zoo's models, in training order; each is a folder of the output directory.
pub const STAGES: [&str; 4] = ["base", "grpo", "ppo", "dpo"];

/// The shape of the zoo's Llama.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelShape {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub intermediate: usize,
}

impl ModelShape {
    /// A Llama configuration of this shape for a vocabulary of `vocab` tokens (`<s>` = 1,
    /// `</s>` = 2, untied embeddings, 128 positions).
    pub fn config(&self, vocab: usize) -> ModelConfig {
        ModelConfig::llama(
            vocab,
            self.hidden,
            self.intermediate,
            self.layers,
            (self.heads, self.kv_heads),
            128,
        )
    }
}

/// Every setting of a lab run (written to `lab.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabConfig {
    pub seed: u64,
    pub shape: ModelShape,
    /// Standard deviation of the initial weights.
    pub init_std: f64,
    /// Distinct training questions (none from the held-out split).
    pub train_questions: usize,
    pub max_new_tokens: usize,
    /// Held-out questions for the accuracy logged during training.
    pub eval_during: usize,
    /// Log held-out accuracy every this many steps.
    pub eval_every: usize,
    /// Intermediate checkpoints kept per stage.
    pub checkpoints: usize,
    pub sft: SftConfig,
    pub grpo: grpo::GrpoConfig,
    pub ppo: ppo::PpoConfig,
    pub dpo: dpo::DpoConfig,
}

impl LabConfig {
    /// The settings that train the committed zoo.
    pub fn full(seed: u64) -> Self {
        Self {
            seed,
            shape: ModelShape {
                hidden: 128,
                layers: 4,
                heads: 4,
                kv_heads: 2,
                intermediate: 384,
            },
            init_std: 0.02,
            train_questions: 12_000,
            max_new_tokens: 40,
            eval_during: 100,
            eval_every: 50,
            checkpoints: 2,
            sft: SftConfig {
                steps: 600,
                batch: 64,
                lr: 2e-3,
                warmup: 50,
            },
            grpo: grpo::GrpoConfig {
                steps: 120,
                questions: 16,
                group: 8,
                temperature: 1.0,
                lr: 5e-5,
                warmup: 10,
                clip: 0.2,
                beta: 0.04,
                epochs: 2,
                micro_batch: None,
            },
            ppo: ppo::PpoConfig {
                steps: 120,
                questions: 32,
                samples: 4,
                temperature: 1.0,
                lr: 5e-5,
                warmup: 10,
                clip: 0.2,
                beta: 0.04,
                gamma: 1.0,
                lambda: 0.95,
                value_coef: 0.5,
                value_lr: 1e-3,
                epochs: 2,
            },
            dpo: dpo::DpoConfig {
                questions: 512,
                samples: 8,
                temperature: 1.0,
                epochs: 2,
                batch: 32,
                lr: 1e-5,
                warmup: 10,
                beta: 0.1,
                solution_fallback: false,
            },
        }
    }

    /// A few steps of everything on a smaller model (for tests and CI).
    pub fn quick(seed: u64) -> Self {
        let mut c = Self::full(seed);
        c.shape = ModelShape {
            hidden: 32,
            layers: 2,
            heads: 2,
            kv_heads: 1,
            intermediate: 64,
        };
        c.train_questions = 200;
        c.max_new_tokens = 24;
        c.eval_during = 16;
        c.eval_every = 4;
        c.sft.steps = 8;
        c.sft.batch = 16;
        c.sft.warmup = 2;
        c.grpo.steps = 2;
        c.grpo.questions = 4;
        c.grpo.group = 4;
        c.ppo.steps = 2;
        c.ppo.questions = 4;
        c.dpo.questions = 16;
        c.dpo.batch = 8;
        c.dpo.epochs = 1;
        c.dpo.solution_fallback = true;
        c
    }
}

/// `zoo.json`: held-out accuracy and training time of each model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZooReport {
    pub software: String,
    /// Questions of the held-out split (`builtin:arith`, seed 42) each model answered.
    pub eval_questions: usize,
    /// Greedy accuracy per model.
    pub accuracy: BTreeMap<String, f64>,
    /// Wall-clock seconds of each stage's training (when trained by this directory's runs).
    pub train_seconds: BTreeMap<String, f64>,
    pub threads: usize,
    pub config: LabConfig,
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    crate::fsutil::write_json(path, value).map_err(|e| LabError::io(path, e))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| LabError::json(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LabError::io(path, e)),
    }
}

/// Train the zoo into `out` (`base/`, `grpo/`, `ppo/`, `dpo/`, `checkpoints/`, `lab.json`,
/// `zoo.json`). A stage whose model folder is complete is kept, so re-running the same command
/// continues an interrupted run. `None` when cancelled.
pub fn train_zoo(
    out: &Path,
    cfg: &LabConfig,
    progress: &mut dyn Progress,
    cancel: &CancelToken,
) -> Result<Option<ZooReport>> {
    let _lock = crate::lock::DirLock::acquire(out)?;
    let lab = LabDir::new(out);
    let lab_json = lab.config_path();
    match read_json::<LabConfig>(&lab_json)? {
        Some(previous) if previous != *cfg => {
            return Err(LabError::DifferentLab {
                dir: out.to_owned(),
            })
        }
        Some(_) => {}
        None => write_json(&lab_json, cfg)?,
    }
    let times_path = lab.times_path();
    let mut times: BTreeMap<String, f64> = read_json(&times_path)?.unwrap_or_default();
    let train = train_questions(cfg.train_questions, cfg.seed);
    for (i, &name) in STAGES.iter().enumerate() {
        if lab
            .stage_dir(name)
            .join(crate::model::WEIGHTS_FILE)
            .is_file()
        {
            continue;
        }
        let started = Instant::now();
        let mut cx = StageContext::new(name, i, out, cfg, progress, cancel)?;
        let policy = if name == "base" {
            let init = lab.checkpoint_dir(name, 0);
            let tok = tokenizer_json();
            let vocab = tok["model"]["vocab"].as_object().map_or(0, |v| v.len());
            let config = cfg.shape.config(vocab);
            let weights = random_weights(&config, cfg.seed, cfg.init_std)?;
            write_hf_folder(&init, &config, &weights, &tok, Some(CHAT_TEMPLATE))?;
            let policy = Policy::load(&init)?;
            sft::train(&policy, &train, &cfg.sft, &mut cx)?;
            policy
        } else {
            let policy = Policy::load(&lab.base_dir())?;
            let reference = load_frozen(&lab.base_dir())?;
            match name {
                "grpo" => grpo::train(&policy, &reference, &train, &cfg.grpo, &mut cx)?,
                "ppo" => ppo::train(&policy, &reference, &train, &cfg.ppo, &mut cx)?,
                _ => dpo::train(&policy, &reference, &train, &cfg.dpo, &mut cx)?,
            }
            policy
        };
        if cancel.is_cancelled() {
            return Ok(None);
        }
        policy.save(&lab.stage_dir(name))?;
        times.insert(name.to_owned(), started.elapsed().as_secs_f64());
        write_json(&times_path, &times)?;
    }
    let questions = eval_questions(EVAL_N);
    let mut accuracy = BTreeMap::new();
    progress.start("evaluate", STAGES.len() as u64);
    for (i, name) in STAGES.iter().enumerate() {
        if cancel.is_cancelled() {
            return Ok(None);
        }
        let model = load_frozen(&lab.stage_dir(name))?;
        accuracy.insert(
            (*name).to_owned(),
            eval::accuracy(&model, &questions, cfg.max_new_tokens)?,
        );
        progress.set(i as u64 + 1);
    }
    let report = ZooReport {
        software: format!("circuitdiff {}", env!("CARGO_PKG_VERSION")),
        eval_questions: questions.len(),
        accuracy,
        train_seconds: times,
        threads: candle_core::utils::get_num_threads(),
        config: cfg.clone(),
    };
    write_json(&lab.report_path(), &report)?;
    Ok(Some(report))
}
