//! The study, end to end (method.md §4): load questions, let each model answer them, grade,
//! select the both-correct pairs, score each model on its own answers, compare, report.
//!
//! Every unit of work is persisted as it completes (`answers/<side>.jsonl`, the run
//! directories' per-sample files); re-running the same study on the same directory continues
//! where it stopped. Progress goes through [`Progress`]; [`CancelToken`] stops between units.

use super::answers::{self, Answer};
use super::dataset::{self, LoadReport, Question};
use super::grade::grade;
use super::prompt::{render, Template};
use super::select::{select, Candidate, SelectCounts, SelectOptions, Selection};
use crate::attribution::compare::CompareOptions;
use crate::attribution::metrics::MetricOptions;
use crate::attribution::score::Accumulation;
use crate::attribution::{Graph, Level};
use crate::fsutil::write_atomic;
use crate::model::{GenerateOptions, LoadOptions, Model, ScorePlan};
use crate::progress::{CancelToken, Progress};
use crate::report::comparison::{self, Comparison};
use crate::report::run::{self, Method, Outcome, ScoreSample};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Everything that defines a study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyConfig {
    pub base: String,
    pub tuned: String,
    /// A JSONL path or `builtin:arith[?…]`.
    pub dataset: String,
    pub offset: usize,
    pub limit: Option<usize>,
    /// `None`: the tokenizer's chat template when it has one, else the question alone.
    pub template: Option<Template>,
    pub generation: GenerateOptions,
    pub select: SelectOptions,
    pub level: Level,
    pub metrics: MetricOptions,
    pub compare: CompareOptions,
    /// Questions answered together in one generation batch.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// `(i, n)`: answer only the chunks of `batch` questions whose index is ≡ i (mod n), then
    /// stop; `merge` joins the shards and finishes the study.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<(usize, usize)>,
}

