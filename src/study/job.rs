//! The study, end to end (method.md §4): load questions, let each model answer them, grade,
//! select the both-correct pairs, score each model on its own answers, compare, report.
//!
//! Every unit of work is persisted as it completes (`answers/<side>.jsonl`, the run
//! directories' per-sample files); re-running the same study on the same directory continues
//! where it stopped. Progress goes through [`Progress`]; [`CancelToken`] stops between units.

use super::answers::Answer;
use super::dataset::{self, LoadReport, Question};
use super::dir::{self, Counts, DirError, ModelCounts, StudyConfig, StudyDir};
use super::grade::grade;
use super::prompt::{render, Template};
use super::trajectory_dir::TrajectoryDir;
use crate::attribution::pair::{self, Checkpoint};
use crate::attribution::score::Accumulation;
use crate::attribution::select::{select, Candidate, Selection};
use crate::attribution::{Graph, Level};
use crate::lock::DirLock;
use crate::model::{LoadOptions, Model};
use crate::progress::{CancelToken, Progress};
use crate::report::comparison::{self, Comparison};
use crate::report::edge_change::{self, EdgeChanges};
use crate::report::render as draw;
use crate::report::run::{self, Method, Outcome, Run, ScoreSample, StudyRecord};
use crate::report::span::ScoredSpan;
use crate::report::validation::{self, SampleCheck, Validation};
use crate::side::{PerSide, Side};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Why a study failed.
#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    #[error(transparent)]
    Dataset(#[from] dataset::DatasetError),
    #[error(transparent)]
    Prompt(#[from] super::prompt::PromptError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Select(#[from] crate::attribution::select::SelectError),
    #[error(transparent)]
    Run(#[from] run::RunError),
    #[error(transparent)]
    Dir(#[from] DirError),
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    #[error(transparent)]
    Render(#[from] crate::report::render::RenderError),
    #[error("{} holds a different study (see its study.json); choose another --out or delete it", dir.display())]
    DifferentStudy { dir: PathBuf },
    #[error("{} holds a different trajectory (see its trajectory.json: other checkpoints or settings); choose another --out or delete it", dir.display())]
    DifferentTrajectory { dir: PathBuf },
    #[error(transparent)]
    Ladder(#[from] super::ladder::LadderError),
    #[error("--offset {offset} skips every question: the dataset holds {loaded} (use an offset below {loaded}): {dataset}")]
    OffsetPastEnd {
        offset: usize,
        loaded: usize,
        dataset: String,
    },
    #[error("--shard {i}/{n}: expected i/n with 0 ≤ i < n")]
    Shard { i: usize, n: usize },
    #[error(transparent)]
    Unpairable(#[from] pair::Unpairable),
    #[error(
        "--stop-id {id} is not a token of these models (ids 0..{vocab}); use an id below {vocab}"
    )]
    StopIdOutsideVocabulary { id: u32, vocab: usize },
    #[error("{spec}: tokenizing question {id}: {message}")]
    Tokenize {
        spec: String,
        id: String,
        message: String,
    },
    #[error("{spec}: generating for questions {first}…: {source}")]
    Generate {
        spec: String,
        first: String,
        source: Box<candle_core::Error>,
    },
    #[error("{}: not a shard (no --shard)", dir.display())]
    NotAShard { dir: PathBuf },
    #[error("{}: holds a {found}, not a {merging} shard; `circuitdiff merge` joins the shards of one {merging} (each written by `circuitdiff {merging} --shard i/n`)", dir.display())]
    ShardOfOtherWorkflow {
        dir: PathBuf,
        found: Workflow,
        merging: Workflow,
    },
    #[error("{}: a shard of a different study", dir.display())]
    ShardOfAnotherStudy { dir: PathBuf },
    #[error("no shard directories given")]
    NoShards,
    #[error("the shards {seen:?} do not cover 0..{n} exactly once")]
    ShardCoverage { seen: Vec<(usize, usize)>, n: usize },
    #[error("question {id} has no {side} answer in any shard: finish that shard first")]
    MissingAnswer { id: String, side: Side },
}

/// The workflows whose shards `merge` joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workflow {
    Study,
    Trajectory,
}

impl Workflow {
    /// `study` or `trajectory`: the command's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Study => "study",
            Self::Trajectory => "trajectory",
        }
    }

    /// The workflow whose configuration `dir` holds, if any.
    fn of(dir: &Path) -> Option<Self> {
        if TrajectoryDir::is_trajectory(dir) {
            Some(Self::Trajectory)
        } else if StudyDir::new(dir).config_path().is_file() {
            Some(Self::Study)
        } else {
            None
        }
    }

    /// Why `dir`, given to merge shards of this workflow, is not one of them.
    pub(super) fn not_a_shard(self, dir: &Path) -> StudyError {
        match Self::of(dir) {
            Some(found) if found != self => StudyError::ShardOfOtherWorkflow {
                dir: dir.to_owned(),
                found,
                merging: self,
            },
            _ => StudyError::NotAShard {
                dir: dir.to_owned(),
            },
        }
    }
}

impl std::fmt::Display for Workflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a study ended.
#[derive(Debug)]
pub enum StudyOutcome {
    Finished(Box<(Comparison, Counts)>),
    /// A shard answered its questions; `merge` continues.
    ShardAnswered {
        answered: usize,
    },
    Cancelled,
}

/// The template a model is prompted with.
pub(super) fn template_for(cfg: &StudyConfig, model: &Model) -> Template {
    cfg.template
        .clone()
        .unwrap_or(if model.tokenizer.chat_template.is_some() {
            Template::ChatTemplate
        } else {
            Template::Plain
        })
}

/// Answers by question id.
pub(super) type AnswerMap = HashMap<String, Answer>;

/// Let `model` answer every question not yet answered in the answers file `file` (which
/// answers `questions` in order); returns all answers by id, `None` when cancelled. Progress is
/// reported as the stage `answer <who>`.
pub(super) fn answer_all(
    cfg: &StudyConfig,
    (file, who): (&Path, &str),
    model: &Model,
    questions: &[Question],
    progress: &mut dyn Progress,
    cancel: &CancelToken,
) -> Result<Option<AnswerMap>, StudyError> {
    let mut read = dir::read_answers(file, questions)?;
    keep_in_vocabulary(file, model, &mut read)?;
    let mut done: AnswerMap = read.into_iter().map(|a| (a.id.clone(), a)).collect();
    let template = template_for(cfg, model);
    let mut gen = cfg.generation.clone();
    gen.stop_strings.extend(template.stop_strings());
    progress.start(&format!("answer {who}"), questions.len() as u64);
    // Questions are answered in fixed chunks of `batch` (by position in the question list), and
    // an incomplete chunk is regenerated whole: the batch a question is answered in never depends
    // on what an interrupted run had already finished.
    let batch = cfg.batch.max(1);
    let mut finished = 0;
    for chunk in questions.chunks(batch) {
        if chunk.iter().any(|q| !done.contains_key(&q.id)) {
            if cancel.is_cancelled() {
                return Ok(None);
            }
            let prompts = chunk
                .iter()
                .map(|q| prompt_of(model, &template, q))
                .collect::<Result<Vec<_>, _>>()?;
            let ids: Vec<Vec<u32>> = prompts.iter().map(|p| p.1.clone()).collect();
            let generated =
                model
                    .generate_batch(&ids, &gen)
                    .map_err(|source| StudyError::Generate {
                        spec: model.spec.clone(),
                        first: chunk[0].id.clone(),
                        source: Box::new(source),
                    })?;
            for ((q, (prompt, prompt_ids)), g) in chunk.iter().zip(prompts).zip(generated) {
                if done.contains_key(&q.id) {
                    continue;
                }
                let a = Answer {
                    id: q.id.clone(),
                    grade: grade(&g.text, &q.reference),
                    prompt,
                    prompt_ids,
                    answer_ids: g.tokens,
                    text: g.text,
                    stop: g.stop,
                };
                dir::append_answer(file, &a)?;
                done.insert(q.id.clone(), a);
            }
        }
        finished += chunk.len();
        progress.set(finished as u64);
    }
    warn_beyond_context(model, &done, progress);
    Ok(Some(done))
}

/// Say how many of `model`'s sequences (prompt and answer) ran past its context length.
fn warn_beyond_context(model: &Model, answers: &AnswerMap, progress: &mut dyn Progress) {
    let context = model.config.max_position_embeddings;
    let beyond = answers
        .values()
        .filter(|a| a.prompt_ids.len() + a.answer_ids.len() > context)
        .count();
    if beyond > 0 {
        progress.note(&format!(
            "warning: {beyond} of {} prompts and answers of {} are longer than its context of \
             {context} tokens (max_position_embeddings); its outputs past that length are \
             unreliable: lower --max-new-tokens or use shorter questions",
            answers.len(),
            model.spec
        ));
    }
}

/// Cut `answers` (read from the answers file `file`) before the first whose token ids fall
/// outside `model`'s vocabulary (a damaged line that still parses), with a warning, so that the
/// questions from there on are answered again.
fn keep_in_vocabulary(
    file: &Path,
    model: &Model,
    answers: &mut Vec<Answer>,
) -> Result<(), StudyError> {
    let vocab = model.config.vocab_size;
    let outside = |a: &Answer| {
        a.prompt_ids
            .iter()
            .chain(&a.answer_ids)
            .copied()
            .find(|&t| t as usize >= vocab)
    };
    let Some((j, t)) = answers
        .iter()
        .enumerate()
        .find_map(|(j, a)| outside(a).map(|t| (j, t)))
    else {
        return Ok(());
    };
    log::warn!(
        "{}: line {}: token id {t} is outside the vocabulary of {} (size {vocab}); answering again from this question on",
        file.display(),
        j + 1,
        model.spec
    );
    answers.truncate(j);
    Ok(dir::write_answers(file, answers.iter())?)
}

/// The prompt of question `q` for `model` and its token ids.
pub(super) fn prompt_of(
    model: &Model,
    template: &Template,
    q: &Question,
) -> Result<(String, Vec<u32>), StudyError> {
    let tok = &model.tokenizer;
    let prompt = render(
        template,
        &q.question,
        tok.chat_template.as_deref(),
        tok.bos_token.as_deref(),
        tok.eos_token.as_deref(),
    )?;
    // A chat template writes its own special tokens.
    let add_special = *template != Template::ChatTemplate;
    let ids = tok
        .encode(&prompt, add_special)
        .map_err(|e| StudyError::Tokenize {
            spec: model.spec.clone(),
            id: q.id.clone(),
            message: e.to_string(),
        })?;
    Ok((prompt, ids))
}

/// Stage 1: claim `dir` for `cfg`, or check that it already holds this study. A study of other
/// settings that failed there is replaced (what it wrote is removed), with a note.
fn claim(cfg: &StudyConfig, dir: &StudyDir, progress: &mut dyn Progress) -> Result<(), StudyError> {
    match dir.read_config()? {
        Some(previous) if previous == *cfg => dir.clear_failure()?,
        Some(_) => {
            let Some(error) = dir.failure() else {
                return Err(StudyError::DifferentStudy {
                    dir: dir.root().to_owned(),
                });
            };
            progress.note(&format!(
                "replacing the failed study of other settings in {} (it stopped with: {error})",
                dir.root().display()
            ));
            dir.clear()?;
            dir.start(cfg)?;
        }
        None => dir.start(cfg)?,
    }
    Ok(dir.create()?)
}

/// Stage 2: the questions of the study (of its shard, for a shard).
pub(super) fn questions(cfg: &StudyConfig) -> Result<(Vec<Question>, LoadReport), StudyError> {
    let spec = dataset::parse_spec(&cfg.dataset)?;
    let (questions, report) = dataset::load(&spec, cfg.offset, cfg.limit)?;
    if questions.is_empty() && cfg.offset > 0 {
        return Err(StudyError::OffsetPastEnd {
            offset: cfg.offset,
            loaded: report.loaded,
            dataset: cfg.dataset.clone(),
        });
    }
    let Some((i, n)) = cfg.shard else {
        return Ok((questions, report));
    };
    if n == 0 || i >= n {
        return Err(StudyError::Shard { i, n });
    }
    let batch = cfg.batch.max(1);
    let mine = questions
        .into_iter()
        .enumerate()
        .filter(|(j, _)| (j / batch) % n == i)
        .map(|(_, q)| q)
        .collect();
    Ok((mine, report))
}

/// Stage 3: refuse a pair whose vocabularies or graphs differ before any long work.
fn check_pair(cfg: &StudyConfig, load: &LoadOptions) -> Result<(), StudyError> {
    let heads = PerSide::try_from_fn(|side| {
        let (config, tokenizer) = crate::model::load_without_weights(cfg.model(side), &load.hub)?;
        Ok::<_, StudyError>((config, tokenizer.vocabulary()))
    })?;
    let checkpoint = |side: Side| Checkpoint {
        name: format!("{} {}", side.name(), cfg.model(side)),
        config: &heads[side].0,
        vocabulary: &heads[side].1,
    };
    pair::check(&checkpoint(Side::Base), &checkpoint(Side::Tuned), cfg.level)?;
    let vocab = heads.base.0.vocab_size.min(heads.tuned.0.vocab_size);
    if let Some(&id) = cfg
        .generation
        .stop_ids
        .iter()
        .find(|&&id| id as usize >= vocab)
    {
        return Err(StudyError::StopIdOutsideVocabulary { id, vocab });
    }
    Ok(())
}

/// Stage 4: both models answer every question (one, when they are the same: `same`); `None`
/// when cancelled.
fn answer(
    (cfg, load, same): (&StudyConfig, &LoadOptions, bool),
    dir: &StudyDir,
    questions: &[Question],
    progress: &mut dyn Progress,
    cancel: &CancelToken,
) -> Result<Option<PerSide<AnswerMap>>, StudyError> {
    let mut answers = PerSide::<AnswerMap>::default();
    for &side in sides(same) {
        let model = Model::load(cfg.model(side), load)?;
        let file = dir.answers_path(side);
        match answer_all(
            cfg,
            (&file, side.name()),
            &model,
            questions,
            progress,
            cancel,
        )? {
            Some(a) => answers[side] = a,
            None => return Ok(None),
        }
    }
    if same {
        answers.tuned = answers.base.clone();
        dir.write_answers(Side::Tuned, questions.iter().map(|q| &answers.base[&q.id]))?;
    }
    Ok(Some(answers))
}

/// Whether base and tuned are the same model (the same fingerprint): it then answers, is
/// scored and is checked once, and its results serve both sides.
fn same_model(cfg: &StudyConfig, load: &LoadOptions) -> Result<bool, StudyError> {
    if cfg.base == cfg.tuned {
        return Ok(true);
    }
    let fingerprint = |side| crate::model::fingerprint_of(cfg.model(side), &load.hub);
    Ok(fingerprint(Side::Base)? == fingerprint(Side::Tuned)?)
}

/// The sides that do the work: the base alone when the two are the same model.
fn sides(same: bool) -> &'static [Side] {
    if same {
        &[Side::Base]
    } else {
        &Side::BOTH
    }
}

