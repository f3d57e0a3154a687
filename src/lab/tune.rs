//! `lab tune`: fine-tune any checkpoint the tool loads (a Hugging Face folder, a `.gguf` file, a
//! Hub id, a LoRA adapter) with GRPO or DPO, the whole model or LoRA updates, the reward being
//! the study's grader on a dataset. Writes a TRL-layout output folder ([`super::tune_out`]) that
//! `trajectory` reads, and resumes after any interruption with identical results: every step
//! draws from its own generator seeded by the run's seed and the step, and a checkpoint holds
//! the trained weights in f32 and the optimiser's moments.

use super::optim::Optimizer;
use super::task::prompt_ids;
use super::tune_out::{self, TrainerState};
use super::{dpo, eval, grpo, pairs, peft, LabError, Result};
use crate::model::{
    load_without_weights, write_hf_folder, Checkpoint, HubOptions, LoadOptions, LoraPair,
    LoraSettings, LoraTarget, Model, ModelConfig, Tokenizer,
};
use crate::progress::{CancelToken, Progress};
use crate::study::dataset::{self, Question};
use candle_core::{Tensor, Var};
use rand::seq::IndexedRandom as _;
use rand::SeedableRng as _;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// GRPO's settings: a group of sampled answers per question, TRL's group-normalised
/// advantages, the clipped ratio objective and a KL penalty (weight `beta`) to the reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrpoSettings {
    /// Questions per step.
    pub questions: usize,
    /// Answers sampled per question (generated in one batch).
    pub group: usize,
    pub temperature: f64,
    /// Clip range ε of the probability ratio.
    pub clip: f64,
    /// KL weight β.
    pub beta: f64,
    /// Dr. GRPO's length-unbiased loss instead of the per-answer mean.
    pub length_unbiased: bool,
    /// Rows per forward and backward pass, their gradients accumulated into one update
    /// (`None`: all of a step's rows in one pass). Bounds the memory a step needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub micro_batch: Option<usize>,
}

impl Default for GrpoSettings {
    /// `lab tune`'s defaults: 4 questions per step, groups of 8 sampled at temperature 1,
    /// clip range 0.2, KL weight 0.04, the per-answer mean loss.
    fn default() -> Self {
        Self {
            questions: 4,
            group: 8,
            temperature: 1.0,
            clip: 0.2,
            beta: 0.04,
            length_unbiased: false,
            micro_batch: None,
        }
    }
}

/// DPO's settings: pairs from the model's own graded samples (a correct answer over an
/// incorrect one to the same question), or from a JSON Lines file of
/// `prompt`/`chosen`/`rejected`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DpoSettings {
    /// The inverse temperature β.
    pub beta: f64,
    /// Pairs per step.
    pub batch: usize,
    /// Answers sampled per question to find pairs.
    pub samples: usize,
    pub temperature: f64,
    pub pairs: Option<PathBuf>,
}

impl Default for DpoSettings {
    /// `lab tune`'s defaults: β 0.1, 4 pairs per step, found among 4 own answers per question
    /// sampled at temperature 1.
    fn default() -> Self {
        Self {
            beta: 0.1,
            batch: 4,
            samples: 4,
            temperature: 1.0,
            pairs: None,
        }
    }
}

/// The fine-tuning algorithm and its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Method {
    Grpo(GrpoSettings),
    Dpo(DpoSettings),
}

/// Every setting of a fine-tuning run (written to `tune.json`; resuming needs the same).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuneConfig {
    /// The model spec to start from.
    pub model: String,
    /// The dataset spec (`builtin:arith…` or a JSON Lines file with answers).
    pub dataset: String,
    pub method: Method,
    /// LoRA updates to train; `None` trains every weight.
    pub lora: Option<LoraSettings>,
    pub steps: usize,
    pub lr: f64,
    pub warmup: usize,
    /// A checkpoint every this many steps (and after the last).
    pub save_every: usize,
    pub max_new_tokens: usize,
    /// The first this many questions of the dataset are held out for the accuracy logged at
    /// each checkpoint; training draws from the rest, less any question whose text is held out.
    pub eval_questions: usize,
    pub seed: u64,
}

