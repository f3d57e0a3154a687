//! Fine-tuning from the Models panel: the form (whose defaults are `lab tune`'s), the run on a
//! worker thread (the same `lab::tune` as `circuitdiff lab tune`, reporting each step's
//! measurements as they come), and, once it ends, the trajectory of its checkpoints (the same
//! `run_trajectory` as `circuitdiff trajectory`), opened when it is done. The drawing is in
//! `tune_ui.rs`.

use super::error::AppError;
use super::worker::{clock, Message, Stages, Worker};
use crate::lab::tune::{
    self, DpoSettings, GrpoSettings, Method, TuneConfig, TuneEvent, TuneReport,
};
use crate::model::{LoadOptions, LoraSettings};
use crate::report::trajectory::{AnswerSource, QuestionSet};
use crate::report::validation::{ExactConfig, SampleCount};
use crate::study::dataset::ArithSpec;
use crate::study::dir::StudyConfig;
use crate::study::ladder;
use crate::study::trajectory::{run_trajectory, TrajectoryOutcome};
use crate::study::trajectory_dir::TrajectoryConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// Where the questions of a fine-tune come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum DataSource {
    /// `builtin:arith` with the form's options.
    #[default]
    Arithmetic,
    /// A JSON Lines file with answers (GSM8K's among them).
    File,
}

/// The fine-tuning algorithm chosen in the form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum MethodChoice {
    #[default]
    Grpo,
    Dpo,
}

/// The fine-tune form: every setting of [`TuneConfig`], with both methods' settings kept while
/// the other is chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TuneForm {
    /// The model spec: a folder, a `.gguf`, an adapter or a Hub id.
    pub model: String,
    pub source: DataSource,
    pub arith: ArithSpec,
    /// The JSON Lines file, when `source` is [`DataSource::File`].
    pub file: String,
    pub method: MethodChoice,
    pub grpo: GrpoSettings,
    pub dpo: DpoSettings,
    /// Train every weight instead of LoRA updates.
    pub full: bool,
    /// The LoRA updates (their seed is the run's).
    pub lora: LoraSettings,
    pub steps: usize,
    pub save_every: usize,
    pub lr: f64,
    pub warmup: usize,
    pub max_new_tokens: usize,
    pub eval_questions: usize,
    pub seed: u64,
    /// Output folder; empty: a new folder under the app's data folder.
    pub out: String,
}

impl Default for TuneForm {
    /// `lab tune`'s defaults ([`TuneConfig::new`]) on the built-in arithmetic.
    fn default() -> Self {
        let cfg = TuneConfig::new("", "");
        Self {
            model: String::new(),
            source: DataSource::Arithmetic,
            arith: ArithSpec::default(),
            file: String::new(),
            method: match cfg.method {
                Method::Grpo(_) => MethodChoice::Grpo,
                Method::Dpo(_) => MethodChoice::Dpo,
            },
            grpo: GrpoSettings::default(),
            dpo: DpoSettings::default(),
            full: cfg.lora.is_none(),
            lora: cfg
                .lora
                .unwrap_or_else(|| TuneConfig::default_lora(cfg.seed)),
            steps: cfg.steps,
            save_every: cfg.save_every,
            lr: cfg.lr,
            warmup: cfg.warmup,
            max_new_tokens: cfg.max_new_tokens,
            eval_questions: cfg.eval_questions,
            seed: cfg.seed,
            out: String::new(),
        }
    }
}

impl TuneForm {
    /// The dataset spec the form names.
    pub fn dataset(&self) -> String {
        match self.source {
            DataSource::Arithmetic => arith_spec(&self.arith),
            DataSource::File => self.file.trim().to_owned(),
        }
    }

