//! A scoring run's specification: what is scored (graph level, cut K, metric options), with
//! the memory plan of its pass and its manifest, and the run itself.

use super::score::{score_run, Outcome};
use crate::attribution::metrics::MetricOptions;
use crate::attribution::score::Accumulation;
use crate::attribution::{Graph, Level};
use crate::model::{Model, ScorePlan};
use crate::progress::{CancelToken, Progress};
use crate::report::run::{
    Manifest, Method, ModelEntry, RunError, SampleEntry, ScoreSample, Software, StudyRecord,
};
use std::path::Path;

/// What a scoring run scores, whoever starts it (`score`, a study's scoring stage, a
/// trajectory's checkpoint): the graph level, the cut length K and the metric options.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSpec {
    pub level: Level,
    /// The requested cut length K (each sample is scored on min(K, its answer length)).
    pub cut: usize,
    pub metrics: MetricOptions,
}

impl RunSpec {
    pub fn new(level: Level, cut: usize, metrics: MetricOptions) -> Self {
        Self {
            level,
            cut,
            metrics,
        }
    }

    fn heads(&self) -> bool {
        self.level == Level::Head
    }

    /// The memory plan of scoring `samples`, K clamped to each sample's answer length as
    /// scoring clamps it: the longest prompt plus K − 1 answer tokens, and the largest K.
    pub fn plan(&self, samples: &[ScoreSample]) -> ScorePlan {
        let clamped = |s: &ScoreSample| self.cut.min(s.answer_ids.len()).max(1);
        let seq_len = samples
            .iter()
            .map(|s| s.prompt_ids.len() + clamped(s) - 1)
            .max()
            .unwrap_or(1);
        ScorePlan {
            seq_len,
            scored: samples.iter().map(clamped).max().unwrap_or(1),
            heads: self.heads(),
        }
    }

    /// The memory plan of scoring samples not known yet (answers a model has still to give):
    /// prompts of at most `longest_prompt` tokens, K clamped to answers of at most
    /// `longest_answer` tokens.
    pub fn plan_within(&self, longest_prompt: usize, longest_answer: usize) -> ScorePlan {
        let k = self.cut.min(longest_answer).max(1);
        ScorePlan {
            seq_len: longest_prompt + k - 1,
            scored: k,
            heads: self.heads(),
        }
    }

    /// The manifest of scoring `samples` with `model`; `study`: what a study recorded of how
    /// they were chosen.
    pub fn manifest(
        &self,
        model: &Model,
        samples: &[ScoreSample],
        study: Option<StudyRecord>,
    ) -> Manifest {
        let graph = Graph::new(&model.config, self.level);
        let method = Method::new(
            self.level,
            self.cut,
            Accumulation::for_compute(model.dtype()),
            self.metrics.clone(),
        );
        Manifest {
            format: 1,
            software: Software::default(),
            model: ModelEntry::of(model),
            num_edges: graph.num_edges(),
            graph,
            samples: samples
                .iter()
                .enumerate()
                .map(|(i, s)| SampleEntry {
                    id: s.id_at(i),
                    prompt_len: s.prompt_ids.len(),
                    answer_len: s.answer_ids.len(),
                    k: method.cut.min(s.answer_ids.len()),
                })
                .collect(),
            method,
            study,
        }
    }

    /// Score `samples` with `model` into the run directory `dir` ([`score_run`] of their
    /// [`RunSpec::manifest`]), reported as the stage `stage`.
    pub fn score(
        &self,
        stage: &str,
        dir: &Path,
        model: &Model,
        (samples, study): (&[ScoreSample], Option<StudyRecord>),
        progress: &mut dyn Progress,
        cancel: &CancelToken,
    ) -> Result<Outcome, RunError> {
        let manifest = self.manifest(model, samples, study);
        score_run(stage, dir, model, &manifest, samples, progress, cancel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(prompt: usize, answer: usize) -> ScoreSample {
        ScoreSample {
            id: None,
            prompt_ids: vec![1; prompt],
            answer_ids: vec![2; answer],
        }
    }

    #[test]
    fn the_plan_clamps_k_to_each_answer() {
        let spec = RunSpec::new(Level::Block, 5, MetricOptions::default());
        // (10 + 3 − 1) and (4 + 5 − 1): the longest sequence is the first, the largest K 5.
        let plan = spec.plan(&[sample(10, 3), sample(4, 9)]);
        assert_eq!((plan.seq_len, plan.scored, plan.heads), (12, 5, false));
        // K of the largest integer plans the longest answer, not K.
        let huge = RunSpec::new(Level::Head, usize::MAX, MetricOptions::default());
        let plan = huge.plan(&[sample(10, 3), sample(4, 9)]);
        assert_eq!((plan.seq_len, plan.scored, plan.heads), (12, 9, true));
        assert_eq!(huge.plan_within(10, 9).seq_len, 18);
        assert_eq!(spec.plan_within(10, 0).scored, 1);
    }
}