impl TuneConfig {
    /// The LoRA updates `lab tune` trains unless told otherwise: rank 8, α 16, the attention
    /// projections, α/r scaling.
    pub fn default_lora(seed: u64) -> LoraSettings {
        LoraSettings {
            rank: 8,
            alpha: 16.0,
            rslora: false,
            targets: vec![
                LoraTarget::QProj,
                LoraTarget::KProj,
                LoraTarget::VProj,
                LoraTarget::OProj,
            ],
            seed,
        }
    }

    /// `lab tune`'s defaults for fine-tuning `model` on `dataset` (the command line and the
    /// app both start from these): GRPO ([`GrpoSettings::default`]) of [`TuneConfig::default_lora`]
    /// updates, 20 steps at a peak learning rate of 1e-4 without warm-up, a checkpoint every 5,
    /// answers of up to 64 new tokens, 50 questions held out, seed 0.
    pub fn new(model: impl Into<String>, dataset: impl Into<String>) -> Self {
        let seed = 0;
        Self {
            model: model.into(),
            dataset: dataset.into(),
            method: Method::Grpo(GrpoSettings::default()),
            lora: Some(Self::default_lora(seed)),
            steps: 20,
            lr: 1e-4,
            warmup: 0,
            save_every: 5,
            max_new_tokens: 64,
            eval_questions: 50,
            seed,
        }
    }

    /// Refuse settings that cannot train.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(LabError::Config(m.to_owned()));
        if let Some(l) = &self.lora {
            if l.rank == 0 {
                return bad("LoRA rank 0 adapts nothing: give --lora-rank 1 or more");
            }
            if l.targets.is_empty() {
                return bad("no LoRA target modules: give e.g. --lora-targets q_proj,v_proj");
            }
        }
        if self.steps == 0 || self.save_every == 0 {
            return bad("--steps and --save-every must be at least 1");
        }
        match &self.method {
            Method::Grpo(g) if g.group < 2 => {
                bad("a GRPO group needs at least 2 answers per question (--group)")
            }
            Method::Grpo(g) if g.micro_batch == Some(0) => {
                bad("--micro-batch must be at least 1 row")
            }
            Method::Dpo(d) if d.batch == 0 => bad("--batch must be at least 1"),
            _ => Ok(()),
        }
    }

    /// The number of sequences one forward and backward pass of a training step holds.
    fn rows(&self) -> usize {
        match &self.method {
            Method::Grpo(g) => {
                let all = g.questions * g.group;
                g.micro_batch.map_or(all, |m| m.min(all))
            }
            Method::Dpo(d) => 2 * d.batch,
        }
    }
}

/// What a finished (or stopped) run reports.
#[derive(Debug, Clone)]
pub struct TuneReport {
    /// Steps done.
    pub steps: usize,
    /// The checkpoints written, by step.
    pub checkpoints: Vec<PathBuf>,
    /// Held-out accuracy at the last checkpoint.
    pub accuracy: Option<f64>,
}

/// What a step measured, as a caller watching the run sees it (the row of `log_history` the
/// step wrote).
#[derive(Debug, Clone, PartialEq)]
pub struct TuneEvent {
    /// Steps done.
    pub step: usize,
    /// Steps the run makes in all.
    pub steps: usize,
    pub loss: Option<f64>,
    /// The KL divergence to the reference.
    pub kl: Option<f64>,
    /// GRPO: the mean reward of the step's answers.
    pub reward: Option<f64>,
    /// DPO: the mean reward margin of the chosen over the rejected answers.
    pub margin: Option<f64>,
    /// Held-out accuracy, at the steps that write a checkpoint.
    pub accuracy: Option<f64>,
    /// The step's wall time in seconds (sampling, scoring, the backward passes and the update;
    /// not the held-out evaluation or the checkpoint); `None` for a step an earlier run made.
    pub seconds: Option<f64>,
}