/// Stage 5: grade-based candidates, the per-model counts, and the selection of method.md §4;
/// `counts.json` is written even when nothing can be selected.
fn choose(
    cfg: &StudyConfig,
    dir: &StudyDir,
    questions: &[Question],
    report: LoadReport,
    answers: &PerSide<AnswerMap>,
) -> Result<(Selection, Counts), StudyError> {
    let candidates: Vec<Candidate> = questions
        .iter()
        .map(|q| {
            let (b, t) = (&answers.base[&q.id], &answers.tuned[&q.id]);
            Candidate {
                base_prompt_len: b.prompt_ids.len(),
                tuned_prompt_len: t.prompt_ids.len(),
                base_answer_len: b.answer_ids.len(),
                tuned_answer_len: t.answer_ids.len(),
                base_correct: b.grade.correct && !b.answer_ids.is_empty(),
                tuned_correct: t.grade.correct && !t.answer_ids.is_empty(),
            }
        })
        .collect();
    // Over the asked questions; an empty answer is never counted as correct.
    let models = answers.as_ref().map(|side, a| ModelCounts {
        answered: questions
            .iter()
            .filter(|q| !a[&q.id].answer_ids.is_empty())
            .count(),
        correct: candidates
            .iter()
            .filter(|c| match side {
                Side::Base => c.base_correct,
                Side::Tuned => c.tuned_correct,
            })
            .count(),
    });
    let mut counts = Counts {
        asked: questions.len(),
        dataset: report,
        models,
        ..Counts::default()
    };
    dir.write_rows(questions, answers.as_ref().map(|_, a| a))?;
    let selection = match select(&candidates, &cfg.select) {
        Ok(s) => s,
        Err(e) => {
            dir.write_counts(&counts)?;
            return Err(e.into());
        }
    };
    counts.both_correct = selection.counts.both_correct;
    counts.filters = selection.counts.clone();
    counts.after_filters = selection.counts.after_length_difference;
    counts.t_bar = selection.t_bar;
    counts.k = selection.k;
    Ok((selection, counts))
}

