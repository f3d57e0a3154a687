//! A trajectory: the study's method along a training run. One fixed question set (by default
//! the questions the first and the last checkpoint both answer correctly) is scored at every
//! checkpoint, each metric is paired against the first checkpoint, and the trainer's log is
//! read beside it.
//!
//! The folder's layout is in [`super::trajectory_dir`].
//!
//! Every answer and every sample's scores are written as they complete, so that a re-run
//! continues where the last one stopped; `--shard i/n` takes the checkpoints numbered i, i+n, …
//! (each shard answers the two ends too, to choose the same questions), and `merge` joins the
//! shards and finishes.

use super::dataset::{LoadReport, Question};
use super::dir::{self, ModelCounts};
use super::error::{StudyError, Workflow};
use super::ladder;
use super::stage::{self, AnswerMap};
use super::trajectory_dir::{Claim, TrajectoryConfig, TrajectoryCounts, TrajectoryDir};
use crate::attribution::pair::{self, Checkpoint};
use crate::attribution::select::{select, Candidate, Selection};
use crate::engine::score::Outcome;
use crate::lock::DirLock;
use crate::model::{LoadOptions, Model};
use crate::progress::{CancelToken, Progress};
use crate::report::render as draw;
use crate::report::run::Run;
use crate::report::train_log::{LogSource, TrainLog};
use crate::report::trajectory::{self as summary, AnswerSource, QuestionSet, Trajectory};
use std::path::{Path, PathBuf};

/// How a trajectory ended.
#[derive(Debug)]
pub enum TrajectoryOutcome {
    Finished(Box<Trajectory>),
    /// A shard scored its checkpoints; `merge` continues.
    ShardScored {
        checkpoints: usize,
    },
    Cancelled,
}

/// Claim `dir` for `cfg`; refuse a folder that holds another trajectory, unless it failed
/// (then it is replaced, with a note).
fn claim(
    dir: &TrajectoryDir,
    cfg: &TrajectoryConfig,
    progress: &mut dyn Progress,
) -> Result<(), StudyError> {
    match dir.claim(cfg)? {
        Claim::Claimed => Ok(()),
        Claim::Replaced { error } => {
            progress.note(&format!(
                "replacing the failed trajectory of other settings in {} (it stopped with: {error})",
                dir.root().display()
            ));
            Ok(())
        }
        Claim::HeldByOther => Err(StudyError::DifferentTrajectory {
            dir: dir.root().to_owned(),
        }),
    }
}

/// Refuse checkpoints whose vocabularies or graphs differ from the first's before any long
/// work.
fn check_ladder(cfg: &TrajectoryConfig, load: &LoadOptions) -> Result<(), StudyError> {
    let head = |r: &ladder::Rung| -> Result<_, StudyError> {
        let (config, tok) = crate::model::load_without_weights(&r.spec, &load.hub)?;
        Ok((
            format!("step {} ({})", r.step, r.spec),
            config,
            tok.vocabulary(),
        ))
    };
    let heads = cfg
        .checkpoints
        .iter()
        .map(head)
        .collect::<Result<Vec<_>, _>>()?;
    let checkpoints: Vec<_> = heads
        .iter()
        .map(|(name, config, vocabulary)| Checkpoint {
            name: name.clone(),
            config,
            vocabulary,
        })
        .collect();
    for other in &checkpoints[1..] {
        pair::check(&checkpoints[0], other, cfg.study.level)?;
    }
    Ok(())
}

/// The two ends answer every question; `None` when cancelled.
fn answer_ends(
    cfg: &TrajectoryConfig,
    load: &LoadOptions,
    dir: &TrajectoryDir,
    questions: &[Question],
    progress: &mut dyn Progress,
    cancel: &CancelToken,
) -> Result<Option<[AnswerMap; 2]>, StudyError> {
    let mut ends = [AnswerMap::new(), AnswerMap::new()];
    for (slot, j) in [0, cfg.last()].into_iter().enumerate() {
        let rung = &cfg.checkpoints[j];
        let model = Model::load(&rung.spec, load)?;
        let who = format!("step {}", rung.step);
        let file = dir.answers_path(j);
        match stage::answer_all(
            &cfg.study,
            (&file, &who),
            &model,
            questions,
            progress,
            cancel,
        )? {
            Some(a) => ends[slot] = a,
            None => return Ok(None),
        }
    }
    Ok(Some(ends))
}

