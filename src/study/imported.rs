//! Answers brought from elsewhere instead of generated (`study --answers`): read in one of the
//! [`AnswerFormat`]s, matched to the study's questions by id or by question text, checked to be
//! the model's own (its fingerprint where the file records one, token ids inside its vocabulary
//! that decode to the answer's text), re-tokenised where the file has text alone, and graded
//! again by circuitdiff's grader with the file's grade kept beside.

use super::answer_format::{AnswerFormat, ForeignAnswer, LineError};
use super::answers::Answer;
use super::dataset::Question;
use super::dir::StudyConfig;
use super::error::StudyError;
use super::grade::grade;
use super::prompt::Template;
use super::stage::{prompt_of, template_for, AnswerMap};
use crate::model::{LoadOptions, StopReason, Tokenizer};
use crate::side::Side;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The files a study takes its answers from instead of generating them (`study.json`); a side
/// without a file answers itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AnswerFiles {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuned: Option<PathBuf>,
    /// `None`: detected from the first line's fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<AnswerFormat>,
}

impl AnswerFiles {
    /// The answers file of one side, when it is brought.
    pub fn file(&self, side: Side) -> Option<&Path> {
        match side {
            Side::Base => self.base.as_deref(),
            Side::Tuned => self.tuned.as_deref(),
        }
    }
}

/// What importing one side's answers found (`counts.json`, the report, the CLI summary).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportSummary {
    pub side: Side,
    pub file: PathBuf,
    pub format: AnswerFormat,
    /// Answers matched to a question.
    pub imported: usize,
    /// Answers whose token ids came from the file.
    pub given_ids: usize,
    /// Answers whose text was tokenised here.
    pub retokenised: usize,
    /// The template of the prompts rendered here, for answers whose file has no prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Answers the file grades.
    pub given_graded: usize,
    /// Answers whose grade here differs from the file's.
    pub disagreements: usize,
    /// Questions the file does not answer (they count as unanswered).
    pub missing: Vec<String>,
    /// Answers that match no question of the study.
    pub unmatched: usize,
}

impl ImportSummary {
    /// One sentence of what was imported, for the progress notes and the CLI summary.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{}: {} answers imported from {} ({} format; token ids given for {}, text tokenised \
             here for {}",
            self.side,
            self.imported,
            self.file.display(),
            self.format.name(),
            self.given_ids,
            self.retokenised,
        );
        if let Some(t) = &self.template {
            s += &format!("; prompts rendered with the {t} template");
        }
        s += &format!(
            "); circuitdiff's grade differs from the file's on {} of {} graded there",
            self.disagreements, self.given_graded
        );
        if !self.missing.is_empty() {
            let first: Vec<_> = self.missing.iter().take(5).map(String::as_str).collect();
            s += &format!(
                "; {} questions not answered there ({}{}), counted as unanswered",
                self.missing.len(),
                first.join(", "),
                if self.missing.len() > first.len() {
                    ", …"
                } else {
                    ""
                }
            );
        }
        if self.unmatched > 0 {
            s += &format!(
                "; {} answers match no question of the study",
                self.unmatched
            );
        }
        s
    }
}

/// Why answers brought from elsewhere were refused.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: line {line}: not JSON ({source})", path.display())]
    Json {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
    #[error("{}: the answers format is not recognised from the fields {fields:?}; name it with --answers-format ({})", path.display(), AnswerFormat::ALL.map(|f| f.name()).join(", "))]
    Unknown { path: PathBuf, fields: Vec<String> },
    #[error("{}: line {line}: not an answer of the {} format: {source}", path.display(), format.name())]
    Line {
        path: PathBuf,
        line: usize,
        format: AnswerFormat,
        source: LineError,
    },
    #[error("{}: a {} file holds one model's answers; give each model its own with --base-answers and --tuned-answers", path.display(), format.name())]
    OneModel { path: PathBuf, format: AnswerFormat },
    #[error("{}: line {line}: answers of another model (fingerprint {found}), not of {spec} (fingerprint {expected}); bring the answers this model gave", path.display())]
    OtherModel {
        path: PathBuf,
        line: usize,
        spec: String,
        found: String,
        expected: String,
    },
    #[error("{}: line {line}: token id {id} is outside the vocabulary of {spec} (size {vocab}): answers of another model or tokenizer", path.display())]
    OutsideVocabulary {
        path: PathBuf,
        line: usize,
        id: u32,
        vocab: usize,
        spec: String,
    },
    #[error("{}: line {line}: the {what} token ids do not decode to its text with the tokenizer of {spec}: answers of another model or tokenizer", path.display())]
    Decode {
        path: PathBuf,
        line: usize,
        what: &'static str,
        spec: String,
    },
    #[error("{}: line {line}: a second answer to question {id}", path.display())]
    Repeated {
        path: PathBuf,
        line: usize,
        id: String,
    },
    #[error("{}: line {line}: tokenizing with {spec}: {message}", path.display())]
    Tokenize {
        path: PathBuf,
        line: usize,
        spec: String,
        message: String,
    },
}

/// The model whose answers are imported: what checking and tokenising them needs.
struct Reader<'a> {
    spec: &'a str,
    tok: Tokenizer,
    vocab: usize,
    fingerprint: String,
    path: &'a Path,
}

/// Import `side`'s answers to `questions` from its file in `cfg.answers`.
pub(super) fn import(
    cfg: &StudyConfig,
    side: Side,
    load: &LoadOptions,
    questions: &[Question],
) -> Result<(AnswerMap, ImportSummary), StudyError> {
    let files = cfg.answers.as_ref().expect("a study with answer files");
    let path = files.file(side).expect("an answers file of this side");
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
        self.check_fingerprint(0, &manifest.model.fingerprint)
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