/// Stage 6: score each model on its own answers of the selected questions into its run
/// directory; `None` when cancelled.
#[allow(clippy::too_many_arguments)]
fn score(
    (cfg, load, same): (&StudyConfig, &LoadOptions, bool),
    dir: &StudyDir,
    questions: &[Question],
    answers: &PerSide<AnswerMap>,
    selection: &Selection,
    progress: &mut dyn Progress,
    cancel: &CancelToken,
) -> Result<Option<PerSide<Run>>, StudyError> {
    let mut runs = PerSide::<Option<Run>>::default();
    for &side in sides(same).iter().rev() {
        let samples = score_samples(side, questions, answers, selection);
        // A model whose scoring pass would not fit is refused before it is read.
        let plan = run::score_plan(&samples, selection.k, cfg.level == Level::Head);
        let opts = LoadOptions {
            plan: Some(plan),
            ..load.clone()
        };
        let model = Model::load(cfg.model(side), &opts)?;
        let record = StudyRecord {
            dataset: cfg.dataset.clone(),
            k: selection.k,
            limit: cfg.limit,
            offset: cfg.offset,
            select: cfg.select.clone(),
            t_bar: selection.t_bar,
            template: template_for(cfg, &model).name(),
        };
        let graph = Graph::new(&model.config, cfg.level);
        let method = Method::new(
            cfg.level,
            selection.k,
            Accumulation::for_compute(model.dtype()),
            cfg.metrics.clone(),
        );
        let manifest = run::manifest_for(&model, graph, method, &samples, Some(record));
        let task = format!("score {side}");
        let run_dir = dir.run_dir(side);
        match run::score_run(
            &task, &run_dir, &model, &manifest, &samples, progress, cancel,
        )? {
            Outcome::Finished(r) => runs[side] = Some(*r),
            Outcome::Cancelled { .. } => return Ok(None),
        }
    }
    if let (true, Some(base)) = (same, &runs.base) {
        let mut manifest = base.manifest.clone();
        manifest.model.spec.clone_from(&cfg.tuned);
        runs.tuned = Some(run::write_run(
            &dir.run_dir(Side::Tuned),
            &manifest,
            base.scores.clone(),
        )?);
    }
    Ok(match runs {
        PerSide {
            base: Some(base),
            tuned: Some(tuned),
        } => Some(PerSide { base, tuned }),
        _ => None,
    })
}

