//! Results the app shows, loaded from a study directory, a `compare` output directory or a
//! single run directory, with every figure computed once at load time.

use super::error::AppError;
use crate::attribution::metrics::Metric;
use crate::model::Tokenizer;
use crate::report::circuit::Circuit;
use crate::report::comparison::{self, Comparison};
use crate::report::edge_change::{self, EdgeChanges};
use crate::report::figures::{self, Heatmap, Histogram, LineChart, Scatter};
use crate::report::run::{self, Run};
use crate::report::span::{ScoredSpan, DEFAULT_MIN_K};
use crate::side::{PerSide, Side};
use crate::study::answers::Answer;
use crate::study::dir::{Counts, StudyDir};
use crate::study::kind::Kind;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One model's answer to a question, as the question browser shows it.
#[derive(Debug, Clone)]
pub struct AnswerView {
    pub text: String,
    pub extracted: Option<String>,
    pub correct: bool,
    pub prompt_tokens: usize,
    pub answer_tokens: usize,
    /// The answer tokens the study scored (its first K), when the question was scored.
    pub scored: Option<ScoredTokens>,
}

/// The first answer tokens a sample's loss covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoredTokens {
    /// How many: min(K, answer length).
    pub k: usize,
    /// Their text, when the model's tokenizer could be read to decode them.
    pub text: Option<String>,
}

impl AnswerView {
    /// The view of `a`; `scored`: the tokens scored and the tokenizer to decode them with.
    pub(super) fn of(a: &Answer, scored: Option<(usize, Option<&Tokenizer>)>) -> Self {
        Self {
            text: a.text.clone(),
            extracted: a.grade.extracted.clone(),
            correct: a.grade.correct,
            prompt_tokens: a.prompt_ids.len(),
            answer_tokens: a.answer_ids.len(),
            scored: scored.map(|(k, tokenizer)| ScoredTokens {
                k,
                text: tokenizer
                    .and_then(|t| t.decode(&a.answer_ids[..k.min(a.answer_ids.len())]).ok()),
            }),
        }
    }

    /// The length in bytes of the start of `text` that the scored tokens make up, when their
    /// decoded text begins it (what the question browser highlights).
    pub fn scored_prefix_len(&self) -> Option<usize> {
        let scored = self.scored.as_ref()?.text.as_deref()?;
        self.text.starts_with(scored).then_some(scored.len())
    }
}

/// The tokenizer of the model `run` scored, from the local files or cache only (`None` when it
/// is not found: the browser then says how many tokens were scored without marking them).
fn run_tokenizer(run: &Run) -> Option<Tokenizer> {
    let hub = crate::model::HubOptions {
        offline: true,
        ..Default::default()
    };
    crate::model::load_without_weights(&run.manifest.model.spec, &hub)
        .map(|(_, t)| t)
        .ok()
}

/// A question of the study and, when it was scored, its sample in each run.
#[derive(Debug, Clone)]
pub struct Question {
    pub id: String,
    pub question: String,
    pub reference: String,
    pub base: Option<AnswerView>,
    pub tuned: Option<AnswerView>,
    /// Index of the sample in the base run and in the tuned run.
    pub sample: Option<(usize, Option<usize>)>,
}

/// The figures of the views, computed once.
pub struct Figures {
    pub heatmaps: Vec<Heatmap>,
    pub sorted: LineChart,
    pub cumulative: LineChart,
    pub histogram: Histogram,
    /// Each metric per layer: both models' means with their intervals.
    pub per_layer: Vec<LineChart>,
    /// Each metric per layer as the paired difference tuned − base (a pair's results only).
    pub per_layer_difference: Vec<LineChart>,
    /// Both models' per-sample losses (a pair's results only).
    pub losses: Option<Histogram>,
    /// The check of EAP (method.md §7): each model's EAP-vs-exact scatter and the faithfulness
    /// curves, when the comparison holds one.
    pub exact: Option<(Vec<Scatter>, LineChart)>,
}

/// Everything loaded from one results directory.
pub struct Results {
    pub dir: PathBuf,
    /// "base -> tuned", or the model of a single run.
    pub title: String,
    /// The runs, shared with a trajectory's checkpoints when the results are a pair of them.
    pub base: Arc<Run>,
    pub tuned: Option<Arc<Run>>,
    pub comparison: Option<Comparison>,
    pub counts: Option<Counts>,
    pub questions: Vec<Question>,
    pub figures: Figures,
    /// The circuit of the mean score vectors.
    pub circuit: Circuit,
    /// Base and tuned scored every sample alike (the same model given twice, say): tuned −
    /// base is 0 everywhere.
    pub identical: bool,
    /// The edges whose importance changed most, or why they could not be tested (a pair's
    /// results only).
    pub edges: Option<Result<EdgeChanges, String>>,
}