impl TuneEvent {
    /// The event of a `log_history` row of a run of `steps` steps (`None` without a step).
    fn of_row(row: &tune_out::LogRow, steps: usize) -> Option<Self> {
        let value = |key: &str| row.get(key).and_then(serde_json::Value::as_f64);
        let step = row.get("step")?.as_u64()?;
        Some(Self {
            step: usize::try_from(step).ok()?,
            steps,
            loss: value("loss"),
            kl: value("kl"),
            reward: value("reward"),
            margin: value("rewards/margins"),
            accuracy: value("accuracy"),
            seconds: None,
        })
    }
}

/// The weights being trained.
enum Params {
    Full(Vec<(String, Var)>),
    Lora(LoraSettings, Vec<(String, LoraPair)>),
}

/// The model being trained and how its checkpoints are written.
struct Trainee {
    model: Model,
    params: Params,
    /// The base model's spec written into adapters.
    base: String,
}

impl Trainee {
    fn vars(&self) -> Vec<Var> {
        match &self.params {
            Params::Full(p) => p.iter().map(|(_, v)| v.clone()).collect(),
            Params::Lora(_, p) => p
                .iter()
                .flat_map(|(_, l)| [l.a.clone(), l.b.clone()])
                .collect(),
        }
    }

    /// Write the trained weights into `dir`: a PEFT adapter, or a Hugging Face folder.
    fn save(&self, dir: &Path) -> Result<()> {
        match &self.params {
            Params::Lora(settings, pairs) => peft::write_adapter(dir, settings, &self.base, pairs),
            Params::Full(vars) => {
                let tensors: HashMap<String, Tensor> = vars
                    .iter()
                    .map(|(n, v)| (n.clone(), v.as_tensor().detach()))
                    .collect();
                Ok(write_hf_folder(
                    dir,
                    &self.model.config,
                    &tensors,
                    &tokenizer_json(&self.model)?,
                    self.model.tokenizer.chat_template.as_deref(),
                )?)
            }
        }
    }

    /// Set the trained weights to those [`Trainee::save`] wrote into `dir`.
    fn restore(&self, dir: &Path) -> Result<()> {
        match &self.params {
            Params::Lora(_, pairs) => peft::read_adapter(dir, pairs),
            Params::Full(vars) => {
                let path = dir.join(crate::model::WEIGHTS_FILE);
                let tensors = candle_core::safetensors::load(&path, self.model.device())?;
                for (name, v) in vars {
                    let t = tensors.get(name).ok_or_else(|| LabError::NotThisRun {
                        path: path.clone(),
                        message: format!("no tensor `{name}`"),
                    })?;
                    v.set(&t.to_dtype(v.dtype())?)?;
                }
                Ok(())
            }
        }
    }
}

/// The model's `tokenizer.json`, as the tokenizer it loaded with serialises.
fn tokenizer_json(model: &Model) -> Result<serde_json::Value> {
    let text = model
        .tokenizer
        .inner()
        .to_string(false)
        .map_err(|e| LabError::Tokenize {
            text: crate::model::TOKENIZER_FILE.into(),
            message: e.to_string(),
        })?;
    serde_json::from_str(&text)
        .map_err(|e| LabError::json(Path::new(crate::model::TOKENIZER_FILE), e))
}

/// About how many bytes training needs: the weights of the policy and the frozen reference,
/// and for full fine-tuning also their gradients and AdamW's two moments, plus one step's
/// activations (a forward graph kept for the backward pass) for rows of `row_tokens` tokens.
fn training_bytes(cfg: &ModelConfig, tune: &TuneConfig, row_tokens: usize) -> (u64, String) {
    let weights = cfg.num_params() as u64 * 4;
    let copies: u64 = if tune.lora.is_some() { 2 } else { 5 };
    let (d, i, l, v) = (
        cfg.hidden_size as u64,
        cfg.intermediate_size as u64,
        cfg.num_layers as u64,
        cfg.vocab_size as u64,
    );
    let tokens = (tune.rows() * row_tokens) as u64;
    let activations = tokens * (l * (16 * d + 6 * i) + 3 * v) * 4;
    let what = format!(
        "{copies} copies of {:.2} GiB of weights and {:.2} GiB of activations for {} sequences",
        weights as f64 / (1u64 << 30) as f64,
        activations as f64 / (1u64 << 30) as f64,
        tune.rows()
    );
    (weights * copies + activations, what)
}

