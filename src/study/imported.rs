//! Answers brought from elsewhere instead of generated (`study --answers`): read in one of the
//! [`AnswerFormat`]s, matched to the study's questions by id or by question text, checked to be
//! the model's own (its fingerprint where the file records one, token ids inside its vocabulary
//! that decode to the answer's text), re-tokenised where the file has text alone, and graded
//! again by circuitdiff's grader with the file's grade kept beside.

use super::answer_format::{AnswerFormat, ForeignAnswer};
use super::answers::Answer;
use super::dataset::Question;
use super::dir::StudyConfig;
use super::error::StudyError;
use super::grade::grade;
pub use super::import_record::{AnswerFiles, ImportError, ImportSummary};
use super::prompt::Template;
use super::stage::{prompt_of, template_for, AnswerMap};
use crate::model::{LoadOptions, StopReason, Tokenizer};
use crate::side::Side;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// The model whose answers are imported: what checking and tokenising them needs.
struct Reader<'a> {
    spec: &'a str,
    tok: Tokenizer,
    vocab: usize,
    fingerprint: String,
    path: &'a Path,
}

/// Import `side`'s answers to `questions` from `path`, its file among the study's `files`.
pub(super) fn import(
    (cfg, files, path): (&StudyConfig, &AnswerFiles, &Path),
    side: Side,
    load: &LoadOptions,
    questions: &[Question],
) -> Result<(AnswerMap, ImportSummary), StudyError> {
    let lines = read_lines(path)?;
    let format = match files.format {
        Some(f) => f,
        None => detect(path, &lines)?,
    };
    if !format.holds_both() && files.base == files.tuned {
        return Err(ImportError::OneModel {
            path: path.to_owned(),
            format,
        }
        .into());
    }
    let spec = cfg.model(side);
    let (config, tok) = crate::model::load_without_weights(spec, &load.hub)?;
    let reader = Reader {
        spec,
        tok,
        vocab: config.vocab_size,
        fingerprint: crate::model::fingerprint_of(spec, &load.hub)?,
        path,
    };
    if format == AnswerFormat::Circuitdiff {
        reader.same_study_model(side)?;
    }
    let template = template_for(cfg, &reader.tok);
    reader.match_all(questions, format, side, &lines, &template)
}

/// The JSON objects of a JSONL file, by line number (from 1), blank lines skipped.
fn read_lines(path: &Path) -> Result<Vec<(usize, Value)>, ImportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ImportError::Io {
        path: path.to_owned(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(j, l)| {
            serde_json::from_str(l)
                .map(|v| (j + 1, v))
                .map_err(|source| ImportError::Json {
                    path: path.to_owned(),
                    line: j + 1,
                    source,
                })
        })
        .collect()
}

/// The format of a file from its first line's fields.
fn detect(path: &Path, lines: &[(usize, Value)]) -> Result<AnswerFormat, ImportError> {
    let first = lines.first().map(|l| &l.1);
    first.and_then(AnswerFormat::detect).ok_or_else(|| {
        let fields = first
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        ImportError::Unknown {
            path: path.to_owned(),
            fields,
        }
    })
}

/// Text without whitespace: tokenizers differ in how they decode spaces around special tokens.
fn squeezed(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

impl Reader<'_> {
    /// Refuse the answers file of a study directory whose run of `side` scored another model.
    fn same_study_model(&self, side: Side) -> Result<(), ImportError> {
        let mut root = self.path.parent().unwrap_or(Path::new("."));
        if root.ends_with("answers") {
            root = root.parent().unwrap_or(root);
        }
        let run = super::dir::StudyDir::new(root).run_dir(side);
        let Ok(Some(manifest)) = crate::report::run::read_manifest(&run) else {
            return Ok(());
        };
        if manifest.model.fingerprint == self.fingerprint {
            return Ok(());
        }
        Err(ImportError::OtherStudyModel {
            path: self.path.to_owned(),
            manifest: crate::report::run::RunDir::new(&run).manifest_path(),
            found: format!(
                "{side} {} (fingerprint {})",
                manifest.model.spec, manifest.model.fingerprint
            ),
            expected: format!("{} (fingerprint {})", self.spec, self.fingerprint),
        })
    }

    fn check_fingerprint(&self, line: usize, found: &str) -> Result<(), ImportError> {
        if found == self.fingerprint {
            return Ok(());
        }
        Err(ImportError::OtherModel {
            path: self.path.to_owned(),
            line,
            spec: self.spec.to_owned(),
            found: found.to_owned(),
            expected: self.fingerprint.clone(),
        })
    }

    /// Refuse ids outside the vocabulary or that do not decode to `text` (`prompt`: the text
    /// ends the decoded ids, which may begin with a BOS; else begins them, which may go on past
    /// a stop string).
    fn check_ids(
        &self,
        line: usize,
        ids: &[u32],
        (text, what): (&str, &'static str),
    ) -> Result<(), ImportError> {
        if let Some(&id) = ids.iter().find(|&&t| t as usize >= self.vocab) {
            return Err(ImportError::OutsideVocabulary {
                path: self.path.to_owned(),
                line,
                id,
                vocab: self.vocab,
                spec: self.spec.to_owned(),
            });
        }
        let decoded = squeezed(&self.tok.decode(ids).map_err(|e| self.tokenize(line, &e))?);
        let text = squeezed(text);
        let fits = match what {
            "prompt" => decoded.ends_with(&text),
            _ => decoded.starts_with(&text),
        };
        if fits {
            return Ok(());
        }
        Err(ImportError::Decode {
            path: self.path.to_owned(),
            line,
            what,
            spec: self.spec.to_owned(),
        })
    }

    fn tokenize(&self, line: usize, e: &dyn std::fmt::Display) -> ImportError {
        ImportError::Tokenize {
            path: self.path.to_owned(),
            line,
            spec: self.spec.to_owned(),
            message: e.to_string(),
        }
    }
}

/// The questions of a study by id and by text.
struct Index<'q> {
    by_id: HashMap<&'q str, usize>,
    by_text: HashMap<&'q str, usize>,
}