/// The samples `side` is scored on: its own answers to the selected questions.
fn score_samples(
    side: Side,
    questions: &[Question],
    answers: &PerSide<AnswerMap>,
    selection: &Selection,
) -> Vec<ScoreSample> {
    selection
        .indices
        .iter()
        .map(|&i| {
            let a = &answers[side][&questions[i].id];
            ScoreSample {
                id: Some(a.id.clone()),
                prompt_ids: a.prompt_ids.clone(),
                answer_ids: a.answer_ids.clone(),
            }
        })
        .collect()
}

/// Stage 7 (method.md §7): exact effects and faithfulness curves of a seeded subset of the
/// pairs, for both models on the same questions and edges (the union of their top edges and a
/// shared random sample), written into each run's `exact/`; empty checks when the study asks
/// for none or is head-level, `None` when cancelled.
#[allow(clippy::too_many_arguments)]
fn check(
    (cfg, load, same): (&StudyConfig, &LoadOptions, bool),
    questions: &[Question],
    answers: &PerSide<AnswerMap>,
    selection: &Selection,
    runs: &PerSide<Run>,
    progress: &mut dyn Progress,
    cancel: &CancelToken,
) -> Result<Option<PerSide<Vec<SampleCheck>>>, StudyError> {
    let chosen = cfg.exact.chosen(runs.base.scores.len());
    let mut checks = PerSide::<Vec<SampleCheck>>::default();
    if chosen.is_empty() || cfg.level == Level::Head {
        if cfg.level == Level::Head {
            progress.note("exact effects are computed on block-level studies: skipped (no --heads to check EAP)");
        }
        return Ok(Some(checks));
    }
    for &side in sides(same) {
        let other = match side {
            Side::Base => &runs.tuned,
            Side::Tuned => &runs.base,
        };
        let samples = score_samples(side, questions, answers, selection);
        let plan = run::score_plan(&samples, selection.k, false);
        let opts = LoadOptions {
            plan: Some(plan),
            ..load.clone()
        };
        let model = Model::load(cfg.model(side), &opts)?;
        let task = format!("exact effects {side}");
        let done = validation::check_run(
            &task,
            &model,
            &runs[side],
            Some(other),
            &samples,
            &chosen,
            &cfg.exact.options,
            progress,
            cancel,
        )?;
        match done {
            Some(c) => checks[side] = c,
            None => return Ok(None),
        }
    }
    if same {
        checks.tuned = checks.base.clone();
        for c in &checks.tuned {
            let [from, to] =
                [&runs.base, &runs.tuned].map(|r| validation::sample_path(&r.dir, c.index));
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).map_err(|source| DirError::Io {
                    path: parent.to_owned(),
                    source,
                })?;
            }
            std::fs::copy(&from, &to).map_err(|source| DirError::Io {
                path: to.clone(),
                source,
            })?;
        }
    }
    Ok(Some(checks))
}

