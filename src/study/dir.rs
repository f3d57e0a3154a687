//! The study directory: the one owner of its layout and of the files only a study writes.
//!
//! ```text
//! study.json            StudyConfig: what defines the study (a re-run must match it)
//! answers/<side>.jsonl  Answer per line, appended as each completes
//! answers.jsonl         AnswerRow per question: both models' answers side by side
//! counts.json           Counts from questions to scored samples
//! <side>/               the run directory of each model (report::run)
//! comparison.json/.csv  the paired comparison (report::comparison)
//! most_changed_edges.csv  the edges whose importance changed most (report::edge_change)
//! figures/              PNG figures
//! report.md             the human-readable report
//! failed.txt            the error a failed study stopped with (until it is retried)
//! ```

use super::answers::{self, Answer};
use super::dataset::{LoadReport, Question};
use super::prompt::Template;
use crate::attribution::compare::CompareOptions;
use crate::attribution::metrics::MetricOptions;
use crate::attribution::select::{SelectCounts, SelectOptions};
use crate::attribution::Level;
use crate::fsutil::write_atomic;
use crate::model::GenerateOptions;
use crate::report::comparison;
use crate::report::validation::ExactConfig;
use crate::side::{PerSide, Side};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Everything that defines a study (`study.json`).
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
    /// Exact edge effects and faithfulness curves of a seeded subset of the pairs (method.md
    /// §7).
    #[serde(default)]
    pub exact: ExactConfig,
    /// The base model of every checkpoint that is a LoRA adapter, instead of the one its
    /// adapter_config.json names (`--adapter-base`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter_base: Option<String>,
    /// The report warns when K is below this (method.md §8); left out of `study.json` at its
    /// default.
    #[serde(
        default = "default_min_k_warning",
        skip_serializing_if = "is_default_min_k_warning"
    )]
    pub min_k_warning: usize,
    /// Answers brought from elsewhere instead of generated (`--answers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers: Option<super::import_record::AnswerFiles>,
}

fn default_batch() -> usize {
    StudyConfig::DEFAULT_BATCH
}

fn default_min_k_warning() -> usize {
    crate::report::span::DEFAULT_MIN_K
}

fn is_default_min_k_warning(k: &usize) -> bool {
    *k == crate::report::span::DEFAULT_MIN_K
}

impl StudyConfig {
    /// The dataset of a study by default: the built-in arithmetic task.
    pub const DEFAULT_DATASET: &'static str = "builtin:arith";
    /// The most tokens an answer may have by default.
    pub const DEFAULT_MAX_NEW_TOKENS: usize = 512;
    /// Questions answered together by default.
    pub const DEFAULT_BATCH: usize = 8;

    /// The study of `base` → `tuned` with the command line's defaults: the built-in
    /// arithmetic task from its first question, the tokenizer's template, greedy answers of
    /// at most [`Self::DEFAULT_MAX_NEW_TOKENS`] tokens, the default selection, comparison,
    /// metrics and exact check, a block-level graph, batches of [`Self::DEFAULT_BATCH`], no
    /// shard, each adapter on the base it names, and the default K warning.
    pub fn new(base: impl Into<String>, tuned: impl Into<String>) -> Self {
        Self {
            base: base.into(),
            tuned: tuned.into(),
            dataset: Self::DEFAULT_DATASET.to_owned(),
            offset: 0,
            limit: None,
            template: None,
            generation: GenerateOptions {
                max_new_tokens: Self::DEFAULT_MAX_NEW_TOKENS,
                ..GenerateOptions::default()
            },
            select: SelectOptions::default(),
            level: Level::Block,
            metrics: MetricOptions::default(),
            compare: CompareOptions::default(),
            batch: Self::DEFAULT_BATCH,
            shard: None,
            exact: ExactConfig::default(),
            adapter_base: None,
            min_k_warning: crate::report::span::DEFAULT_MIN_K,
            answers: None,
        }
    }

    /// `load` with the study's adapter base, when it records one.
    pub fn load_options(&self, load: &crate::model::LoadOptions) -> crate::model::LoadOptions {
        let mut load = load.clone();
        if self.adapter_base.is_some() {
            load.hub.adapter_base.clone_from(&self.adapter_base);
        }
        load
    }

    /// The model spec of one side.
    pub fn model(&self, side: Side) -> &str {
        match side {
            Side::Base => &self.base,
            Side::Tuned => &self.tuned,
        }
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
    #[serde(flatten)]
    pub models: PerSide<ModelCounts>,
    pub both_correct: usize,
    pub filters: SelectCounts,
    pub after_filters: usize,
    pub scored: usize,
    pub t_bar: f64,
    pub k: usize,
    /// What importing each side's answers brought from elsewhere found.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub imported: Vec<super::import_record::ImportSummary>,
    /// The asked questions exactly one model got right (`None` in a study written before it
    /// was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discordant: Option<Discordant>,
}

/// The questions on which the two models' grades differ: what McNemar's test of the change in
/// accuracy counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discordant {
    /// Right by the base model only.
    pub only_base: usize,
    /// Right by the tuned model only.
    pub only_tuned: usize,
}