/// The most tokens one training row can hold: a pair from the pairs file (its prompt and the
/// longer answer), or the longest prompt of `questions` and the whole new-token budget.
fn longest_row(tune: &TuneConfig, tokenizer: &Tokenizer, questions: &[Question]) -> Result<usize> {
    if let Method::Dpo(DpoSettings {
        pairs: Some(file), ..
    }) = &tune.method
    {
        let pairs = pairs::read_pairs(file, tokenizer)?;
        return Ok(pairs
            .iter()
            .map(|p| p.prompt.len() + p.chosen.len().max(p.rejected.len()))
            .max()
            .unwrap_or(0));
    }
    let mut prompt = 0;
    for q in questions {
        prompt = prompt.max(prompt_ids(tokenizer, &q.question)?.len());
    }
    Ok(prompt + tune.max_new_tokens)
}

/// Refuse a model whose training would not fit in the memory available.
fn check_memory(tune: &TuneConfig, hub: &HubOptions, questions: &[Question]) -> Result<()> {
    let (cfg, tokenizer) = load_without_weights(&tune.model, hub)?;
    let (needed, what) = training_bytes(&cfg, tune, longest_row(tune, &tokenizer, questions)?);
    let Some(available) = crate::model::available_memory(&candle_core::Device::Cpu) else {
        return Ok(());
    };
    if needed > available {
        let fix = if tune.lora.is_some() {
            "give --micro-batch ROWS (fewer rows per pass), or use fewer questions per step, a smaller group or batch, or fewer new tokens"
        } else {
            "train LoRA updates instead (--lora-rank 8), or use fewer sequences per step"
        };
        return Err(LabError::TooLarge {
            spec: tune.model.clone(),
            needed,
            available,
            what,
            fix: fix.into(),
        });
    }
    Ok(())
}

/// The base spec an adapter of `model` names: the folder's absolute path or the Hub id; for a
/// `.gguf` file or an adapter (which PEFT cannot load as a base) the merged weights written as
/// a Hugging Face folder into `out/base`.
fn adapter_base(model: &str, checkpoint: &Checkpoint, out: &Path) -> Result<String> {
    match checkpoint {
        Checkpoint::Folder { .. } if Path::new(model).is_dir() => {
            let dir =
                std::fs::canonicalize(model).map_err(|e| LabError::io(Path::new(model), e))?;
            Ok(dir.display().to_string())
        }
        Checkpoint::Folder { .. } => Ok(model.to_owned()),
        Checkpoint::Gguf { .. } | Checkpoint::Adapter { .. } => {
            let base = out.join("base");
            if !base.join(crate::model::WEIGHTS_FILE).is_file() {
                let mut m = Model::load(model, &LoadOptions::default())?;
                let vars = m.trainable()?;
                let tensors: HashMap<String, Tensor> = vars
                    .iter()
                    .map(|(n, v)| (n.clone(), v.as_tensor().detach()))
                    .collect();
                let tok = tokenizer_json(&m)?;
                write_hf_folder(
                    &base,
                    &m.config,
                    &tensors,
                    &tok,
                    m.tokenizer.chat_template.as_deref(),
                )?;
            }
            let dir = std::fs::canonicalize(&base).map_err(|e| LabError::io(&base, e))?;
            Ok(dir.display().to_string())
        }
    }
}

/// Load the model to train and its frozen reference: for LoRA, the same weights without the
/// updates (no second copy); for full fine-tuning, a second copy.
fn load(tune: &TuneConfig, opts: &LoadOptions, out: &Path) -> Result<(Trainee, Model)> {
    let mut model = Model::load(&tune.model, opts)?;
    let base = match &tune.lora {
        Some(_) => adapter_base(&tune.model, &model.checkpoint, out)?,
        None => tune.model.clone(),
    };
    let (params, reference) = match &tune.lora {
        Some(settings) => {
            let pairs = model.attach_lora(settings)?;
            (Params::Lora(settings.clone(), pairs), model.without_lora())
        }
        None => {
            let reference = Model::load(&tune.model, opts)?;
            (Params::Full(model.trainable()?), reference)
        }
    };
    // Loading (dequantising, exporting the base) leaves the heap holding more than the weights.
    crate::runtime::release_freed_memory();
    Ok((
        Trainee {
            model,
            params,
            base,
        },
        reference,
    ))
}