/// Whether two runs scored every sample alike (the same model given twice, say).
fn same_scores(base: &Run, tuned: &Run) -> bool {
    tuned.scores.len() == base.scores.len()
        && tuned
            .scores
            .iter()
            .zip(&base.scores)
            .all(|(t, b)| t.dense == b.dense)
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, AppError> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|source| AppError::Io {
        path: path.to_owned(),
        source,
    })?;
    let value = serde_json::from_str(&text).map_err(|source| AppError::Json {
        path: path.to_owned(),
        source,
    })?;
    Ok(Some(value))
}

/// A short name of a model spec: the last path component, or the Hub id.
pub fn short_name(spec: &str) -> String {
    figures::model_name(spec)
}

/// Whether `dir` is results the app can open (a trajectory's folder among them).
pub fn is_results_dir(dir: &Path) -> bool {
    Kind::detect(dir).is_some_and(Kind::is_results)
}

impl Results {
    /// The answer tokens scored: as the comparison recorded them, else as the base run's
    /// manifest says (warned about below the default threshold).
    pub fn span(&self) -> ScoredSpan {
        self.comparison
            .as_ref()
            .and_then(|c| c.span)
            .unwrap_or_else(|| ScoredSpan::of(&self.base, DEFAULT_MIN_K))
    }

    /// Load a study directory (`base/`, `tuned/`, `comparison.json`, `answers.jsonl`,
    /// `counts.json`), a `compare` output directory (its `comparison.json` names both runs) or a
    /// single run directory.
    pub fn load(dir: &Path) -> Result<Self, AppError> {
        let comparison: Option<Comparison> = read_json(&comparison::path(dir))?;
        let kind = Kind::detect(dir);
        let (base, tuned) = if kind == Some(Kind::Run) {
            (Arc::new(run::load(dir)?), None)
        } else if kind == Some(Kind::Study) {
            let study = StudyDir::new(dir);
            (
                Arc::new(run::load(&study.run_dir(Side::Base))?),
                Some(Arc::new(run::load(&study.run_dir(Side::Tuned))?)),
            )
        } else if let (Some(Kind::Comparison), Some(c)) = (kind, &comparison) {
            let side = |d: &str| {
                let p = Path::new(d);
                if p.is_absolute() {
                    p.to_owned()
                } else {
                    dir.join(p)
                }
            };
            (
                Arc::new(run::load(&side(&c.base.dir))?),
                Some(Arc::new(run::load(&side(&c.tuned.dir))?)),
            )
        } else {
            return Err(AppError::NotResults {
                path: dir.to_owned(),
            });
        };
        let study = StudyDir::new(dir);
        let counts = study.read_counts()?;
        let questions = read_questions(&study, &base, tuned.as_deref())?;
        Ok(Self::from_runs(
            dir, base, tuned, comparison, counts, questions,
        ))
    }

    /// Assemble results from loaded parts, computing the figures.
    pub fn from_runs(
        dir: &Path,
        base: Arc<Run>,
        tuned: Option<Arc<Run>>,
        comparison: Option<Comparison>,
        counts: Option<Counts>,
        questions: Vec<Question>,
    ) -> Self {
        let other: &Run = tuned.as_deref().unwrap_or(&base);
        let single = tuned.is_none();
        let trim = |mut chart: LineChart| {
            if single {
                chart.series.truncate(1);
            }
            chart
        };
        let mut heatmaps = figures::comparison_heatmaps(&base, other);
        let mut runs: Vec<(Side, &Run)> = vec![(Side::Base, &base)];
        if let Some(t) = tuned.as_deref() {
            runs.push((Side::Tuned, t));
        } else {
            heatmaps.truncate(1);
        }
        let opts = comparison
            .as_ref()
            .map(|c| c.options.clone())
            .unwrap_or_default();
        let figures = Figures {
            heatmaps,
            sorted: trim(figures::sorted_abs_curve(&base, other)),
            cumulative: trim(figures::cumulative_share(&base, other)),
            histogram: figures::score_histogram(&runs),
            per_layer: Metric::ALL
                .into_iter()
                .map(|m| trim(figures::per_layer(&base, other, m, &opts)))
                .collect(),
            per_layer_difference: tuned.as_deref().map_or_else(Vec::new, |t| {
                Metric::ALL
                    .into_iter()
                    .filter_map(|m| figures::per_layer_difference(&base, t, m, &opts))
                    .collect()
            }),
            losses: tuned.as_ref().map(|t| figures::loss_histogram(&base, t)),
            exact: comparison
                .as_ref()
                .and_then(|c| c.validation.as_ref())
                .map(|v| (figures::exact_scatter(v), figures::faithfulness_curves(v))),
        };
        let graph = &base.manifest.graph;
        let edges = |r: &Run| graph.edge_values(&r.mean_scores());
        let tuned_edges = tuned
            .as_deref()
            .filter(|t| t.manifest.graph == *graph)
            .map(edges);
        let identical = tuned.as_deref().is_some_and(|t| same_scores(&base, t));
        let circuit = Circuit::new(graph, edges(&base), tuned_edges);
        let edge_changes = tuned
            .as_deref()
            .filter(|t| t.manifest.graph == *graph)
            .map(|t| {
                EdgeChanges::of_runs(&base, t, &opts, edge_change::TOP).map_err(|e| e.to_string())
            });
        let title = match &tuned {
            Some(t) => format!(
                "{} -> {}",
                short_name(&base.manifest.model.spec),
                short_name(&t.manifest.model.spec)
            ),
            None => short_name(&base.manifest.model.spec),
        };
        Self {
            dir: dir.to_owned(),
            title,
            base,
            tuned,
            comparison,
            counts,
            questions,
            figures,
            circuit,
            identical,
            edges: edge_changes,
        }
    }

