//! What a comparison may claim (method.md §8): for each headline metric, whether the exact
//! effects confirm the change that EAP's scores show, in one of five words with its reason,
//! naming the edge set and the number of questions it was judged on.

use crate::attribution::compare::PairedStat;
use crate::attribution::metrics::Metric;
use crate::report::table::Cell;
use serde::{Deserialize, Serialize};

/// Fewer checked questions than this make a verdict inconclusive.
pub const MIN_CHECKED_QUESTIONS: usize = 10;

/// The edges a verdict's metrics are computed over, for EAP and for the exact effects alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EdgeScope {
    /// Every real edge of the graph (the headline metric's own edges): the graph was small
    /// enough for the exact effect of every edge.
    All {
        /// Number of real edges.
        edges: usize,
    },
    /// The union of both models' top edges by |S| on each question.
    TopUnion {
        /// The top edges of each model.
        top: usize,
    },
}

impl std::fmt::Display for EdgeScope {
    /// "all 77 edges", "the union of both models' top 32 edges".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::All { edges } => write!(f, "all {edges} edges"),
            Self::TopUnion { top } => write!(f, "the union of both models' top {top} edges"),
        }
    }
}

/// Whether the exact effects confirm a change that EAP's scores show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// EAP's Δ is significant after correction, and the exact-effect Δ has the same sign with
    /// its interval excluding 0.
    Confirmed,
    /// EAP's Δ is significant and the exact-effect Δ has the other sign.
    Contradicted,
    /// EAP's Δ is significant; the exact-effect Δ is not (its interval includes 0).
    NotConfirmed,
    /// EAP's Δ is not significant after correction: nothing to confirm.
    NotSignificant,
    /// Fewer than [`MIN_CHECKED_QUESTIONS`] questions were checked: too few to tell.
    Inconclusive,
}

impl Verdict {
    /// Every verdict, in the order of how much they say.
    pub const ALL: [Self; 5] = [
        Self::Confirmed,
        Self::Contradicted,
        Self::NotConfirmed,
        Self::NotSignificant,
        Self::Inconclusive,
    ];