impl Discordant {
    /// The exact two-sided McNemar p-value of the change in accuracy.
    pub fn p_value(self) -> f64 {
        crate::attribution::compare::mcnemar_exact(self.only_base, self.only_tuned)
    }

    /// `McNemar exact p = 0.0018 (12 right by the tuned model only, 2 by the base only)`.
    pub fn words(self) -> String {
        format!(
            "McNemar exact p = {} ({} right by the tuned model only, {} by the base only)",
            crate::report::table::Cell::P(self.p_value()).text(),
            self.only_tuned,
            self.only_base
        )
    }
}

/// A line of `answers.jsonl`: one question with both models' answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerRow {
    pub id: String,
    pub question: String,
    pub reference: String,
    pub base: Option<Answer>,
    pub tuned: Option<Answer>,
}

impl AnswerRow {
    pub fn answer(&self, side: Side) -> Option<&Answer> {
        match side {
            Side::Base => self.base.as_ref(),
            Side::Tuned => self.tuned.as_ref(),
        }
    }
}

/// A file of the study directory that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} holds other files ({first}, …) and no study.json: a study writes into a new or empty directory; choose another --out", path.display())]
    NotEmpty { path: PathBuf, first: String },
    #[error("{path}: not valid JSON of this file's kind ({source}); was it written by another version, or damaged? Move it away to start over")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// The file that makes a folder a study directory, written first.
const CONFIG: &str = "study.json";

/// The file name of the most changed edges, in a study and where the app saves them.
pub const EDGE_CHANGES: &str = "most_changed_edges.csv";

/// A study directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StudyDir {
    root: PathBuf,
}

impl StudyDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether `dir` holds a study's run directories.
    pub fn is_study(dir: &Path) -> bool {
        crate::report::run::RunDir::is_run(&Self::new(dir).run_dir(Side::Base))
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.join(CONFIG)
    }

    pub fn answers_path(&self, side: Side) -> PathBuf {
        self.root.join("answers").join(format!("{side}.jsonl"))
    }

    pub fn rows_path(&self) -> PathBuf {
        self.root.join("answers.jsonl")
    }

    pub fn counts_path(&self) -> PathBuf {
        self.root.join("counts.json")
    }

    /// The run directory of one model.
    pub fn run_dir(&self, side: Side) -> PathBuf {
        self.root.join(side.name())
    }

    /// The most changed edges (`report::edge_change`), as CSV.
    pub fn edge_changes_path(&self) -> PathBuf {
        self.root.join(EDGE_CHANGES)
    }

    /// Write the most changed edges as CSV, every field at full precision.
    pub fn write_edge_changes(
        &self,
        changes: &crate::report::edge_change::EdgeChanges,
    ) -> Result<(), DirError> {
        write_text(&self.edge_changes_path(), &changes.exact_table().csv())
    }

    /// The paired comparison (`report::comparison`), once the study has finished.
    pub fn comparison_path(&self) -> PathBuf {
        comparison::path(&self.root)
    }

    pub fn figures_dir(&self) -> PathBuf {
        self.root.join("figures")
    }

    pub fn report_path(&self) -> PathBuf {
        self.root.join("report.md")
    }

    /// The wall time of each stage in the latest run of the study.
    pub fn timings_path(&self) -> PathBuf {
        self.root.join("timings.json")
    }

    pub fn write_timings(&self, times: &super::stage_times::StageTimes) -> Result<(), DirError> {
        write_json(&self.timings_path(), times)
    }

    /// Where a failed study leaves its error.
    pub fn failed_path(&self) -> PathBuf {
        self.root.join("failed.txt")
    }

    /// Record that the study stopped with `error`: a study of other settings may then replace
    /// it ([`StudyDir::clear`]).
    pub fn mark_failed(&self, error: &str) -> Result<(), DirError> {
        let path = self.failed_path();
        write_atomic(&path, format!("{error}\n").as_bytes()).map_err(io(&path))
    }

    /// The error the study stopped with, when it failed and was not retried since.
    pub fn failure(&self) -> Option<String> {
        std::fs::read_to_string(self.failed_path())
            .ok()
            .map(|e| e.trim_end().to_owned())
    }

    /// Forget a failure (the study is retried).
    pub fn clear_failure(&self) -> Result<(), DirError> {
        let path = self.failed_path();
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path)(e)),
            _ => Ok(()),
        }
    }

    /// Remove every file and folder of the study's layout (nothing else), leaving the
    /// directory as a new study finds it.
    pub fn clear(&self) -> Result<(), DirError> {
        let files = [
            self.config_path(),
            self.rows_path(),
            self.counts_path(),
            self.comparison_path(),
            comparison::csv_path(&self.root),
            self.report_path(),
            self.failed_path(),
        ];
        let folders = [
            self.root.join("answers"),
            self.run_dir(Side::Base),
            self.run_dir(Side::Tuned),
            self.figures_dir(),
        ];
        let missing_ok = |path: &Path, r: std::io::Result<()>| match r {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(path)(e)),
            _ => Ok(()),
        };
        for f in &files {
            missing_ok(f, std::fs::remove_file(f))?;
        }
        for d in &folders {
            missing_ok(d, std::fs::remove_dir_all(d))?;
        }
        Ok(())
    }

    /// Create the directory and its `answers/` folder.
    pub fn create(&self) -> Result<(), DirError> {
        let answers = self.root.join("answers");
        std::fs::create_dir_all(&answers).map_err(io(&answers))
    }

    /// The study's configuration, `None` when it has none yet.
    pub fn read_config(&self) -> Result<Option<StudyConfig>, DirError> {
        read_json(&self.config_path())
    }

    /// Make this a study directory of `cfg`: refuse a directory that holds anything but what an
    /// interrupted first write of `study.json` leaves, then write `study.json`.
    pub fn start(&self, cfg: &StudyConfig) -> Result<(), DirError> {
        if let Some(first) =
            crate::fsutil::foreign_entry(&self.root, CONFIG).map_err(io(&self.root))?
        {
            return Err(DirError::NotEmpty {
                path: self.root.clone(),
                first,
            });
        }
        std::fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        write_json(&self.config_path(), cfg)
    }

    /// The finished study's comparison; `None` before it is written.
    pub fn read_comparison(
        &self,
    ) -> Result<Option<crate::report::comparison::Comparison>, DirError> {
        read_json(&self.comparison_path())
    }

    pub fn read_counts(&self) -> Result<Option<Counts>, DirError> {
        read_json(&self.counts_path())
    }

    pub fn write_counts(&self, counts: &Counts) -> Result<(), DirError> {
        write_json(&self.counts_path(), counts)
    }

    /// The complete answers of one side to `questions`, which they answer in order; from the
    /// first line that is not the next question's answer (torn, damaged, or of another
    /// question) the file is cut with a warning, so that those questions are answered again.
    pub fn read_answers(
        &self,
        side: Side,
        questions: &[Question],
    ) -> Result<Vec<Answer>, DirError> {
        read_answers(&self.answers_path(side), questions)
    }

    /// Replace the answers of one side with `answers`, atomically.
    pub fn write_answers<'a>(
        &self,
        side: Side,
        answers: impl IntoIterator<Item = &'a Answer>,
    ) -> Result<(), DirError> {
        write_answers(&self.answers_path(side), answers)
    }

    /// Write `answers.jsonl`: a row per question with each side's answer, keys sorted.
    pub fn write_rows(
        &self,
        questions: &[Question],
        answers: PerSide<&HashMap<String, Answer>>,
    ) -> Result<(), DirError> {
        let path = self.rows_path();
        let mut text = String::new();
        for q in questions {
            let row = AnswerRow {
                id: q.id.clone(),
                question: q.question.clone(),
                reference: q.reference.clone(),
                base: answers.base.get(&q.id).cloned(),
                tuned: answers.tuned.get(&q.id).cloned(),
            };
            // Through a JSON value, whose keys are sorted at every level.
            let value = serde_json::to_value(&row).map_err(json(&path))?;
            text.push_str(&value.to_string());
            text.push('\n');
        }
        write_atomic(&path, text.as_bytes()).map_err(io(&path))
    }

    /// The rows of `answers.jsonl`; empty when the study has none yet.
    pub fn read_rows(&self) -> Result<Vec<AnswerRow>, DirError> {
        let path = self.rows_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&path)(e)),
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(json(&path)))
            .collect()
    }

    /// Write `report.md`.
    pub fn write_report(&self, markdown: &str) -> Result<(), DirError> {
        write_text(&self.report_path(), markdown)
    }
}

