//! What a study records of answers brought from elsewhere: the files they come from
//! (`study.json`), what importing them found (`counts.json`), and why they were refused.

use super::answer_format::{AnswerFormat, LineError};
use crate::side::Side;
use serde::{Deserialize, Serialize};
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
    /// `found` and `expected`: the side, the model and its fingerprint, in words.
    #[error("{}: answers of another model: the study they come from scored {found} ({}), not {expected}; bring the answers this model gave", path.display(), manifest.display())]
    OtherStudyModel {
        path: PathBuf,
        manifest: PathBuf,
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