fn default_batch() -> usize {
    8
}

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
    Select(#[from] super::select::SelectError),
    #[error(transparent)]
    Run(#[from] run::RunError),
    #[error("{0}")]
    Other(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StudyError + '_ {
    move |source| StudyError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Per-model counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelCounts {
    pub answered: usize,
    pub correct: usize,
}

/// `counts.json`: every count on the way from questions to scored samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub asked: usize,
    pub dataset: LoadReport,
    pub base: ModelCounts,
    pub tuned: ModelCounts,
    pub both_correct: usize,
    pub filters: SelectCounts,
    pub after_filters: usize,
    pub scored: usize,
    pub t_bar: f64,
    pub k: usize,
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
fn template_for(cfg: &StudyConfig, model: &Model) -> Template {
    cfg.template
        .clone()
        .unwrap_or(if model.tokenizer.chat_template.is_some() {
            Template::ChatTemplate
        } else {
            Template::Plain
        })
}

/// Let `model` answer every question not yet in `path`; returns all answers by id.
fn answer_all(
    cfg: &StudyConfig,
    side: &str,
    model: &Model,
    questions: &[Question],
    path: &Path,
    progress: &mut dyn Progress,
    cancel: &CancelToken,
) -> Result<Option<HashMap<String, Answer>>, StudyError> {
    let mut done: HashMap<String, Answer> = answers::read_and_repair(path)
        .map_err(io(path))?
        .into_iter()
        .map(|a| (a.id.clone(), a))
        .collect();
    let template = template_for(cfg, model);
    let mut gen = cfg.generation.clone();
    gen.stop_strings.extend(template.stop_strings());
    let tok = &model.tokenizer;
    progress.start(&format!("answer {side}"), questions.len() as u64);
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
            let mut prompts = Vec::with_capacity(chunk.len());
            for q in chunk {
                let prompt = render(
                    &template,
                    &q.question,
                    tok.chat_template.as_deref(),
                    tok.bos_token.as_deref(),
                    tok.eos_token.as_deref(),
                )?;
                // A chat template writes its own special tokens.
                let add_special = template != Template::ChatTemplate;
                let ids = tok.encode(&prompt, add_special).map_err(|e| {
                    StudyError::Other(format!("{}: tokenizing question {}: {e}", model.spec, q.id))
                })?;
                prompts.push((prompt, ids));
            }
            let ids: Vec<Vec<u32>> = prompts.iter().map(|p| p.1.clone()).collect();
            let generated = model.generate_batch(&ids, &gen).map_err(|e| {
                StudyError::Other(format!(
                    "{}: generating for questions {}…: {e}",
                    model.spec, chunk[0].id
                ))
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
                answers::append(path, &a).map_err(io(path))?;
                done.insert(q.id.clone(), a);
            }
        }
        finished += chunk.len();
        progress.set(finished as u64);
    }
    Ok(Some(done))
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StudyError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| StudyError::Other(e.to_string()))?;
    write_atomic(path, text.as_bytes()).map_err(io(path))
}

/// `load` with the plan of scoring `samples` at cut `k`: the longest prompt plus K − 1 answer
/// tokens, so that a model whose scoring pass would not fit is refused before it is read.
fn scoring_load(
    load: &LoadOptions,
    samples: &[ScoreSample],
    k: usize,
    level: Level,
) -> LoadOptions {
    let seq_len = samples
        .iter()
        .map(|s| s.prompt_ids.len() + k.min(s.answer_ids.len()).max(1) - 1)
        .max()
        .unwrap_or(1);
    LoadOptions {
        plan: Some(ScorePlan {
            seq_len,
            scored: k,
            heads: level == Level::Head,
        }),
        ..load.clone()
    }
}

/// Run (or resume) a study into `out`.
pub fn run_study(
    cfg: &StudyConfig,
    load: &LoadOptions,
    out: &Path,
    progress: &mut dyn Progress,
    cancel: &CancelToken,
) -> Result<StudyOutcome, StudyError> {
    std::fs::create_dir_all(out.join("answers")).map_err(io(out))?;
    let config_path = out.join("study.json");
    if config_path.is_file() {
        let text = std::fs::read_to_string(&config_path).map_err(io(&config_path))?;
        let previous: Result<StudyConfig, _> = serde_json::from_str(&text);
        if previous.ok().as_ref() != Some(cfg) {
            return Err(StudyError::Other(format!(
                "{} holds a different study (see its study.json); choose another --out or delete it",
                out.display()
            )));
        }
    } else {
        write_json(&config_path, cfg)?;
    }
    let spec = dataset::parse_spec(&cfg.dataset)?;
    let (mut questions, report) = dataset::load(&spec, cfg.offset, cfg.limit)?;
    if let Some((i, n)) = cfg.shard {
        if n == 0 || i >= n {
            return Err(StudyError::Other(format!(
                "--shard {i}/{n}: expected i/n with 0 ≤ i < n"
            )));
        }
        let batch = cfg.batch.max(1);
        questions = questions
            .into_iter()
            .enumerate()
            .filter(|(j, _)| (j / batch) % n == i)
            .map(|(_, q)| q)
            .collect();
    }

    // Refuse a pair whose vocabularies differ before any long work.
    let base_vocab = crate::model::load_tokenizer(&cfg.base, &load.hub)?.vocabulary();
    if crate::model::load_tokenizer(&cfg.tuned, &load.hub)?.vocabulary() != base_vocab {
        return Err(StudyError::Other(format!(
            "{} and {} have different vocabularies; circuits can only be compared between checkpoints of the same tokenizer",
            cfg.base, cfg.tuned
        )));
    }

    let mut answers = Vec::new();
    for (side, spec) in [("base", &cfg.base), ("tuned", &cfg.tuned)] {
        let model = Model::load(spec, load)?;
        let path = out.join("answers").join(format!("{side}.jsonl"));
        match answer_all(cfg, side, &model, &questions, &path, progress, cancel)? {
            Some(a) => answers.push(a),
            None => return Ok(StudyOutcome::Cancelled),
        }
    }
    if cfg.shard.is_some() {
        return Ok(StudyOutcome::ShardAnswered {
            answered: questions.len(),
        });
    }
    let (base_ans, tuned_ans) = (&answers[0], &answers[1]);
    let candidates: Vec<Candidate> = questions
        .iter()
        .map(|q| {
            let (b, t) = (&base_ans[&q.id], &tuned_ans[&q.id]);
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
    let model_counts = |a: &HashMap<String, Answer>, correct: fn(&Candidate) -> bool| ModelCounts {
        answered: questions
            .iter()
            .filter(|q| !a[&q.id].answer_ids.is_empty())
            .count(),
        correct: candidates.iter().filter(|c| correct(c)).count(),
    };
    let mut counts = Counts {
        asked: questions.len(),
        dataset: report,
        base: model_counts(base_ans, |c| c.base_correct),
        tuned: model_counts(tuned_ans, |c| c.tuned_correct),
        ..Counts::default()
    };
    write_merged_answers(out, &questions, base_ans, tuned_ans)?;
    let selection: Selection = match select(&candidates, &cfg.select) {
        Ok(s) => s,
        Err(e) => {
            write_json(&out.join("counts.json"), &counts)?;
            return Err(e.into());
        }
    };
    counts.both_correct = selection.counts.both_correct;
    counts.filters = selection.counts.clone();
    counts.after_filters = selection.counts.after_length_difference;
    counts.t_bar = selection.t_bar;
    counts.k = selection.k;

    let study_info = serde_json::json!({
        "dataset": cfg.dataset, "offset": cfg.offset, "limit": cfg.limit,
        "select": cfg.select, "t_bar": selection.t_bar, "k": selection.k,
    });
    let mut runs = Vec::new();
    for (side, spec, ans) in [
        ("tuned", &cfg.tuned, tuned_ans),
        ("base", &cfg.base, base_ans),
    ] {
        let samples: Vec<ScoreSample> = selection
            .indices
            .iter()
            .map(|&i| {
                let a = &ans[&questions[i].id];
                ScoreSample {
                    id: Some(a.id.clone()),
                    prompt_ids: a.prompt_ids.clone(),
                    answer_ids: a.answer_ids.clone(),
                }
            })
            .collect();
        let model = Model::load(spec, &scoring_load(load, &samples, selection.k, cfg.level))?;
        let mut info = study_info.clone();
        info["template"] = template_for(cfg, &model).name().into();
        let graph = Graph::new(&model.config, cfg.level);
        let method = Method::new(
            cfg.level,
            selection.k,
            Accumulation::for_compute(model.dtype()),
            cfg.metrics.clone(),
        );
        let manifest = run::manifest_for(&model, graph, method, &samples, info);
        match run::score_run(
            &format!("score {side}"),
            &out.join(side),
            &model,
            &manifest,
            &samples,
            progress,
            cancel,
        )? {
            Outcome::Finished(r) => runs.push(*r),
            Outcome::Cancelled { .. } => return Ok(StudyOutcome::Cancelled),
        }
    }
    let (tuned_run, base_run) = (&runs[0], &runs[1]);
    counts.scored = base_run.scores.len();
    let cmp = comparison::compare(base_run, tuned_run, &cfg.compare)?;
    comparison::write(out, &cmp)?;
    write_json(&out.join("counts.json"), &counts)?;
    let figures_dir = out.join("figures");
    let render_err = |e: crate::report::render::RenderError| StudyError::Other(e.to_string());
    let mut figures =
        crate::report::render::write_comparison_figures(base_run, tuned_run, &figures_dir)
            .map_err(render_err)?;
    let lengths: Vec<(usize, usize, usize)> = selection
        .indices
        .iter()
        .map(|&i| {
            let (b, t) = (&base_ans[&questions[i].id], &tuned_ans[&questions[i].id]);
            (b.prompt_ids.len(), b.answer_ids.len(), t.answer_ids.len())
        })
        .collect();
    for (h, name) in crate::report::figures::length_histograms(&lengths)
        .iter()
        .zip(["lengths.png", "length_difference.png"])
    {
        crate::report::render::histogram_png(h, &figures_dir.join(name)).map_err(render_err)?;
        figures.push((h.title.clone(), name.to_owned()));
    }
    let md = super::report_md::render(cfg, &counts, &cmp, &figures);
    write_atomic(&out.join("report.md"), md.as_bytes()).map_err(io(out))?;
    Ok(StudyOutcome::Finished(Box::new((cmp, counts))))
}

/// `answers.jsonl`: one line per question with both models' answers.
fn write_merged_answers(
    out: &Path,
    questions: &[Question],
    base: &HashMap<String, Answer>,
    tuned: &HashMap<String, Answer>,
) -> Result<(), StudyError> {
    let mut text = String::new();
    for q in questions {
        let line = serde_json::json!({
            "id": q.id, "question": q.question, "reference": q.reference,
            "base": base.get(&q.id), "tuned": tuned.get(&q.id),
        });
        text.push_str(&line.to_string());
        text.push('\n');
    }
    let path = out.join("answers.jsonl");
    write_atomic(&path, text.as_bytes()).map_err(io(&path))
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
    let mut merged: [HashMap<String, Answer>; 2] = [HashMap::new(), HashMap::new()];
    for dir in shards {
        let path = dir.join("study.json");
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let mut cfg: StudyConfig = serde_json::from_str(&text).map_err(|e| {
            StudyError::Other(format!(
                "{}: not a study configuration: {e}",
                path.display()
            ))
        })?;
        let Some((i, n)) = cfg.shard.take() else {
            return Err(StudyError::Other(format!(
                "{}: not a shard (no --shard)",
                dir.display()
            )));
        };
        match &config {
            None => config = Some(cfg),
            Some(c) if *c != cfg => {
                return Err(StudyError::Other(format!(
                    "{}: a shard of a different study",
                    dir.display()
                )))
            }
            Some(_) => {}
        }
        seen.push((i, n));
        for (side, map) in ["base", "tuned"].iter().zip(merged.iter_mut()) {
            let p = dir.join("answers").join(format!("{side}.jsonl"));
            for a in answers::read_and_repair(&p).map_err(io(&p))? {
                map.insert(a.id.clone(), a);
            }
        }
    }
    let cfg = config.ok_or_else(|| StudyError::Other("no shard directories given".into()))?;
    seen.sort_unstable();
    seen.dedup();
    let n = seen.first().map_or(0, |s| s.1);
    if seen.len() != n || seen.iter().enumerate().any(|(j, &(i, m))| i != j || m != n) {
        return Err(StudyError::Other(format!(
            "the shards {seen:?} do not cover 0..{n} exactly once"
        )));
    }
    let spec = dataset::parse_spec(&cfg.dataset)?;
    let (questions, _) = dataset::load(&spec, cfg.offset, cfg.limit)?;
    std::fs::create_dir_all(out.join("answers")).map_err(io(out))?;
    for (side, map) in ["base", "tuned"].iter().zip(&merged) {
        let p = out.join("answers").join(format!("{side}.jsonl"));
        let mut text = String::new();
        for q in &questions {
            let a = map.get(&q.id).ok_or_else(|| {
                StudyError::Other(format!(
                    "question {} has no {side} answer in any shard: finish that shard first",
                    q.id
                ))
            })?;
            text.push_str(&serde_json::to_string(a).map_err(|e| StudyError::Other(e.to_string()))?);
            text.push('\n');
        }
        write_atomic(&p, text.as_bytes()).map_err(io(&p))?;
    }
    run_study(&cfg, load, out, progress, cancel)
}