/// The held-out and the training questions of the dataset.
fn questions(tune: &TuneConfig) -> Result<(Vec<Question>, Vec<Question>)> {
    let spec = dataset::parse_spec(&tune.dataset)?;
    let (mut all, _) = dataset::load(&spec, 0, None)?;
    if all.len() <= tune.eval_questions {
        return Err(LabError::Config(format!(
            "{} has {} questions, all of them held out by --eval-questions {}: lower it or give a larger dataset",
            tune.dataset,
            all.len(),
            tune.eval_questions
        )));
    }
    let mut train = all.split_off(tune.eval_questions);
    // Held out means never trained on: a question whose text is also among the held-out ones
    // (a small built-in task repeats questions) is dropped from training.
    let held: std::collections::HashSet<&str> = all.iter().map(|q| q.question.as_str()).collect();
    train.retain(|q| !held.contains(q.question.as_str()));
    if train.is_empty() {
        return Err(LabError::Config(format!(
            "every question of {} after the first {} repeats one of them, so nothing is left to train on without training on the held-out set: give a dataset with more distinct questions or lower --eval-questions",
            tune.dataset, tune.eval_questions
        )));
    }
    Ok((all, train))
}

/// The generator of step `step`: one per step, so a resumed run draws what the uninterrupted
/// one drew.
fn step_rng(seed: u64, step: usize) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(
        seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add((step as u64).wrapping_add(1)),
    )
}

/// Check `out` for an earlier run: its settings must equal `tune`'s; writes them otherwise.
fn claim(out: &Path, tune: &TuneConfig) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| LabError::io(out, e))?;
    let path = out.join(tune_out::CONFIG_FILE);
    if path.is_file() {
        let text = std::fs::read_to_string(&path).map_err(|e| LabError::io(&path, e))?;
        let old: TuneConfig = serde_json::from_str(&text).map_err(|e| LabError::json(&path, e))?;
        if &old != tune {
            return Err(LabError::Config(format!(
                "{} holds a fine-tuning run with other settings ({}): choose another --out, or rerun with the same settings to continue it",
                out.display(),
                path.display()
            )));
        }
        return Ok(());
    }
    crate::fsutil::write_json(&path, tune).map_err(|e| LabError::io(&path, e))
}

/// Fine-tune as `tune` says into `out`, continuing from the last checkpoint there.
pub fn run(
    tune: &TuneConfig,
    opts: &LoadOptions,
    out: &Path,
    progress: &mut dyn Progress,
    cancel: &CancelToken,
) -> Result<TuneReport> {
    run_watched(tune, opts, out, progress, cancel, &mut |_| {})
}

/// [`run`], telling `watch` what each step measured as it ends (after resuming, first what
/// the earlier steps measured).
pub fn run_watched(
    tune: &TuneConfig,
    opts: &LoadOptions,
    out: &Path,
    progress: &mut dyn Progress,
    cancel: &CancelToken,
    watch: &mut dyn FnMut(&TuneEvent),
) -> Result<TuneReport> {
    tune.validate()?;
    let (eval, train) = questions(tune)?;
    check_memory(tune, &opts.hub, &train)?;
    claim(out, tune)?;
    let (trainee, reference) = load(tune, opts, out)?;
    let mut opt = Optimizer::new(trainee.vars(), tune.lr, tune.warmup, tune.steps)?;
    let mut state = TrainerState {
        global_step: 0,
        max_steps: tune.steps,
        save_steps: tune.save_every,
        log_history: Vec::new(),
    };
    if let Some((step, dir)) = tune_out::last_checkpoint(out)? {
        trainee.restore(&dir)?;
        opt.load(&dir.join(tune_out::OPTIMIZER_FILE))?;
        state = TrainerState::read(&dir.join(tune_out::STATE_FILE))?;
        progress.note(&format!("continuing from {} (step {step})", dir.display()));
        for row in &state.log_history {
            if let Some(event) = TuneEvent::of_row(row, tune.steps) {
                watch(&event);
            }
        }
    }
    let pairs = match &tune.method {
        Method::Dpo(d) => Some(dpo_pairs(tune, d, &reference, &train)?),
        Method::Grpo(_) => None,
    };
    let mut cx = Loop {
        tune,
        trainee: &trainee,
        reference: &reference,
        opt: &mut opt,
        state: &mut state,
        out,
        watch,
    };
    cx.train(&train, pairs.as_deref(), &eval, progress, cancel)
}