impl<'q> Index<'q> {
    fn new(questions: &'q [Question]) -> Self {
        let by_id = questions
            .iter()
            .enumerate()
            .map(|(j, q)| (q.id.as_str(), j))
            .collect();
        let by_text = questions
            .iter()
            .enumerate()
            .map(|(j, q)| (q.question.trim(), j))
            .collect();
        Self { by_id, by_text }
    }

    /// The question an answer answers: by id, else by question text.
    fn find(&self, a: &ForeignAnswer) -> Option<usize> {
        let by_id = a.id.as_deref().and_then(|id| self.by_id.get(id));
        let by_text = || {
            a.question
                .as_deref()
                .and_then(|t| self.by_text.get(t.trim()))
        };
        by_id.or_else(by_text).copied()
    }
}

impl Reader<'_> {
    /// Read every line, match it to its question and make it an answer; questions left
    /// unanswered get an empty answer (never counted as answered or correct).
    fn match_all(
        &self,
        questions: &[Question],
        format: AnswerFormat,
        side: Side,
        lines: &[(usize, Value)],
        template: &Template,
    ) -> Result<(AnswerMap, ImportSummary), StudyError> {
        let index = Index::new(questions);
        let mut summary = ImportSummary {
            side,
            file: self.path.to_owned(),
            format,
            imported: 0,
            given_ids: 0,
            retokenised: 0,
            template: None,
            given_graded: 0,
            disagreements: 0,
            missing: Vec::new(),
            unmatched: 0,
        };
        let mut answers = AnswerMap::new();
        for (line, value) in lines {
            let read = format
                .read(value, side)
                .map_err(|source| ImportError::Line {
                    path: self.path.to_owned(),
                    line: *line,
                    format,
                    source,
                })?;
            let Some(foreign) = read else { continue };
            let Some(j) = index.find(&foreign) else {
                summary.unmatched += 1;
                continue;
            };
            let q = &questions[j];
            if answers.contains_key(&q.id) {
                return Err(ImportError::Repeated {
                    path: self.path.to_owned(),
                    line: *line,
                    id: q.id.clone(),
                }
                .into());
            }
            let a = self.answer(*line, q, foreign, (template, &mut summary))?;
            answers.insert(q.id.clone(), a);
        }
        let missing: Vec<&Question> = questions
            .iter()
            .filter(|q| !answers.contains_key(&q.id))
            .collect();
        for q in missing {
            summary.missing.push(q.id.clone());
            let (prompt, prompt_ids) = prompt_of((&self.tok, self.spec), template, q)?;
            let a = Answer {
                id: q.id.clone(),
                prompt,
                prompt_ids,
                answer_ids: Vec::new(),
                text: String::new(),
                stop: StopReason::MaxTokens,
                grade: grade("", &q.reference),
                given_correct: None,
            };
            answers.insert(q.id.clone(), a);
        }
        Ok((answers, summary))
    }

    /// The answer `foreign` (of line `line`) to `q`: its prompt and answer ids checked or made,
    /// graded here with the file's grade kept beside.
    fn answer(
        &self,
        line: usize,
        q: &Question,
        foreign: ForeignAnswer,
        (template, summary): (&Template, &mut ImportSummary),
    ) -> Result<Answer, StudyError> {
        if let Some(found) = &foreign.fingerprint {
            self.check_fingerprint(line, found)?;
        }
        let (prompt, prompt_ids) = match (foreign.prompt, foreign.prompt_ids) {
            (prompt, Some(ids)) => {
                let text = match prompt {
                    Some(p) => p,
                    None => self.tok.decode(&ids).map_err(|e| self.tokenize(line, &e))?,
                };
                self.check_ids(line, &ids, (&text, "prompt"))?;
                (text, ids)
            }
            (Some(p), None) => {
                // A prompt that does not begin with the BOS token is given it, as generation
                // here gives it to a plain prompt.
                let bos = self.tok.bos_token.as_deref();
                let add = bos.is_some_and(|b| !p.starts_with(b));
                let ids = self
                    .tok
                    .encode(&p, add)
                    .map_err(|e| self.tokenize(line, &e))?;
                (p, ids)
            }
            (None, None) => {
                summary.template = Some(template.name());
                prompt_of((&self.tok, self.spec), template, q)?
            }
        };
        let answer_ids = match foreign.answer_ids {
            Some(ids) => {
                self.check_ids(line, &ids, (&foreign.text, "answer"))?;
                summary.given_ids += 1;
                ids
            }
            None => {
                summary.retokenised += 1;
                let text = &foreign.text;
                self.tok
                    .encode(text, false)
                    .map_err(|e| self.tokenize(line, &e))?
            }
        };
        let graded = grade(&foreign.text, &q.reference);
        if let Some(given) = foreign.given_correct {
            summary.given_graded += 1;
            summary.disagreements += usize::from(given != graded.correct);
        }
        summary.imported += 1;
        Ok(Answer {
            id: q.id.clone(),
            prompt,
            prompt_ids,
            answer_ids,
            text: foreign.text,
            stop: foreign.native.map_or(StopReason::EndOfSequence, |a| a.stop),
            grade: graded,
            given_correct: foreign.given_correct,
        })
    }
}
