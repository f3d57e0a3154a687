//! Pairing and filtering (method.md §4 step 4, §3): keep the questions both models answered
//! correctly, apply the study's length filters, choose T̄ and K, and sample N questions with a
//! seed. Every count on the way is recorded.

use rand::seq::SliceRandom as _;
use rand::SeedableRng as _;
use serde::{Deserialize, Serialize};

/// How T̄ is computed over the both-correct set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TBar {
    /// min(mean base answer length, mean tuned answer length) (the study's code).
    #[default]
    MinOfMeans,
    /// The mean over both models' answers together (the study's text).
    Pooled,
}

impl TBar {
    /// How T̄ is computed, in words.
    pub fn words(self) -> &'static str {
        match self {
            Self::MinOfMeans => "the smaller of the two models' mean answer lengths",
            Self::Pooled => "the mean answer length over both models",
        }
    }
}

/// Selection parameters; defaults are the study's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelectOptions {
    /// Questions to keep after filtering (all when fewer remain).
    pub n: usize,
    pub seed: u64,
    /// K = max(⌊α·T̄⌋, 1).
    pub alpha: f64,
    /// K itself, instead of ⌊α·T̄⌋ (`--cut`); answers shorter than K are scored whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut: Option<usize>,
    pub t_bar: TBar,
    /// Keep only questions whose prompts have the same length under both models.
    pub equal_prompt_length: bool,
    /// Keep pairs whose mean answer length lies in [lo·T̄, hi·T̄] (`None`: no filter).
    pub pair_mean_window: Option<(f64, f64)>,
    /// Keep pairs with |len_base − len_tuned| / mean ≤ this (`None`: no filter).
    pub max_relative_length_difference: Option<f64>,
}

impl Default for SelectOptions {
    fn default() -> Self {
        Self {
            n: 100,
            seed: 42,
            alpha: 0.05,
            cut: None,
            t_bar: TBar::MinOfMeans,
            equal_prompt_length: true,
            pair_mean_window: Some((0.5, 1.5)),
            max_relative_length_difference: Some(0.6),
        }
    }
}

/// What the selection needs to know about one question.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub base_prompt_len: usize,
    pub tuned_prompt_len: usize,
    pub base_answer_len: usize,
    pub tuned_answer_len: usize,
    pub base_correct: bool,
    pub tuned_correct: bool,
}

/// Counts after each step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SelectCounts {
    pub both_correct: usize,
    pub after_equal_prompt_length: usize,
    pub after_pair_mean_window: usize,
    pub after_length_difference: usize,
    pub sampled: usize,
}

/// The selected questions and the cut length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    /// Indices into the candidate list, in increasing order.
    pub indices: Vec<usize>,
    pub t_bar: f64,
    pub k: usize,
    pub counts: SelectCounts,
}

/// Why nothing could be selected.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("no question was answered correctly by both models (base accuracy {base_accuracy:.1} %, tuned accuracy {tuned_accuracy:.1} % over {asked} questions): ask more questions, allow more new tokens, or check the prompt template")]
    NoneBothCorrect {
        asked: usize,
        base_accuracy: f64,
        tuned_accuracy: f64,
    },
    #[error("the length filters removed all {both_correct} both-correct questions (equal prompt length kept {}, pair mean length within the window kept {}, length difference within bound kept {}); ask more questions, or turn the filters off with --no-length-filters", counts.after_equal_prompt_length, counts.after_pair_mean_window, counts.after_length_difference)]
    FilteredOut {
        both_correct: usize,
        counts: SelectCounts,
    },
}

fn mean(v: impl Iterator<Item = usize> + Clone) -> f64 {
    let n = v.clone().count().max(1) as f64;
    v.map(|x| x as f64).sum::<f64>() / n
}

/// Select questions from `candidates` (one per question, in dataset order).
pub fn select(candidates: &[Candidate], opts: &SelectOptions) -> Result<Selection, SelectError> {
    let mut counts = SelectCounts::default();
    let both: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].base_correct && candidates[i].tuned_correct)
        .collect();
    counts.both_correct = both.len();
    if both.is_empty() {
        let acc = |f: fn(&Candidate) -> bool| {
            100.0 * candidates.iter().filter(|c| f(c)).count() as f64
                / candidates.len().max(1) as f64
        };
        return Err(SelectError::NoneBothCorrect {
            asked: candidates.len(),
            base_accuracy: acc(|c| c.base_correct),
            tuned_accuracy: acc(|c| c.tuned_correct),
        });
    }
    let base_mean = mean(both.iter().map(|&i| candidates[i].base_answer_len));
    let tuned_mean = mean(both.iter().map(|&i| candidates[i].tuned_answer_len));
    let t_bar = match opts.t_bar {
        TBar::MinOfMeans => base_mean.min(tuned_mean),
        TBar::Pooled => (base_mean + tuned_mean) / 2.0,
    };
    let k = opts
        .cut
        .unwrap_or((opts.alpha * t_bar).floor() as usize)
        .max(1);

    let mut kept = both;
    if opts.equal_prompt_length {
        kept.retain(|&i| candidates[i].base_prompt_len == candidates[i].tuned_prompt_len);
    }
    counts.after_equal_prompt_length = kept.len();
    let pair_mean = |c: &Candidate| (c.base_answer_len + c.tuned_answer_len) as f64 / 2.0;
    if let Some((lo, hi)) = opts.pair_mean_window {
        kept.retain(|&i| {
            let m = pair_mean(&candidates[i]);
            m >= lo * t_bar && m <= hi * t_bar
        });
    }
    counts.after_pair_mean_window = kept.len();
    if let Some(max) = opts.max_relative_length_difference {
        kept.retain(|&i| {
            let c = &candidates[i];
            let m = pair_mean(c);
            m > 0.0 && (c.base_answer_len as f64 - c.tuned_answer_len as f64).abs() / m <= max
        });
    }
    counts.after_length_difference = kept.len();
    if kept.is_empty() {
        return Err(SelectError::FilteredOut {
            both_correct: counts.both_correct,
            counts,
        });
    }
    if kept.len() > opts.n {
        let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
        kept.shuffle(&mut rng);
        kept.truncate(opts.n);
        kept.sort_unstable();
    }
    counts.sampled = kept.len();
    Ok(Selection {
        indices: kept,
        t_bar,
        k,
        counts,
    })
}