    /// The circuit of one question's sample (`None` when it was not scored).
    pub fn sample_circuit(&self, question: &Question) -> Option<Circuit> {
        let (b, t) = question.sample?;
        let graph = &self.base.manifest.graph;
        let base = graph.edge_values(&self.base.scores.get(b)?.dense);
        let tuned = match (&self.tuned, t) {
            (Some(run), Some(t)) if run.manifest.graph == *graph => {
                Some(graph.edge_values(&run.scores.get(t)?.dense))
            }
            _ => None,
        };
        Some(Circuit::new(graph, base, tuned))
    }
}

/// The questions of the study's answer rows (or, without them, the scored samples alone).
fn read_questions(
    study: &StudyDir,
    base: &Run,
    tuned: Option<&Run>,
) -> Result<Vec<Question>, AppError> {
    let index = |run: &Run| -> HashMap<String, usize> {
        run.manifest
            .samples
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.clone(), i))
            .collect()
    };
    let (bi, ti) = (index(base), tuned.map(index).unwrap_or_default());
    let sample = |id: &str| bi.get(id).map(|&b| (b, ti.get(id).copied()));
    let tokenizers = PerSide {
        base: run_tokenizer(base),
        tuned: tuned.and_then(run_tokenizer),
    };
    // Tokens scored of a question's answer by one side: that sample's K.
    let scored = |side: Side, id: &str| {
        let (run, index) = match side {
            Side::Base => (base, &bi),
            Side::Tuned => (tuned?, &ti),
        };
        let k = run.manifest.samples[*index.get(id)?].k;
        Some((k, tokenizers[side].as_ref()))
    };
    if !study.rows_path().is_file() {
        return Ok(base
            .manifest
            .samples
            .iter()
            .map(|s| Question {
                id: s.id.clone(),
                question: String::new(),
                reference: String::new(),
                base: None,
                tuned: None,
                sample: sample(&s.id),
            })
            .collect());
    }
    Ok(study
        .read_rows()?
        .into_iter()
        .map(|a| Question {
            sample: sample(&a.id),
            base: a
                .base
                .as_ref()
                .map(|b| AnswerView::of(b, scored(Side::Base, &a.id))),
            tuned: a
                .tuned
                .as_ref()
                .map(|t| AnswerView::of(t, scored(Side::Tuned, &a.id))),
            id: a.id,
            question: a.question,
            reference: a.reference,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scored tokens' text begins the answer and is what the browser marks; without a
    /// tokenizer only their count is known.
    #[test]
    fn an_answer_knows_its_scored_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let json = crate::model::char_tokenizer_json("0123456789+= ");
        std::fs::write(dir.path().join("tokenizer.json"), json.to_string()).unwrap();
        let tokenizer = Tokenizer::from_folder(dir.path()).unwrap();
        let text = "12 + 5 = 17";
        let answer = Answer {
            id: "q".into(),
            prompt: String::new(),
            prompt_ids: vec![1],
            answer_ids: tokenizer.encode(text, false).unwrap(),
            text: text.into(),
            stop: crate::model::StopReason::EndOfSequence,
            grade: crate::study::grade::grade(text, "17"),
            given_correct: None,
        };
        let view = AnswerView::of(&answer, Some((4, Some(&tokenizer))));
        let scored = view.scored.as_ref().unwrap();
        assert_eq!((scored.k, scored.text.as_deref()), (4, Some("12 +")));
        assert_eq!(view.scored_prefix_len(), Some(4));
        let counted = AnswerView::of(&answer, Some((4, None)));
        assert_eq!(counted.scored_prefix_len(), None);
        assert_eq!(counted.scored.map(|s| s.k), Some(4));
        assert_eq!(AnswerView::of(&answer, None).scored, None);
    }
}
