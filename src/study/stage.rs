//! The stage kit: the stages and helpers that the study ([`super::job`]) and the trajectory
//! ([`super::trajectory`]) share: the questions (of a shard), answering them with a model into
//! an answers file, the samples and study record of a scoring run, and joining shards.

use super::answers::Answer;
use super::dataset::{self, LoadReport, Question};
use super::dir::{self, StudyConfig};
use super::error::StudyError;
use super::grade::grade;
use super::prompt::{render, Template};
use crate::attribution::select::Selection;
use crate::engine::spec::RunSpec;
use crate::model::{Model, Tokenizer};
use crate::progress::{CancelToken, Progress};
use crate::report::run::{ScoreSample, StudyRecord};
use std::collections::HashMap;
use std::path::Path;

/// The template a model of tokenizer `tok` is prompted with.
pub(super) fn template_for(cfg: &StudyConfig, tok: &Tokenizer) -> Template {
    cfg.template
        .clone()
        .unwrap_or(if tok.chat_template.is_some() {
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
    let template = template_for(cfg, &model.tokenizer);
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
                .map(|q| prompt_of((&model.tokenizer, &model.spec), &template, q))
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
                    given_correct: None,
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

/// The prompt of question `q` for the model `spec` of tokenizer `tok`, and its token ids.
pub(super) fn prompt_of(
    (tok, spec): (&Tokenizer, &str),
    template: &Template,
    q: &Question,
) -> Result<(String, Vec<u32>), StudyError> {
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
            spec: spec.to_owned(),
            id: q.id.clone(),
            message: e.to_string(),
        })?;
    Ok((prompt, ids))
}

/// The questions of a study or a trajectory (of its shard, for a shard): the study's stage 2.
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

/// The samples a model is scored on: `answers` to the selected questions, in selection order.
pub(super) fn samples(
    questions: &[Question],
    answers: &AnswerMap,
    selection: &Selection,
) -> Vec<ScoreSample> {
    selection
        .indices
        .iter()
        .map(|&i| {
            let a = &answers[&questions[i].id];
            ScoreSample {
                id: Some(a.id.clone()),
                prompt_ids: a.prompt_ids.clone(),
                answer_ids: a.answer_ids.clone(),
            }
        })
        .collect()
}

/// What the manifest of a run scored for a study records: the questions, how they were chosen
/// (`selection`) and the template `model` was prompted with.
pub(super) fn record(cfg: &StudyConfig, selection: &Selection, model: &Model) -> StudyRecord {
    StudyRecord {
        dataset: cfg.dataset.clone(),
        k: selection.k,
        limit: cfg.limit,
        offset: cfg.offset,
        select: cfg.select.clone(),
        t_bar: selection.t_bar,
        template: template_for(cfg, &model.tokenizer).name(),
    }
}

/// The scoring run of a study's selection: its level, K and metrics.
pub(super) fn run_spec(cfg: &StudyConfig, selection: &Selection) -> RunSpec {
    RunSpec::new(cfg.level, selection.k, cfg.metrics.clone())
}