/// Stage 8: compare the runs and write the comparison, counts, figures and report.
fn report(
    cfg: &StudyConfig,
    dir: &StudyDir,
    (questions, answers, selection): (&[Question], &PerSide<AnswerMap>, &Selection),
    (runs, checks): (&PerSide<Run>, &PerSide<Vec<SampleCheck>>),
    counts: &mut Counts,
) -> Result<Comparison, StudyError> {
    counts.scored = runs.base.scores.len();
    let mut cmp = comparison::compare(&runs.base, &runs.tuned, &cfg.compare)?;
    if let Some(span) = &mut cmp.span {
        span.min_k = cfg.min_k_warning;
    }
    if !checks.base.is_empty() {
        cmp.validation = Some(Validation::of(
            checks.as_ref().map(|_, c| c.as_slice()),
            cfg.exact.options,
            &cfg.metrics,
            &cfg.compare,
        ));
    }
    comparison::write(dir.root(), &cmp)?;
    let edges = EdgeChanges::of_runs(&runs.base, &runs.tuned, &cfg.compare, edge_change::TOP)?;
    dir.write_edge_changes(&edges)?;
    dir.write_counts(counts)?;
    let figures_dir = dir.figures_dir();
    let mut figures =
        draw::write_comparison_figures(&runs.base, &runs.tuned, &cfg.compare, &figures_dir)?;
    if let Some(v) = &cmp.validation {
        figures.extend(draw::write_validation_figures(v, &figures_dir)?);
    }
    let lengths: Vec<(usize, usize, usize)> = selection
        .indices
        .iter()
        .map(|&i| {
            let id = &questions[i].id;
            let (b, t) = (&answers.base[id], &answers.tuned[id]);
            (b.prompt_ids.len(), b.answer_ids.len(), t.answer_ids.len())
        })
        .collect();
    for (h, stem) in crate::report::figures::length_histograms(&lengths)
        .iter()
        .zip(["lengths", "length_difference"])
    {
        let figure = draw::Figure::Histogram(h);
        draw::write(figure, &figures_dir, stem, draw::Scale::default())?;
        figures.push((h.title.clone(), stem.to_owned()));
    }
    let report = super::report_md::render(cfg, counts, (&cmp, &edges), &figures);
    dir.write_report(&report)?;
    Ok(cmp)
}