/// The fixed question set: the study's selection (length filters, sample size, K) over the
/// questions the ends answered correctly (or the first alone, for [`QuestionSet::First`]).
fn choose(
    cfg: &TrajectoryConfig,
    questions: &[Question],
    report: LoadReport,
    [first, last]: &[AnswerMap; 2],
) -> Result<(Selection, TrajectoryCounts), StudyError> {
    let later = match cfg.questions {
        QuestionSet::Ends => last,
        QuestionSet::First => first,
    };
    let correct = |a: &super::answers::Answer| a.grade.correct && !a.answer_ids.is_empty();
    let candidates: Vec<Candidate> = questions
        .iter()
        .map(|q| {
            let (b, t) = (&first[&q.id], &later[&q.id]);
            Candidate {
                base_prompt_len: b.prompt_ids.len(),
                tuned_prompt_len: t.prompt_ids.len(),
                base_answer_len: b.answer_ids.len(),
                tuned_answer_len: t.answer_ids.len(),
                base_correct: correct(b),
                tuned_correct: correct(t),
            }
        })
        .collect();
    let counts_of = |a: &AnswerMap| ModelCounts {
        answered: questions
            .iter()
            .filter(|q| !a[&q.id].answer_ids.is_empty())
            .count(),
        correct: questions.iter().filter(|q| correct(&a[&q.id])).count(),
    };
    let selection = select(&candidates, &cfg.study.select)?;
    let counts = TrajectoryCounts {
        asked: questions.len(),
        dataset: report,
        first: counts_of(first),
        last: counts_of(last),
        filters: selection.counts.clone(),
        scored: selection.indices.len(),
        t_bar: selection.t_bar,
        k: selection.k,
    };
    Ok((selection, counts))
}

/// What one checkpoint is scored on, and its answers to the set when it gave them.
struct Scoring<'a> {
    questions: &'a [Question],
    selection: &'a Selection,
    ends: &'a [AnswerMap; 2],
}

impl Scoring<'_> {
    fn selected(&self) -> Vec<Question> {
        self.selection
            .indices
            .iter()
            .map(|&i| self.questions[i].clone())
            .collect()
    }

    /// The share of the set that `answers` answer correctly.
    fn accuracy(&self, answers: &AnswerMap) -> f64 {
        let indices = &self.selection.indices;
        let correct = indices
            .iter()
            .filter(|&&i| {
                answers
                    .get(&self.questions[i].id)
                    .is_some_and(|a| a.grade.correct)
            })
            .count();
        correct as f64 / indices.len().max(1) as f64
    }
}

/// A checkpoint's scored run, and the share of the set it answered correctly when it answered
/// it (always at the ends; between them when scored on its own answers).
type Scored = (Run, Option<f64>);

/// Answer (when scored on its own answers) and score checkpoint `j`; `None` when cancelled.
fn score_checkpoint(
    cfg: &TrajectoryConfig,
    load: &LoadOptions,
    dir: &TrajectoryDir,
    (j, scoring): (usize, &Scoring),
    progress: &mut dyn Progress,
    cancel: &CancelToken,
) -> Result<Option<Scored>, StudyError> {
    let rung = &cfg.checkpoints[j];
    let spec = stage::run_spec(&cfg.study, scoring.selection);
    // Any checkpoint's plan, before it answers: the longest prompt of the set, K clamped to
    // the longest answer it may give.
    let longest_prompt = scoring
        .selection
        .indices
        .iter()
        .map(|&i| scoring.ends[0][&scoring.questions[i].id].prompt_ids.len())
        .max()
        .unwrap_or(1);
    let opts = LoadOptions {
        plan: Some(spec.plan_within(longest_prompt, cfg.study.generation.max_new_tokens)),
        ..load.clone()
    };
    let model = Model::load(&rung.spec, &opts)?;
    let who = format!("step {}", rung.step);
    let answered;
    let own: Option<&AnswerMap> = if j == 0 {
        Some(&scoring.ends[0])
    } else if j == cfg.last() {
        Some(&scoring.ends[1])
    } else if cfg.answers == AnswerSource::Own {
        let file = dir.answers_path(j);
        let set = scoring.selected();
        answered = stage::answer_all(&cfg.study, (&file, &who), &model, &set, progress, cancel)?;
        let Some(a) = &answered else { return Ok(None) };
        Some(a)
    } else {
        None
    };
    let scored_on = match (cfg.answers, own) {
        (AnswerSource::Own, Some(own)) => own,
        _ => &scoring.ends[0],
    };
    let samples = stage::samples(scoring.questions, scored_on, scoring.selection);
    let record = stage::record(&cfg.study, scoring.selection, &model);
    let task = format!("score {who}");
    match spec.score(
        &task,
        &dir.run_dir(j),
        &model,
        (&samples, Some(record)),
        progress,
        cancel,
    )? {
        Outcome::Finished(r) => Ok(Some((*r, own.map(|a| scoring.accuracy(a))))),
        Outcome::Cancelled { .. } => Ok(None),
    }
}

