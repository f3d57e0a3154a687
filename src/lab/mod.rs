//! The lab: trains the demo model zoo from scratch on the built-in arithmetic task. A small
//! Llama learns worked solutions by supervised training (the base), then three fine-tunes of
//! it: GRPO and PPO (online RL with the grader as reward) and DPO (preferences from the base's
//! own samples). Every model is a Hugging Face folder with its `train_log.csv`.
//!
//! Training runs the one transformer of [`crate::model`] with its weights made trainable
//! ([`crate::model::Model::trainable`]); attribution never computes weight gradients.

pub mod dpo;
pub mod eval;
pub mod grpo;
pub mod layout;
pub mod optim;
mod pairs;
pub mod peft;
pub mod policy;
pub mod ppo;
pub mod rollout;
pub mod sft;
pub mod task;
pub mod tune;
mod tune_out;
mod zoo;

pub use zoo::{train_zoo, LabConfig, ModelShape, ZooReport, STAGES};

use crate::progress::{CancelToken, Progress};
use crate::report::train_log::{self, TrainLog};
use crate::study::dataset::Question;
use policy::Policy;
use rand::SeedableRng as _;
use std::path::{Path, PathBuf};

/// Why a lab run failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    #[error(transparent)]
    Prompt(#[from] crate::study::prompt::PromptError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Log(#[from] train_log::UnknownColumn),
    #[error(transparent)]
    Run(#[from] crate::report::run::RunError),
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    #[error("{}: {source}", path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{} holds a lab run with other settings ({}): choose another --out", dir.display(), layout::LabDir::new(dir).config_path().display())]
    DifferentLab { dir: PathBuf },
    #[error("the gradient is not finite (norm {norm}) at step {step}: lower the learning rate")]
    NonFiniteGradient { norm: f64, step: usize },
    #[error("the base model gave no question both a correct and an incorrect answer, so DPO has no pairs: sample more questions or answers")]
    NoPreferencePairs,
    #[error("a training sequence needs a prompt and an answer")]
    EmptySequence,
    #[error("no worked solution for `{0}`")]
    NoWorkedSolution(String),
    #[error("cannot tokenize {text:?}: {message}")]
    Tokenize { text: String, message: String },
    #[error("{}: not a checkpoint of this run: {message}", path.display())]
    NotThisRun { path: PathBuf, message: String },
    #[error(transparent)]
    Dataset(#[from] crate::study::dataset::DatasetError),
    #[error(transparent)]
    Target(#[from] crate::model::UnknownTarget),
    #[error("{0}")]
    Config(String),
    #[error("fine-tuning {spec} needs about {:.1} GiB ({what}), but only {:.1} GiB of memory is available: {fix}", *needed as f64 / GIB, *available as f64 / GIB)]
    TooLarge {
        spec: String,
        needed: u64,
        available: u64,
        what: String,
        fix: String,
    },
    #[error("{}: line {line}: {message}", path.display())]
    Pairs {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// Bytes in a GiB, for messages.
const GIB: f64 = (1u64 << 30) as f64;

impl LabError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }

    pub fn json(path: &Path, source: serde_json::Error) -> Self {
        Self::Json {
            path: path.to_owned(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, LabError>;

/// What a trainer needs besides its model and settings: randomness, the evaluation questions,
/// where its log and checkpoints go, progress and cancellation.
pub struct StageContext<'a> {
    pub rng: rand::rngs::StdRng,
    /// Held-out questions for the accuracy measured during training.
    pub eval: Vec<Question>,
    pub max_new_tokens: usize,
    name: String,
    dir: PathBuf,
    lab: layout::LabDir,
    eval_every: usize,
    keep: usize,
    total: usize,
    progress: &'a mut dyn Progress,
    cancel: &'a CancelToken,
}

impl<'a> StageContext<'a> {
    /// The context of stage `name` (the `index`-th of [`STAGES`]) of the run `cfg` writing into
    /// `out`.
    pub fn new(
        name: &str,
        index: usize,
        out: &Path,
        cfg: &LabConfig,
        progress: &'a mut dyn Progress,
        cancel: &'a CancelToken,
    ) -> Result<Self> {
        let lab = layout::LabDir::new(out);
        let dir = lab.stage_dir(name);
        std::fs::create_dir_all(&dir).map_err(|e| LabError::io(&dir, e))?;
        Ok(Self {
            rng: rand::rngs::StdRng::seed_from_u64(
                cfg.seed.wrapping_mul(1_000).wrapping_add(index as u64),
            ),
            eval: task::eval_questions(cfg.eval_during),
            max_new_tokens: cfg.max_new_tokens,
            name: name.to_owned(),
            lab,
            dir,
            eval_every: cfg.eval_every.max(1),
            keep: cfg.checkpoints,
            total: 0,
            progress,
            cancel,
        })
    }

    /// The training log of this stage, inside its model folder.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(train_log::FILE_NAME)
    }

    /// An empty training log for this stage with the standard and `extra` columns.
    pub fn new_log(&self, extra: &[&str]) -> TrainLog {
        let name = self.dir.file_name().unwrap_or_default().to_string_lossy();
        TrainLog::new(&name, extra)
    }

    /// A training loop of `total` steps begins.
    pub fn begin(&mut self, total: usize) {
        self.total = total;
        self.progress.start(&self.name, total as u64);
    }

    pub fn cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Whether held-out accuracy is measured after `step` (every `eval_every` steps and at the
    /// end).
    fn eval_due(&self, step: usize) -> bool {
        (step + 1).is_multiple_of(self.eval_every) || step + 1 == self.total
    }

    /// Finish `step`: add the held-out accuracy to `row` when it is due, append the row to the
    /// log, report progress, and keep an intermediate checkpoint at each of `keep` evenly
    /// spaced steps before the end.
    pub fn end_step(
        &mut self,
        step: usize,
        policy: &Policy,
        log: &mut TrainLog,
        mut row: Vec<(&str, f64)>,
    ) -> Result<()> {
        if self.eval_due(step) {
            let acc = eval::accuracy(&policy.model, &self.eval, self.max_new_tokens)?;
            row.push(("accuracy", acc));
        }
        log.push(step + 1, &row)?;
        log.write(&self.log_path())?;
        self.progress.set(step as u64 + 1);
        let every = self.total / (self.keep + 1);
        let due = every > 0 && (step + 1).is_multiple_of(every) && (step + 1) / every <= self.keep;
        if due && step + 1 < self.total {
            policy.save(&self.lab.checkpoint_dir(&self.name, step + 1))?;
        }
        Ok(())
    }

    pub fn note(&mut self, text: &str) {
        self.progress.note(text);
    }
}
