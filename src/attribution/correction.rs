//! Correction for multiple comparisons (method.md §8): the tests of one family (the metrics of
//! one comparison, the checkpoints of one trajectory) share one error budget, and conclusions
//! read the adjusted p-value p̃ instead of the raw p.
//!
//! Holm–Bonferroni (the default): with the m raw p-values sorted, p(1) ≤ … ≤ p(m),
//! p̃(i) = max over j ≤ i of min(1, (m − j + 1)·p(j)). Benjamini–Hochberg (an option):
//! p̃(i) = min over j ≥ i of min(1, m·p(j)/j). A NaN p-value (a test that could not be made) is
//! left out of the family and stays NaN.

use serde::{Deserialize, Serialize};

/// How the p-values of a family of tests are adjusted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Correction {
    /// Holm–Bonferroni: controls the family-wise error rate.
    #[default]
    Holm,
    /// Benjamini–Hochberg: controls the false discovery rate.
    BenjaminiHochberg,
}

impl Correction {
    /// Both corrections, the default first.
    pub const ALL: [Self; 2] = [Self::Holm, Self::BenjaminiHochberg];

    /// The name on the command line: `holm` or `bh`.
    pub fn flag(self) -> &'static str {
        match self {
            Self::Holm => "holm",
            Self::BenjaminiHochberg => "bh",
        }
    }

    /// The name people read: "Holm–Bonferroni" or "Benjamini–Hochberg".
    pub fn name(self) -> &'static str {
        match self {
            Self::Holm => "Holm–Bonferroni",
            Self::BenjaminiHochberg => "Benjamini–Hochberg",
        }
    }

    /// The family in words: "Holm–Bonferroni over the 11 metrics of this comparison".
    pub fn family(self, what: &str) -> String {
        format!("{} over {what}", self.name())
    }

    /// The adjusted p-values p̃ of `p`, in the order given (see the module's documentation);
    /// NaN entries are no part of the family and stay NaN.
    pub fn adjust(self, p: &[f64]) -> Vec<f64> {
        let mut order: Vec<usize> = (0..p.len()).filter(|&i| !p[i].is_nan()).collect();
        order.sort_by(|&a, &b| p[a].total_cmp(&p[b]).then(a.cmp(&b)));
        let m = order.len() as f64;
        let mut out = vec![f64::NAN; p.len()];
        match self {
            Self::Holm => {
                let mut running = 0.0_f64;
                for (j, &i) in order.iter().enumerate() {
                    running = running.max(((m - j as f64) * p[i]).min(1.0));
                    out[i] = running;
                }
            }
            Self::BenjaminiHochberg => {
                let mut running = 1.0_f64;
                for (j, &i) in order.iter().enumerate().rev() {
                    running = running.min((m * p[i] / (j + 1) as f64).min(1.0));
                    out[i] = running;
                }
            }
        }
        out
    }
}

impl std::fmt::Display for Correction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Correction {
    type Err = String;

    /// `holm` or `bh`.
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|c| c.flag() == s)
            .ok_or_else(|| format!("'{s}': expected `holm` or `bh`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f64], b: &[f64]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!(
                (x.is_nan() && y.is_nan()) || (x - y).abs() < 1e-12,
                "{a:?} vs {b:?}"
            );
        }
    }

    /// By hand: p sorted 0.01, 0.02, 0.03, 0.04 (m = 4). Holm: 4·0.01 = 0.04, 3·0.02 = 0.06,
    /// 2·0.03 = 0.06, 1·0.04 = 0.04 → running max 0.04, 0.06, 0.06, 0.06. BH: 4·0.04/4 = 0.04,
    /// 4·0.03/3 = 0.04, 4·0.02/2 = 0.04, 4·0.01/1 = 0.04 → running min from the top: all 0.04.
    #[test]
    fn holm_and_bh_by_hand() {
        let p = [0.04, 0.01, 0.03, 0.02];
        close(&Correction::Holm.adjust(&p), &[0.06, 0.04, 0.06, 0.06]);
        close(
            &Correction::BenjaminiHochberg.adjust(&p),
            &[0.04, 0.04, 0.04, 0.04],
        );
    }

    /// Ties and monotonicity, with a NaN left out of the family (m = 5). Sorted: 0.001, 0.01,
    /// 0.01, 0.2, 0.5. Holm: 5·0.001 = 0.005, 4·0.01 = 0.04, 3·0.01 = 0.03 → 0.04 (running
    /// max), 2·0.2 = 0.4, 1·0.5 = 0.5. BH: 5·0.5/5 = 0.5, 5·0.2/4 = 0.25, 5·0.01/3 = 0.01667,
    /// 5·0.01/2 = 0.025 → 0.01667 (running min), 5·0.001/1 = 0.005. Tied raw p-values get equal
    /// adjusted ones; the adjusted p-values keep the order of the raw ones.
    #[test]
    fn ties_nan_and_monotonicity() {
        let p = [0.5, 0.01, f64::NAN, 0.001, 0.2, 0.01];
        let holm = Correction::Holm.adjust(&p);
        close(&holm, &[0.5, 0.04, f64::NAN, 0.005, 0.4, 0.04]);
        let bh = Correction::BenjaminiHochberg.adjust(&p);
        let third = 0.05 / 3.0;
        close(&bh, &[0.5, third, f64::NAN, 0.005, 0.25, third]);
        for adjusted in [&holm, &bh] {
            for (i, j) in [(3, 1), (1, 4), (4, 0)] {
                assert!(p[i] <= p[j] && adjusted[i] <= adjusted[j], "{adjusted:?}");
            }
            assert!(p
                .iter()
                .zip(adjusted.iter())
                .all(|(r, a)| r.is_nan() || a >= r));
        }
    }

    /// `scipy.stats.false_discovery_control(p)` (SciPy 1.17, method "bh") and statsmodels'
    /// `multipletests(p, method="holm")` give these for p = [0.005, 0.009, 0.019, 0.022, 0.051,
    /// 0.101, 0.361, 0.387] (checked by hand below: Holm 8·0.005, 7·0.009, 6·0.019, 5·0.022 =
    /// 0.04, 0.063, 0.114, 0.11 → 0.114, then 4·0.051 = 0.204, …; capped at 1).
    #[test]
    fn a_longer_family_as_scipy() {
        let p = [0.005, 0.009, 0.019, 0.022, 0.051, 0.101, 0.361, 0.387];
        close(
            &Correction::Holm.adjust(&p),
            &[0.04, 0.063, 0.114, 0.114, 0.204, 0.303, 0.722, 0.722],
        );
        close(
            &Correction::BenjaminiHochberg.adjust(&p),
            &[
                0.036,
                0.036,
                0.044,
                0.044,
                0.0816,
                0.13466666666666666,
                0.387,
                0.387,
            ],
        );
        assert_eq!(Correction::Holm.adjust(&[0.9, 0.8]), [1.0, 1.0]);
        assert!(Correction::Holm.adjust(&[]).is_empty());
    }

    #[test]
    fn names_round_trip() {
        for c in Correction::ALL {
            assert_eq!(c.flag().parse::<Correction>(), Ok(c));
        }
        assert!("bonferroni".parse::<Correction>().is_err());
    }
}
