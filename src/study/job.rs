//! The study, end to end (method.md §4): load questions, let each model answer them, grade,
//! select the both-correct pairs, score each model on its own answers, compare, report.
//!
//! Every unit of work is persisted as it completes (`answers/<side>.jsonl`, the run
//! directories' per-sample files); re-running the same study on the same directory continues
//! where it stopped. Progress goes through [`Progress`]; [`CancelToken`] stops between units.

use super::dataset::{LoadReport, Question};
use super::dir::{Counts, DirError, Discordant, ModelCounts, StudyConfig, StudyDir};
pub use super::error::{StudyError, Workflow};
use super::imported::{self, ImportSummary};
use super::stage::{self, answer_all, check_coverage, questions, same_config, AnswerMap};
use super::stage_times::{Stage, StageTimes};
use crate::attribution::pair::{self, Checkpoint};
use crate::attribution::select::{select, Candidate, Selection};
use crate::attribution::Level;
use crate::engine::check::check_run;
use crate::engine::score::Outcome;
use crate::lock::DirLock;
use crate::model::{LoadOptions, Model};
use crate::progress::{CancelToken, Progress};
use crate::report::comparison::{self, Comparison};
use crate::report::edge_change::{self, EdgeChanges};
use crate::report::render as draw;
use crate::report::run::{self, Run, RunDir};
use crate::report::span::ScoredSpan;
use crate::report::validation::{SampleCheck, Validation};
use crate::side::{PerSide, Side};
use std::path::{Path, PathBuf};

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

/// Stage 4: both models answer every question (one, when they are the same: `same`), or their
/// answers are brought from elsewhere (then written to their answers files, and what importing
/// found goes to `imported`); `None` when cancelled.
fn answer(
    (cfg, load, same): (&StudyConfig, &LoadOptions, bool),
    dir: &StudyDir,
    questions: &[Question],
    (progress, imported): (&mut dyn Progress, &mut Vec<ImportSummary>),
    cancel: &CancelToken,
) -> Result<Option<PerSide<AnswerMap>>, StudyError> {
    let mut answers = PerSide::<AnswerMap>::default();
    for &side in sides(same) {
        let brought = cfg.answers.as_ref();
        if let Some((files, path)) = brought.and_then(|f| f.file(side).map(|p| (f, p))) {
            let (a, summary) = imported::import((cfg, files, path), side, load, questions)?;
            progress.note(&summary.describe());
            dir.write_answers(side, questions.iter().map(|q| &a[&q.id]))?;
            answers[side] = a;
            imported.push(summary);
            continue;
        }
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

/// Whether base and tuned are the same model (the same fingerprint) answering for itself: it
/// then answers, is scored and is checked once, and its results serve both sides. Two sides
/// of brought answers are never one.
fn same_model(cfg: &StudyConfig, load: &LoadOptions) -> Result<bool, StudyError> {
    if cfg.answers.is_some() {
        return Ok(false);
    }
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
    (report, imported): (LoadReport, Vec<ImportSummary>),
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
    let only = |base: bool| {
        candidates
            .iter()
            .filter(|c| c.base_correct == base && c.tuned_correct != base)
            .count()
    };
    let mut counts = Counts {
        asked: questions.len(),
        dataset: report,
        models,
        imported,
        discordant: Some(Discordant {
            only_base: only(true),
            only_tuned: only(false),
        }),
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
    let spec = stage::run_spec(cfg, selection);
    for &side in sides(same).iter().rev() {
        let samples = stage::samples(questions, &answers[side], selection);
        // A model whose scoring pass would not fit is refused before it is read.
        let opts = LoadOptions {
            plan: Some(spec.plan(&samples)),
            ..load.clone()
        };
        let model = Model::load(cfg.model(side), &opts)?;
        let record = stage::record(cfg, selection, &model);
        let task = format!("score {side}");
        let run_dir = dir.run_dir(side);
        match spec.score(
            &task,
            &run_dir,
            &model,
            (&samples, Some(record)),
            progress,
            cancel,
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
        let samples = stage::samples(questions, &answers[side], selection);
        let opts = LoadOptions {
            plan: Some(stage::run_spec(cfg, selection).plan(&samples)),
            ..load.clone()
        };
        let model = Model::load(cfg.model(side), &opts)?;
        let task = format!("exact effects {side}");
        let done = check_run(
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
                [&runs.base, &runs.tuned].map(|r| RunDir::new(&r.dir).exact_path(c.index));
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
    let mut times = StageTimes::start();
    let mut imported = Vec::new();
    let Some(answers) = answer(work, dir, &questions, (progress, &mut imported), cancel)? else {
        return Ok(StudyOutcome::Cancelled);
    };
    if cfg.shard.is_some() {
        return Ok(StudyOutcome::ShardAnswered {
            answered: questions.len(),
        });
    }
    times.end(Stage::Answer);
    let (selection, mut counts) = choose(cfg, dir, &questions, (report_, imported), &answers)?;
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
    times.end(Stage::Select);
    let scored = score(
        work, dir, &questions, &answers, &selection, progress, cancel,
    )?;
    let Some(runs) = scored else {
        return Ok(StudyOutcome::Cancelled);
    };
    times.end(Stage::Score);
    let inputs = (&questions[..], &answers, &selection);
    let Some(checks) = check(
        work, &questions, &answers, &selection, &runs, progress, cancel,
    )?
    else {
        return Ok(StudyOutcome::Cancelled);
    };
    times.end(Stage::Check);
    let cmp = report(cfg, dir, inputs, (&runs, &checks), &mut counts)?;
    times.end(Stage::Report);
    dir.write_timings(&times)?;
    progress.note(&times.summary());
    Ok(StudyOutcome::Finished(Box::new((cmp, counts))))
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