/// Pair every checkpoint with the first, write the trainer's log (read before any checkpoint was
/// scored), the summary, figures and report.
fn finish(
    cfg: &TrajectoryConfig,
    dir: &TrajectoryDir,
    (scored, log): (&[Scored], Option<&TrainLog>),
    counts: &TrajectoryCounts,
) -> Result<Trajectory, StudyError> {
    if let Some(log) = log {
        log.write(&dir.train_log_path())?;
    }
    let mut points = Vec::with_capacity(scored.len());
    for (j, (run, accuracy)) in scored.iter().enumerate() {
        points.push(summary::point(
            (cfg.checkpoints[j].step, &TrajectoryDir::run_rel(j)),
            run,
            &scored[0].0,
            *accuracy,
            log,
            &cfg.study.compare,
        )?);
    }
    let family = summary::adjust_family(&mut points, cfg.study.compare.correction);
    let t = Trajectory {
        n: counts.scored,
        k: counts.k,
        answers: cfg.answers,
        questions: cfg.questions,
        options: cfg.study.compare.clone(),
        points,
        span: Some(crate::report::span::ScoredSpan::chosen(
            counts.k,
            counts.t_bar,
            &cfg.study.select,
            counts.scored,
            cfg.study.min_k_warning,
        )),
        family,
    };
    summary::write(&dir.summary_path(), &dir.summary_csv_path(), &t)?;
    dir::write_json(&dir.counts_path(), counts)?;
    let figures = draw::write_trajectory_figures(&t, log, &dir.figures_dir())?;
    let report = super::report_md::render_trajectory(cfg, counts, &t, &figures);
    dir::write_text(&dir.report_path(), &report)?;
    Ok(t)
}

/// Run (or resume) a trajectory into `out`.
pub fn run_trajectory(
    cfg: &TrajectoryConfig,
    load: &LoadOptions,
    out: &Path,
    progress: &mut dyn Progress,
    cancel: &CancelToken,
) -> Result<TrajectoryOutcome, StudyError> {
    let dir = TrajectoryDir::new(out);
    let (opened, _lock) = open_and_claim(cfg, load, &dir, progress)?;
    let done = run_claimed(cfg, load, &dir, opened, progress, cancel);
    // A retry of other settings may take the folder of a failed trajectory.
    if let Err(e) = &done {
        if let Err(marking) = dir.mark_failed(&e.to_string()) {
            log::warn!("{marking}");
        }
    }
    done
}

/// Check the ladder and open the questions (nothing is written until they are), then lock the
/// folder for this process and claim it for `cfg`.
fn open_and_claim(
    cfg: &TrajectoryConfig,
    load: &LoadOptions,
    dir: &TrajectoryDir,
    progress: &mut dyn Progress,
) -> Result<(Opened, DirLock), StudyError> {
    ladder::check(&cfg.checkpoints)?;
    // A log that cannot be read fails now, not after every checkpoint was scored.
    let log = cfg.train_log.as_ref().map(LogSource::read).transpose()?;
    let (questions, report) = stage::questions(&cfg.study)?;
    check_ladder(cfg, &cfg.study.load_options(load))?;
    let lock = DirLock::acquire(dir.root())?;
    claim(dir, cfg, progress)?;
    Ok(((questions, report, log), lock))
}

/// What a trajectory reads before it writes: the questions, how their file was read, and the
/// trainer's log.
type Opened = (Vec<Question>, LoadReport, Option<TrainLog>);