/// Run (or resume) a study into `out`: each stage reads what the previous ones left in the
/// study directory.
pub fn run_study(
    cfg: &StudyConfig,
    load: &LoadOptions,
    out: &Path,
    progress: &mut dyn Progress,
    cancel: &CancelToken,
) -> Result<StudyOutcome, StudyError> {
    let load = &cfg.load_options(load);
    let dir = StudyDir::new(out);
    let (opened, _lock) = open_and_claim(cfg, load, &dir, progress)?;
    run_marked(cfg, load, &dir, opened, progress, cancel)
}

/// The questions of a study and whether its two sides are one model.
type Opened = ((Vec<Question>, LoadReport), bool);

/// Open the questions and both tokenizers (nothing is written until they are), then lock the
/// study directory for this process and claim it for `cfg`.
fn open_and_claim(
    cfg: &StudyConfig,
    load: &LoadOptions,
    dir: &StudyDir,
    progress: &mut dyn Progress,
) -> Result<(Opened, DirLock), StudyError> {
    let questions = questions(cfg)?;
    check_pair(cfg, load)?;
    let same = same_model(cfg, load)?;
    let lock = DirLock::acquire(dir.root())?;
    claim(cfg, dir, progress)?;
    Ok(((questions, same), lock))
}

/// [`run_claimed`], recording its error in the directory so that a retry of other settings
/// may take it.
fn run_marked(
    cfg: &StudyConfig,
    load: &LoadOptions,
    dir: &StudyDir,
    (questions, same): Opened,
    progress: &mut dyn Progress,
    cancel: &CancelToken,
) -> Result<StudyOutcome, StudyError> {
    let done = run_claimed(cfg, (load, same), dir, questions, progress, cancel);
    if let Err(e) = &done {
        if let Err(marking) = dir.mark_failed(&e.to_string()) {
            log::warn!("{marking}");
        }
    }
    done
}