    /// The verdict in words: "confirmed", "contradicted", "not confirmed", "not significant",
    /// "inconclusive".
    pub fn word(self) -> &'static str {
        match self {
            Self::Confirmed => "confirmed",
            Self::Contradicted => "contradicted",
            Self::NotConfirmed => "not confirmed",
            Self::NotSignificant => "not significant",
            Self::Inconclusive => "inconclusive",
        }
    }

    /// The verdict on EAP's Δ `eap` and the exact-effect Δ `exact` (paired over the same
    /// questions) at the significance `level`, read from EAP's adjusted p-value, with its
    /// reason.
    pub fn of(eap: &PairedStat, exact: &PairedStat, level: f64) -> (Self, String) {
        let p = Cell::AdjustedP(eap.p_adjusted).text();
        let exact_delta = format!(
            "the exact-effect Δ {} {}",
            Cell::Change(exact.mean_diff).text(),
            Cell::Interval(exact.ci_low, exact.ci_high).text()
        );
        let product = eap.mean_diff * exact.mean_diff;
        let excludes = exact.ci_low > 0.0 || exact.ci_high < 0.0;
        if eap.n < MIN_CHECKED_QUESTIONS {
            return (
                Self::Inconclusive,
                format!(
                    "only {} questions were checked; at least {MIN_CHECKED_QUESTIONS} are needed to tell",
                    eap.n
                ),
            );
        }
        // NaN (no test could be made) is not significant either.
        if eap.p_adjusted.is_nan() || eap.p_adjusted >= level {
            return (
                Self::NotSignificant,
                format!("EAP's Δ has adjusted p {p}, not below {level}: nothing to confirm"),
            );
        }
        let significant = format!("EAP's Δ is significant (adjusted p {p})");
        if product < 0.0 {
            (
                Self::Contradicted,
                format!("{significant}, but {exact_delta} has the other sign"),
            )
        } else if product > 0.0 && excludes {
            (
                Self::Confirmed,
                format!(
                    "{significant} and {exact_delta} has the same sign, its interval excluding 0"
                ),
            )
        } else {
            (
                Self::NotConfirmed,
                format!("{significant}, but {exact_delta} is not: its interval includes 0"),
            )
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

/// One headline metric over each checked question's edge set ([`EdgeScope`]), from EAP
/// scores and from exact effects, paired over the questions, and the verdict on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Robustness {
    pub metric: Metric,
    /// From EAP's scores; its p-value adjusted over the headline metrics of the check.
    pub eap: PairedStat,
    /// From the exact effects; its p-value adjusted likewise, in a family of its own.
    pub exact: PairedStat,
    pub verdict: Verdict,
    /// Why, in a sentence with the numbers it rests on.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::compare::{paired, CompareOptions};

    /// A paired statistic of `n` questions whose differences are `diffs` repeated, with its
    /// adjusted p set to `p_adjusted`.
    fn stat(diffs: &[f64], n: usize, p_adjusted: f64) -> PairedStat {
        let base = vec![1.0; n];
        let tuned: Vec<f64> = (0..n).map(|i| 1.0 + diffs[i % diffs.len()]).collect();
        let mut s = paired(Metric::Entropy, &base, &tuned, &CompareOptions::default()).unwrap();
        s.p_adjusted = p_adjusted;
        s
    }

    /// Synthetic paired data where each verdict fires: a clear rise (every difference
    /// positive: interval above 0), a clear fall, and a difference that straddles 0.
    #[test]
    fn each_verdict_fires() {
        let up = [0.1, 0.2, 0.3];
        let down = [-0.1, -0.2, -0.3];
        let noise = [0.6, -0.5, 0.4, -0.4];
        let eap = stat(&up, 20, 0.001);
        let cases = [
            (stat(&up, 20, 0.001), stat(&up, 20, 0.5), Verdict::Confirmed),
            (eap.clone(), stat(&down, 20, 0.001), Verdict::Contradicted),
            (eap.clone(), stat(&noise, 20, 0.9), Verdict::NotConfirmed),
            (
                stat(&up, 20, 0.2),
                stat(&up, 20, 0.001),
                Verdict::NotSignificant,
            ),
            (
                stat(&up, 9, 0.001),
                stat(&up, 9, 0.001),
                Verdict::Inconclusive,
            ),
        ];
        for (eap, exact, want) in cases {
            let (got, reason) = Verdict::of(&eap, &exact, 0.05);
            assert_eq!(got, want, "{reason}");
            assert!(!reason.contains("Some(") && !reason.is_empty(), "{reason}");
        }
        let noise_stat = stat(&noise, 20, 0.9);
        assert!(
            noise_stat.ci_low < 0.0 && noise_stat.ci_high > 0.0,
            "{noise_stat:?}"
        );
        // The EAP p read is the adjusted one: a raw p below the level does not count.
        let mut raw_only = stat(&up, 20, 0.06);
        raw_only.p_value = 0.001;
        assert_eq!(
            Verdict::of(&raw_only, &stat(&up, 20, 0.001), 0.05).0,
            Verdict::NotSignificant
        );
        let words: Vec<&str> = Verdict::ALL.iter().map(|v| v.word()).collect();
        assert_eq!(
            words,
            [
                "confirmed",
                "contradicted",
                "not confirmed",
                "not significant",
                "inconclusive"
            ]
        );
    }

    #[test]
    fn edge_scopes_read_as_words() {
        assert_eq!(EdgeScope::All { edges: 77 }.to_string(), "all 77 edges");
        assert_eq!(
            EdgeScope::TopUnion { top: 32 }.to_string(),
            "the union of both models' top 32 edges"
        );
    }
}