/// The stages of a trajectory after its folder is claimed: answer the ends, select, score
/// every checkpoint of its shard, summarise.
fn run_claimed(
    cfg: &TrajectoryConfig,
    load: &LoadOptions,
    dir: &TrajectoryDir,
    (questions, report, log): Opened,
    progress: &mut dyn Progress,
    cancel: &CancelToken,
) -> Result<TrajectoryOutcome, StudyError> {
    let load = &cfg.study.load_options(load);
    let Some(ends) = answer_ends(cfg, load, dir, &questions, progress, cancel)? else {
        return Ok(TrajectoryOutcome::Cancelled);
    };
    let (selection, counts) = choose(cfg, &questions, report, &ends)?;
    let scoring = Scoring {
        questions: &questions,
        selection: &selection,
        ends: &ends,
    };
    let mut scored = Vec::new();
    for j in (0..cfg.checkpoints.len()).filter(|&j| cfg.owns(j)) {
        match score_checkpoint(cfg, load, dir, (j, &scoring), progress, cancel)? {
            Some(s) => scored.push(s),
            None => return Ok(TrajectoryOutcome::Cancelled),
        }
    }
    if cfg.shard.is_some() {
        return Ok(TrajectoryOutcome::ShardScored {
            checkpoints: scored.len(),
        });
    }
    let t = finish(cfg, dir, (&scored, log.as_ref()), &counts)?;
    Ok(TrajectoryOutcome::Finished(Box::new(t)))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> dir::DirError {
    let path = path.to_owned();
    move |source| dir::DirError::Io { path, source }
}

/// Copy the file `from` to `to`, written atomically.
fn copy_file(from: &Path, to: &Path) -> Result<(), StudyError> {
    let bytes = std::fs::read(from).map_err(io(from))?;
    Ok(crate::fsutil::write_atomic(to, &bytes).map_err(io(to))?)
}

/// Copy `from` into `to` (files at any depth), each file written atomically.
pub(super) fn copy_tree(from: &Path, to: &Path) -> Result<(), StudyError> {
    std::fs::create_dir_all(to).map_err(io(to))?;
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let path = entry.map_err(io(from))?.path();
        let target = to.join(path.file_name().unwrap_or_default());
        if path.is_dir() {
            copy_tree(&path, &target)?;
        } else {
            copy_file(&path, &target)?;
        }
    }
    Ok(())
}

/// Join trajectory shards (`trajectory --shard i/n`) into `out` and finish there: each
/// checkpoint's answers and run directory come from the shard that owns it, the ends' answers
/// from the first shard.
pub fn merge_trajectory(
    shards: &[PathBuf],
    load: &LoadOptions,
    out: &Path,
    progress: &mut dyn Progress,
    cancel: &CancelToken,
) -> Result<TrajectoryOutcome, StudyError> {
    let mut config: Option<TrajectoryConfig> = None;
    let mut owner: Vec<Option<PathBuf>> = Vec::new();
    let mut seen = Vec::new();
    for shard in shards {
        let not_a_shard = || Workflow::Trajectory.not_a_shard(shard);
        let mut cfg = TrajectoryDir::new(shard)
            .read_config()?
            .ok_or_else(not_a_shard)?;
        let (i, n) = cfg.shard.ok_or_else(not_a_shard)?;
        owner.resize(cfg.checkpoints.len(), None);
        for j in (0..cfg.checkpoints.len()).filter(|&j| cfg.owns(j)) {
            owner[j] = Some(shard.clone());
        }
        cfg.shard = None;
        stage::same_config(&mut config, cfg, shard)?;
        seen.push((i, n));
    }
    let cfg = config.ok_or(StudyError::NoShards)?;
    stage::check_coverage(seen)?;
    let dir = TrajectoryDir::new(out);
    let (opened, _lock) = open_and_claim(&cfg, load, &dir, progress)?;
    let ends_from = TrajectoryDir::new(&shards[0]);
    for (j, from) in owner.iter().enumerate() {
        let Some(from) = from else { continue };
        let from = TrajectoryDir::new(from);
        let answers_from = if j == 0 || j == cfg.last() {
            &ends_from
        } else {
            &from
        };
        let answers = answers_from.answers_path(j);
        if answers.is_file() {
            copy_file(&answers, &dir.answers_path(j))?;
        }
        if from.run_dir(j).is_dir() {
            copy_tree(&from.run_dir(j), &dir.run_dir(j))?;
        }
    }
    run_claimed(&cfg, load, &dir, opened, progress, cancel)
}