/// The DPO pairs: from the file, or from the reference's own graded samples.
fn dpo_pairs(
    tune: &TuneConfig,
    settings: &DpoSettings,
    reference: &Model,
    train: &[Question],
) -> Result<Vec<dpo::Pair>> {
    if let Some(file) = &settings.pairs {
        return pairs::read_pairs(file, &reference.tokenizer);
    }
    let cfg = dpo::DpoConfig {
        questions: train.len(),
        samples: settings.samples,
        temperature: settings.temperature,
        epochs: 1,
        batch: settings.batch,
        lr: tune.lr,
        warmup: tune.warmup,
        beta: settings.beta,
        solution_fallback: false,
    };
    let mut rng = step_rng(tune.seed, usize::MAX);
    let found = dpo::build_pairs(reference, train, &cfg, tune.max_new_tokens, &mut rng)?;
    if found.is_empty() {
        return Err(LabError::NoPreferencePairs);
    }
    Ok(found)
}

/// The training loop's state.
struct Loop<'a> {
    tune: &'a TuneConfig,
    trainee: &'a Trainee,
    reference: &'a Model,
    opt: &'a mut Optimizer,
    state: &'a mut TrainerState,
    out: &'a Path,
    watch: &'a mut dyn FnMut(&TuneEvent),
}

