//! The scored span (method.md §3, §8): the loss, and with it every edge score, covers only the
//! first K tokens of each answer, K = max(⌊α·T̄⌋, 1) or a given cut. With short answers K is 1
//! or 2 and the "circuit" explains the first answer token(s) only, so every table, report and
//! view states K and T̄, and warns when K is below a threshold.

use super::run::Run;
use crate::attribution::select::SelectOptions;
use serde::{Deserialize, Serialize};

/// K below which a comparison warns, unless told otherwise (`--min-k-warning`).
pub const DEFAULT_MIN_K: usize = 4;

/// How K was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KSource {
    /// K = max(⌊α·T̄⌋, 1): a study's selection.
    Derived {
        /// The cut fraction α.
        alpha: f64,
        /// T̄, the mean answer length over the both-correct pairs.
        t_bar: f64,
    },
    /// A study's `--cut`, with the T̄ of its pairs.
    Cut {
        /// T̄, the mean answer length over the both-correct pairs.
        t_bar: f64,
    },
    /// `score --cut K` on given token sequences (no T̄).
    Given,
}

/// The answer tokens a comparison (or one run) scored.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScoredSpan {
    /// K: the answer tokens each sample's loss covers (fewer in answers shorter than K).
    pub k: usize,
    pub source: KSource,
    /// Questions (samples) scored.
    pub n: usize,
    /// Samples whose answer is shorter than K, scored on their whole answer.
    pub shorter: usize,
    /// K below this is warned about.
    pub min_k: usize,
}

impl ScoredSpan {
    /// The span of `run` (the base run of a comparison: both models share K and the questions),
    /// warned about below `min_k`.
    pub fn of(run: &Run, min_k: usize) -> Self {
        let m = &run.manifest;
        let k = m.method.cut;
        let n = m.samples.len();
        let span = match &m.study {
            Some(s) => Self::chosen(k, s.t_bar, &s.select, n, min_k),
            None => Self {
                k,
                source: KSource::Given,
                n,
                shorter: 0,
                min_k,
            },
        };
        Self {
            shorter: m.samples.iter().filter(|s| s.k < k).count(),
            ..span
        }
    }

    /// The span a selection chose: `k` from `t_bar` under `select`, over `n` questions (none
    /// counted as shorter than K), warned about below `min_k`.
    pub fn chosen(k: usize, t_bar: f64, select: &SelectOptions, n: usize, min_k: usize) -> Self {
        let source = if select.cut == Some(k) {
            KSource::Cut { t_bar }
        } else {
            KSource::Derived {
                alpha: select.alpha,
                t_bar,
            }
        };
        Self {
            k,
            source,
            n,
            shorter: 0,
            min_k,
        }
    }

    /// One line for tables, reports and views, e.g.
    /// "scored: K = 1 answer token (α = 0.05 × T̄ = 23.4), n = 20 questions".
    pub fn line(&self) -> String {
        format!("scored: {}", self.describe())
    }

    /// The span without its label: "K = 1 answer token (…), n = 20 questions".
    pub fn describe(&self) -> String {
        let tokens = if self.k == 1 { "token" } else { "tokens" };
        let how = match self.source {
            KSource::Derived { alpha, t_bar } => {
                format!(" (α = {alpha} × T̄ = {t_bar:.1})")
            }
            KSource::Cut { t_bar } => format!(" (--cut, T̄ = {t_bar:.1})"),
            KSource::Given => " (--cut)".to_owned(),
        };
        let questions = if self.n == 1 { "question" } else { "questions" };
        let mut line = format!(
            "K = {} answer {tokens}{how}, n = {} {questions}",
            self.k, self.n
        );
        if self.shorter > 0 {
            line.push_str(&format!(
                "; {} answers shorter than K scored whole",
                self.shorter
            ));
        }
        line
    }

    /// The warning when K is below the threshold, with the ways to a longer span.
    pub fn warning(&self) -> Option<String> {
        if self.k >= self.min_k {
            return None;
        }
        let first = if self.k == 1 {
            "its first answer token".to_owned()
        } else {
            format!("its first {} answer tokens", self.k)
        };
        let fix = match self.source {
            KSource::Derived { alpha, t_bar } => {
                // ⌊α·T̄⌋ ≥ min_k from α ≥ min_k / T̄, rounded up to two decimals.
                let needed =
                    (100.0 * self.min_k as f64 / t_bar.max(f64::MIN_POSITIVE)).ceil() / 100.0;
                if needed < 1.0 {
                    format!(
                        "a larger --alpha (≥ {needed} for K ≥ {min}, now {alpha}), --cut {min}, \
                         or a task with longer answers",
                        min = self.min_k
                    )
                } else {
                    format!(
                        "--cut {} or a task with longer answers (T̄ = {t_bar:.1} tokens is too \
                         short for any --alpha)",
                        self.min_k
                    )
                }
            }
            KSource::Cut { .. } | KSource::Given => {
                format!(
                    "a larger --cut (≥ {}), or a task with longer answers",
                    self.min_k
                )
            }
        };
        Some(format!(
            "K = {} is below {}: each circuit explains only {first}, not the answer; use {fix}",
            self.k, self.min_k
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn derived(k: usize, t_bar: f64) -> ScoredSpan {
        ScoredSpan {
            k,
            source: KSource::Derived { alpha: 0.05, t_bar },
            n: 20,
            shorter: 0,
            min_k: DEFAULT_MIN_K,
        }
    }

    #[test]
    fn the_line_states_k_alpha_t_bar_and_n() {
        assert_eq!(
            derived(1, 23.4).line(),
            "scored: K = 1 answer token (α = 0.05 × T̄ = 23.4), n = 20 questions"
        );
        let cut = ScoredSpan {
            source: KSource::Cut { t_bar: 9.0 },
            shorter: 3,
            ..derived(8, 9.0)
        };
        assert_eq!(
            cut.line(),
            "scored: K = 8 answer tokens (--cut, T̄ = 9.0), n = 20 questions; 3 answers shorter \
             than K scored whole"
        );
    }

    /// Below the threshold the warning names the α that reaches it: ⌊0.18 · 23.4⌋ = 4, while
    /// ⌊0.17 · 23.4⌋ = 3; with answers shorter than the threshold no α can.
    #[test]
    fn a_short_span_warns_with_the_fix() {
        let w = derived(1, 23.4).warning().unwrap();
        assert!(w.starts_with("K = 1 is below 4"), "{w}");
        assert!(w.contains("--alpha (≥ 0.18 for K ≥ 4, now 0.05)"), "{w}");
        assert!(w.contains("--cut 4"), "{w}");
        assert!(w.contains("longer answers"), "{w}");
        let w = derived(1, 3.0).warning().unwrap();
        assert!(!w.contains("a larger --alpha"), "{w}");
        assert!(w.contains("--cut 4"), "{w}");
        assert_eq!(derived(4, 80.0).warning(), None);
        let strict = ScoredSpan {
            min_k: 8,
            ..derived(4, 80.0)
        };
        assert!(strict.warning().unwrap().contains("≥ 0.1 for K ≥ 8"));
    }
}
