//! What every trainer of the zoo shares: its stage's randomness, evaluation questions, log,
//! checkpoints, progress and cancellation.

use super::layout::LabDir;
use super::policy::Policy;
use super::zoo::LabConfig;
use super::{eval, task, LabError, Result};
use crate::progress::{CancelToken, Progress};
use crate::report::train_log::{self, TrainLog};
use crate::study::dataset::Question;
use rand::SeedableRng as _;
use std::path::{Path, PathBuf};

/// What a trainer needs besides its model and settings: randomness, the evaluation questions,
/// where its log and checkpoints go, progress and cancellation.
pub struct StageContext<'a> {
    pub rng: rand::rngs::StdRng,
    /// Held-out questions for the accuracy measured during training.
    pub eval: Vec<Question>,
    pub max_new_tokens: usize,
    name: String,
    dir: PathBuf,
    lab: LabDir,
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
        let lab = LabDir::new(out);
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