impl Loop<'_> {
    fn train(
        &mut self,
        train: &[Question],
        pairs: Option<&[dpo::Pair]>,
        eval: &[Question],
        progress: &mut dyn Progress,
        cancel: &CancelToken,
    ) -> Result<TuneReport> {
        let tune = self.tune;
        let first = self.state.global_step;
        progress.start("fine-tune", tune.steps as u64);
        progress.set(first as u64);
        let mut accuracy = None;
        let mut done = first;
        for step in first..tune.steps {
            if cancel.is_cancelled() {
                break;
            }
            let started = std::time::Instant::now();
            let mut row = self.step(step, train, pairs)?;
            let seconds = started.elapsed().as_secs_f64();
            done = step + 1;
            let save = done.is_multiple_of(tune.save_every) || done == tune.steps;
            if save {
                let acc = eval::accuracy(&self.trainee.model, eval, tune.max_new_tokens)?;
                row.push(("accuracy", acc));
                accuracy = Some(acc);
            }
            self.state.push(done, &row);
            self.state.write(&self.out.join(tune_out::STATE_FILE))?;
            if let Some(event) =
                (self.state.log_history.last()).and_then(|r| TuneEvent::of_row(r, tune.steps))
            {
                (self.watch)(&TuneEvent {
                    seconds: Some(seconds),
                    ..event
                });
            }
            if save {
                self.checkpoint(done)?;
                let line = row
                    .iter()
                    .map(|(k, v)| format!("{k} {v:.4}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                progress.note(&format!("checkpoint-{done}: {line}"));
            }
            progress.set(done as u64);
        }
        Ok(TuneReport {
            steps: done,
            checkpoints: (1..=done)
                .filter(|s| s.is_multiple_of(tune.save_every) || *s == tune.steps)
                .map(|s| tune_out::checkpoint_dir(self.out, s))
                .collect(),
            accuracy,
        })
    }

    /// One step; returns what it measured.
    fn step(
        &mut self,
        step: usize,
        train: &[Question],
        pairs: Option<&[dpo::Pair]>,
    ) -> Result<Vec<(&'static str, f64)>> {
        let tune = self.tune;
        let mut rng = step_rng(tune.seed, step);
        let lr = ("learning_rate", tune.lr * self.opt.schedule(step));
        match (&tune.method, pairs) {
            (Method::Dpo(d), Some(pairs)) => {
                let picks: Vec<&dpo::Pair> = pairs.choose_multiple(&mut rng, d.batch).collect();
                let s = dpo::step(
                    &self.trainee.model,
                    self.reference,
                    &picks,
                    d.beta,
                    self.opt,
                    step,
                )?;
                Ok(vec![
                    ("loss", s.loss),
                    ("kl", s.kl),
                    ("rewards/margins", s.margin),
                    ("rewards/accuracies", s.pair_accuracy),
                    lr,
                ])
            }
            (method, _) => {
                let (cfg, objective) = grpo_settings(tune, method)?;
                let picks: Vec<&Question> =
                    train.choose_multiple(&mut rng, cfg.questions).collect();
                let s = grpo::step(
                    &self.trainee.model,
                    self.reference,
                    &picks,
                    &cfg,
                    objective,
                    self.opt,
                    (step, &mut rng),
                )?;
                Ok(vec![
                    ("loss", s.loss),
                    ("reward", s.reward),
                    ("kl", s.kl),
                    lr,
                ])
            }
        }
    }

    /// Write `checkpoint-<step>` with the weights, the optimiser state and the trainer state.
    fn checkpoint(&self, step: usize) -> Result<()> {
        tune_out::write_checkpoint(self.out, step, self.state, |dir| {
            self.trainee.save(dir)?;
            self.opt.save(&dir.join(tune_out::OPTIMIZER_FILE))
        })?;
        Ok(())
    }
}

/// The GRPO settings of a GRPO run.
fn grpo_settings(
    tune: &TuneConfig,
    method: &Method,
) -> Result<(grpo::GrpoConfig, grpo::Objective)> {
    let Method::Grpo(g) = method else {
        return Err(LabError::Config("DPO without pairs".into()));
    };
    let cfg = grpo::GrpoConfig {
        steps: tune.steps,
        questions: g.questions,
        group: g.group,
        temperature: g.temperature,
        lr: tune.lr,
        warmup: tune.warmup,
        clip: g.clip,
        beta: g.beta,
        epochs: 1,
        micro_batch: g.micro_batch,
    };
    let aggregation = if g.length_unbiased {
        grpo::Aggregation::LengthUnbiased {
            max_new_tokens: tune.max_new_tokens,
        }
    } else {
        grpo::Aggregation::PerAnswer
    };
    let objective = grpo::Objective {
        advantages: grpo::Advantages::Trl,
        aggregation,
        max_new_tokens: tune.max_new_tokens,
    };
    Ok((cfg, objective))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]
    use super::*;

    /// The held-out questions are the dataset's first; a later question with the same text is
    /// not trained on, and a dataset left with nothing else is refused.
    #[test]
    fn held_out_questions_are_never_trained_on() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("q.jsonl");
        let line = |q: u32| {
            format!(
                "{{\"question\": \"What is {q} + 1?\", \"answer\": \"{}\"}}\n",
                q + 1
            )
        };
        let text: String = [0, 1, 2, 3, 1, 7, 3, 8].into_iter().map(line).collect();
        std::fs::write(&file, text).unwrap();
        let mut tune = TuneConfig::new("unused", file.display().to_string());
        tune.eval_questions = 4;
        let (eval, train) = questions(&tune).unwrap();
        let texts = |qs: &[Question]| qs.iter().map(|q| q.question.clone()).collect::<Vec<_>>();
        assert_eq!(texts(&eval).len(), 4);
        assert_eq!(texts(&train), ["What is 7 + 1?", "What is 8 + 1?"]);
        let text: String = [0, 1, 0, 1].into_iter().map(line).collect();
        std::fs::write(&file, text).unwrap();
        tune.eval_questions = 2;
        let e = questions(&tune).unwrap_err().to_string();
        assert!(e.contains("repeats one of them"), "{e}");
    }
}