/// The stages of a study after its directory is claimed: answer, select, score, check, report.
fn run_claimed(
    cfg: &StudyConfig,
    (load, same): (&LoadOptions, bool),
    dir: &StudyDir,
    (questions, report_): (Vec<Question>, LoadReport),
    progress: &mut dyn Progress,
    cancel: &CancelToken,
) -> Result<StudyOutcome, StudyError> {
    if same {
        progress.note("base and tuned are the same model (one fingerprint): it answers and is scored once, for both sides");
    }
    let work = (cfg, load, same);
    let Some(answers) = answer(work, dir, &questions, progress, cancel)? else {
        return Ok(StudyOutcome::Cancelled);
    };
    if cfg.shard.is_some() {
        return Ok(StudyOutcome::ShardAnswered {
            answered: questions.len(),
        });
    }
    let (selection, mut counts) = choose(cfg, dir, &questions, report_, &answers)?;
    // Said before the scoring, which takes long, as well as in the report.
    let span = ScoredSpan::chosen(
        selection.k,
        selection.t_bar,
        &cfg.select,
        selection.indices.len(),
        cfg.min_k_warning,
    );
    if let Some(w) = span.warning() {
        progress.note(&format!("warning: {w}"));
    }
    let scored = score(
        work, dir, &questions, &answers, &selection, progress, cancel,
    )?;
    let Some(runs) = scored else {
        return Ok(StudyOutcome::Cancelled);
    };
    let inputs = (&questions[..], &answers, &selection);
    let Some(checks) = check(
        work, &questions, &answers, &selection, &runs, progress, cancel,
    )?
    else {
        return Ok(StudyOutcome::Cancelled);
    };
    let cmp = report(cfg, dir, inputs, (&runs, &checks), &mut counts)?;
    Ok(StudyOutcome::Finished(Box::new((cmp, counts))))
}