/// The complete answers of an answers file to `questions`, which it answers in order (see
/// [`StudyDir::read_answers`]).
pub fn read_answers(path: &Path, questions: &[Question]) -> Result<Vec<Answer>, DirError> {
    let ids: Vec<&str> = questions.iter().map(|q| q.id.as_str()).collect();
    answers::read_and_repair(path, &ids).map_err(io(path))
}

/// Append one answer to an answers file, synced to disk.
pub fn append_answer(path: &Path, answer: &Answer) -> Result<(), DirError> {
    answers::append(path, answer).map_err(io(path))
}

/// Replace the answers of an answers file with `answers`, atomically.
pub fn write_answers<'a>(
    path: &Path,
    answers: impl IntoIterator<Item = &'a Answer>,
) -> Result<(), DirError> {
    let mut bytes = Vec::new();
    for a in answers {
        bytes.extend(answers::line(a).map_err(io(path))?);
    }
    write_atomic(path, &bytes).map_err(io(path))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DirError + '_ {
    move |source| DirError::Io {
        path: path.to_owned(),
        source,
    }
}

fn json(path: &Path) -> impl FnOnce(serde_json::Error) -> DirError + '_ {
    move |source| DirError::Json {
        path: path.to_owned(),
        source,
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, DirError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    serde_json::from_str(&text).map(Some).map_err(json(path))
}

/// Write `value` as pretty JSON, atomically.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), DirError> {
    crate::fsutil::write_json(path, value).map_err(io(path))
}

/// Write `text`, atomically.
pub(crate) fn write_text(path: &Path, text: &str) -> Result<(), DirError> {
    write_atomic(path, text.as_bytes()).map_err(io(path))
}