    /// The run the form describes, checked as `lab tune` checks it.
    pub fn config(&self) -> Result<TuneConfig, AppError> {
        let cfg = TuneConfig {
            model: self.model.trim().to_owned(),
            dataset: self.dataset(),
            method: match self.method {
                MethodChoice::Grpo => Method::Grpo(self.grpo.clone()),
                MethodChoice::Dpo => Method::Dpo(self.dpo.clone()),
            },
            lora: (!self.full).then(|| LoraSettings {
                seed: self.seed,
                ..self.lora.clone()
            }),
            steps: self.steps,
            lr: self.lr,
            warmup: self.warmup,
            save_every: self.save_every,
            max_new_tokens: self.max_new_tokens,
            eval_questions: self.eval_questions,
            seed: self.seed,
        };
        if cfg.model.is_empty() {
            return Err(AppError::NoTuneModel);
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

/// `builtin:arith` with the parameters of `spec` that differ from the defaults.
fn arith_spec(spec: &ArithSpec) -> String {
    let d = ArithSpec::default();
    let mut params = Vec::new();
    if spec.n != d.n {
        params.push(format!("n={}", spec.n));
    }
    if spec.seed != d.seed {
        params.push(format!("seed={}", spec.seed));
    }
    if spec.max_operand != d.max_operand {
        params.push(format!("max={}", spec.max_operand));
    }
    if spec.terms != d.terms {
        params.push(format!("terms={}", spec.terms));
    }
    if spec.ops != d.ops {
        params.push(format!("ops={}", spec.ops));
    }
    if params.is_empty() {
        "builtin:arith".to_owned()
    } else {
        format!("builtin:arith?{}", params.join("&"))
    }
}

/// The GSM8K test set of the shared data, relative to the working folder.
pub const GSM8K: &str = "../shared/data/gsm8k/test.jsonl";

/// The GSM8K test set of the shared data, when it is found from the working folder (beside it,
/// in it, or at the root).
pub fn gsm8k_file() -> Option<PathBuf> {
    let rest = GSM8K.trim_start_matches("../");
    [GSM8K.to_owned(), rest.to_owned(), format!("/{rest}")]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .and_then(|p| std::fs::canonicalize(p).ok())
}

/// A fine-tune in progress.
pub struct TuneRun {
    worker: Worker<TuneReport>,
    events: Receiver<TuneEvent>,
    pub stages: Stages,
    started: Instant,
}

/// How a fine-tune ended.
pub enum TuneEnd {
    /// All its steps are done, or it was cancelled after these.
    Stopped(TuneReport),
    Failed(AppError),
}

/// The trajectory of a finished fine-tune being computed.
pub struct TrajectoryRun {
    worker: Worker<TrajectoryOutcome>,
    pub stages: Stages,
    /// Where it is written.
    pub out: PathBuf,
}

/// The fine-tune panel's state: the run, what it has measured, how it ended, its trajectory.
#[derive(Default)]
pub struct Tuning {
    /// Whether the fine-tune window is open.
    pub open: bool,
    pub run: Option<TuneRun>,
    /// The settings of the last run started, its folder.
    pub last: Option<(TuneConfig, PathBuf)>,
    /// Each step's measurements of the last run, in order.
    pub history: Vec<TuneEvent>,
    pub ended: Option<TuneEnd>,
    pub trajectory: Option<TrajectoryRun>,
    /// Why the form's run or its trajectory could not start, or how the trajectory failed.
    pub error: Option<AppError>,
}

impl Tuning {
    /// Start `cfg` into `out` on a worker thread.
    pub fn start(&mut self, ctx: &egui::Context, cfg: TuneConfig, out: PathBuf) {
        if self.run.is_some() {
            return;
        }
        self.error = None;
        self.ended = None;
        self.history.clear();
        let (tx, events) = channel();
        let repaint = ctx.clone();
        let (job_cfg, job_out) = (cfg.clone(), out.clone());
        let started = Worker::spawn(
            "fine-tune",
            Box::new(move || repaint.request_repaint()),
            move |progress, cancel| {
                let mut watch = |e: &TuneEvent| {
                    // The panel may be gone; the run goes on.
                    tx.send(e.clone()).ok();
                };
                let load = LoadOptions::default();
                Ok(tune::run_watched(
                    &job_cfg, &load, &job_out, progress, cancel, &mut watch,
                )?)
            },
        );
        match started {
            Ok(worker) => {
                self.run = Some(TuneRun {
                    worker,
                    events,
                    stages: Stages::default(),
                    started: Instant::now(),
                });
                self.last = Some((cfg, out));
            }
            Err(source) => {
                self.error = Some(AppError::Spawn {
                    what: "the fine-tune",
                    source,
                })
            }
        }
    }

    /// Ask the run to stop after its current step.
    pub fn cancel(&self) {
        if let Some(r) = &self.run {
            r.worker.cancel();
        }
    }

    /// Whether the run was asked to stop.
    pub fn is_cancelling(&self) -> bool {
        self.run.as_ref().is_some_and(|r| r.worker.is_cancelled())
    }

    /// Drain the run's and the trajectory's progress; returns the trajectory's folder once it
    /// is finished (to open).
    pub fn logic(&mut self) -> Option<PathBuf> {
        if let Some(run) = &mut self.run {
            self.history.extend(run.events.try_iter());
            for msg in run.worker.poll(Duration::from_millis(5)) {
                run.stages.apply(&msg);
                if let Message::Finished(r) = msg {
                    self.history.extend(run.events.try_iter());
                    self.ended = Some(match r {
                        Ok(report) => TuneEnd::Stopped(report),
                        Err(e) => TuneEnd::Failed(e),
                    });
                }
            }
            if self.ended.is_some() {
                self.run = None;
            }
        }
        self.trajectory_logic()
    }

    fn trajectory_logic(&mut self) -> Option<PathBuf> {
        let t = self.trajectory.as_mut()?;
        let mut done = None;
        for msg in t.worker.poll(Duration::from_millis(5)) {
            t.stages.apply(&msg);
            if let Message::Finished(r) = msg {
                done = Some(r);
            }
        }
        let out = t.out.clone();
        match done? {
            Ok(TrajectoryOutcome::Finished(_)) => {
                self.trajectory = None;
                Some(out)
            }
            Ok(TrajectoryOutcome::Cancelled | TrajectoryOutcome::ShardScored { .. }) => {
                self.trajectory = None;
                None
            }
            Err(e) => {
                self.trajectory = None;
                self.error = Some(e);
                None
            }
        }
    }

    /// The checkpoints the last run left, when it has stopped.
    pub fn checkpoints(&self) -> usize {
        match &self.ended {
            Some(TuneEnd::Stopped(report)) => report.checkpoints.len(),
            _ => 0,
        }
    }

    /// Start the trajectory of the last run's checkpoints, from the model it started from, on
    /// its dataset, with `study`'s question settings (the study form's: as `circuitdiff
    /// trajectory RUN --first MODEL --dataset DATASET` does), into the folder beside the run's.
    pub fn start_trajectory(&mut self, ctx: &egui::Context, study: StudyConfig) {
        if self.trajectory.is_some() || self.checkpoints() == 0 {
            return;
        }
        let Some((tune, run)) = &self.last else {
            return;
        };
        let out = trajectory_dir(run);
        let made = trajectory_config(tune, run, study).and_then(|cfg| {
            let repaint = ctx.clone();
            let job_out = out.clone();
            Worker::spawn(
                "trajectory",
                Box::new(move || repaint.request_repaint()),
                move |progress, cancel| {
                    let load = LoadOptions::default();
                    Ok(run_trajectory(&cfg, &load, &job_out, progress, cancel)?)
                },
            )
            .map_err(|source| AppError::Spawn {
                what: "the trajectory",
                source,
            })
        });
        match made {
            Ok(worker) => {
                self.error = None;
                self.trajectory = Some(TrajectoryRun {
                    worker,
                    stages: Stages::default(),
                    out,
                });
            }
            Err(e) => self.error = Some(e),
        }
    }

    /// The run's line: its step, the time so far and the time left.
    pub fn status_line(&self) -> Option<String> {
        let run = self.run.as_ref()?;
        let elapsed = clock(run.started.elapsed());
        Some(match run.stages.stages.last() {
            Some(s) if s.name == "fine-tune" => {
                let eta = s.eta().map_or_else(|| "–".to_owned(), clock);
                format!(
                    "fine-tune: step {} / {} · elapsed {elapsed} · ends in {eta}",
                    s.done, s.total
                )
            }
            _ => format!("fine-tune: loading the model and the questions · {elapsed}"),
        })
    }
}

/// The trajectory folder of the run in `run`: beside it, named after it.
pub fn trajectory_dir(run: &Path) -> PathBuf {
    let name = run
        .file_name()
        .map_or_else(|| "run".into(), |n| n.to_string_lossy().into_owned());
    run.with_file_name(format!("{name}-trajectory"))
}

/// The trajectory of `run`'s checkpoints after `tune`'s model, on `tune`'s dataset, with
/// `study`'s other settings, without exact effects (as `circuitdiff trajectory`).
fn trajectory_config(
    tune: &TuneConfig,
    run: &Path,
    mut cfg: StudyConfig,
) -> Result<TrajectoryConfig, AppError> {
    let found = ladder::discover(&[run.display().to_string()], Some(&tune.model), None, None)?;
    let (first, last) = match (found.rungs.first(), found.rungs.last()) {
        (Some(f), Some(l)) => (f.spec.clone(), l.spec.clone()),
        _ => return Err(AppError::NoCheckpoint { index: 0 }),
    };
    (cfg.base, cfg.tuned) = (first, last);
    cfg.dataset.clone_from(&tune.dataset);
    cfg.exact = ExactConfig {
        samples: SampleCount::Count(0),
        ..ExactConfig::default()
    };
    Ok(TrajectoryConfig {
        checkpoints: found.rungs,
        answers: AnswerSource::Own,
        questions: QuestionSet::Ends,
        train_log: found.log,
        shard: None,
        study: cfg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LoraTarget;

    #[test]
    fn the_default_form_is_the_cli_default_run() {
        let form = TuneForm {
            model: " m ".into(),
            ..TuneForm::default()
        };
        let cfg = form.config().unwrap();
        assert_eq!(cfg, TuneConfig::new("m", "builtin:arith"));
    }

    #[test]
    fn the_form_becomes_the_run_and_bad_settings_get_the_librarys_words() {
        let mut form = TuneForm {
            model: "m".into(),
            method: MethodChoice::Dpo,
            full: true,
            steps: 2,
            seed: 7,
            ..TuneForm::default()
        };
        form.arith.n = 30;
        let cfg = form.config().unwrap();
        assert_eq!(cfg.method, Method::Dpo(DpoSettings::default()));
        assert_eq!((cfg.lora, cfg.steps, cfg.seed), (None, 2, 7));
        assert_eq!(cfg.dataset, "builtin:arith?n=30");
        form.full = false;
        form.lora.targets = vec![LoraTarget::VProj];
        assert_eq!(form.config().unwrap().lora.unwrap().seed, 7);
        form.source = DataSource::File;
        form.file = " /data/q.jsonl ".into();
        assert_eq!(form.config().unwrap().dataset, "/data/q.jsonl");
        form.lora.rank = 0;
        let e = form.config().unwrap_err().to_string();
        assert!(e.contains("LoRA rank 0 adapts nothing"), "{e}");
        form.model.clear();
        let e = form.config().unwrap_err().to_string();
        assert!(e.contains("choose the model to fine-tune"), "{e}");
    }

    #[test]
    fn the_trajectory_goes_beside_the_run() {
        assert_eq!(
            trajectory_dir(Path::new("/r/tunes/grpo")),
            Path::new("/r/tunes/grpo-trajectory")
        );
    }
}