/// Keep the first shard's configuration (its shard cleared) in `config`; refuse a shard of
/// another configuration.
pub(super) fn same_config<C: PartialEq>(
    config: &mut Option<C>,
    cfg: C,
    shard: &Path,
) -> Result<(), StudyError> {
    match config {
        None => *config = Some(cfg),
        Some(c) if *c != cfg => {
            return Err(StudyError::ShardOfAnotherStudy {
                dir: shard.to_owned(),
            })
        }
        Some(_) => {}
    }
    Ok(())
}

/// Refuse shards `(i, n)` that do not cover 0..n exactly once (repeats of a shard are allowed).
pub(super) fn check_coverage(mut seen: Vec<(usize, usize)>) -> Result<(), StudyError> {
    seen.sort_unstable();
    seen.dedup();
    let n = seen.first().map_or(0, |s| s.1);
    if seen.len() != n || seen.iter().enumerate().any(|(j, &(i, m))| i != j || m != n) {
        return Err(StudyError::ShardCoverage { seen, n });
    }
    Ok(())
}

/// Join the answers of shard directories (`study --shard i/n`) into `out` and finish the study
/// there. The shards must be of one study and cover every i of 0..n.
pub fn merge_shards(
    shards: &[PathBuf],
    load: &LoadOptions,
    out: &Path,
    progress: &mut dyn Progress,
    cancel: &CancelToken,
) -> Result<StudyOutcome, StudyError> {
    let mut config: Option<StudyConfig> = None;
    let mut seen = Vec::new();
    let mut merged = PerSide::<AnswerMap>::default();
    for shard in shards {
        let dir = StudyDir::new(shard);
        let not_a_shard = || Workflow::Study.not_a_shard(shard);
        let mut cfg = dir.read_config()?.ok_or_else(not_a_shard)?;
        // The shard's own questions, which its answer files answer in order.
        let (mine, _) = questions(&cfg)?;
        let (i, n) = cfg.shard.take().ok_or_else(not_a_shard)?;
        same_config(&mut config, cfg, shard)?;
        seen.push((i, n));
        for side in Side::BOTH {
            for a in dir.read_answers(side, &mine)? {
                merged[side].insert(a.id.clone(), a);
            }
        }
    }
    let cfg = config.ok_or(StudyError::NoShards)?;
    check_coverage(seen)?;
    let load = &cfg.load_options(load);
    let dir = StudyDir::new(out);
    let (opened, _lock) = open_and_claim(&cfg, load, &dir, progress)?;
    let ((questions, _), _) = &opened;
    for side in Side::BOTH {
        let answers = questions
            .iter()
            .map(|q| {
                merged[side]
                    .get(&q.id)
                    .ok_or_else(|| StudyError::MissingAnswer {
                        id: q.id.clone(),
                        side,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        dir.write_answers(side, answers)?;
    }
    run_marked(&cfg, load, &dir, opened, progress, cancel)
}
