//! Paired comparison of per-sample metric values of a base and a tuned model (method.md §5):
//! means and medians, relative change, share of samples where tuned > base, the Wilcoxon
//! signed-rank test and a seeded percentile-bootstrap confidence interval of the mean difference.
//!
//! [`wilcoxon`] reproduces `scipy.stats.wilcoxon(x, y)` of SciPy 1.17 with its defaults
//! (`zero_method="wilcox"`, `correction=False`, `alternative="two-sided"`, `method="auto"`).

use crate::attribution::correction::Correction;
use crate::attribution::metrics::Metric;
use crate::side::Side;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF as _, Normal};
use statrs::function::factorial::ln_binomial;

/// Settings of the comparison, recorded in every output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareOptions {
    /// Number of bootstrap resamples (default 10 000; must be ≥ 1).
    pub bootstrap_resamples: usize,
    /// Confidence level of the bootstrap interval (default 0.95; must lie in (0, 1)).
    pub confidence: f64,
    /// Seed of the bootstrap's `StdRng` (default 42).
    pub seed: u64,
    /// How the p-values of a family of tests are adjusted (default Holm–Bonferroni; absent
    /// from options recorded before the correction existed, which read as the default).
    #[serde(default)]
    pub correction: Correction,
}

impl Default for CompareOptions {
    fn default() -> Self {
        Self {
            bootstrap_resamples: 10_000,
            confidence: 0.95,
            seed: 42,
            correction: Correction::Holm,
        }
    }
}

impl CompareOptions {
    /// The significance level that conclusions test adjusted p-values against: one minus
    /// the confidence of the intervals (0.05 by default), so that a mark and an interval
    /// speak at one level.
    pub fn significance_level(&self) -> f64 {
        ((1.0 - self.confidence) * 1e6).round() / 1e6
    }
}

/// Why a comparison could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CompareError {
    /// Base and tuned hold different numbers of samples.
    #[error(
        "metric {metric:?}: base has {base} values but tuned has {tuned}; they must be paired"
    )]
    LengthMismatch {
        /// The metric compared.
        metric: String,
        /// Number of base values.
        base: usize,
        /// Number of tuned values.
        tuned: usize,
    },
    /// No samples at all.
    #[error("metric {metric:?}: no samples to compare (need at least 1)")]
    Empty {
        /// The metric compared.
        metric: String,
    },
    /// A value is NaN or infinite.
    #[error("metric {metric:?}: {side} value at sample {index} is not finite ({value})")]
    NonFinite {
        /// The metric compared.
        metric: String,
        /// The side the value belongs to.
        side: Side,
        /// Index of the offending sample.
        index: usize,
        /// The offending value.
        value: f64,
    },
    /// The options are out of range.
    #[error("invalid comparison options: {0}")]
    InvalidOptions(String),
}

/// How a Wilcoxon p-value was obtained (SciPy's `method="auto"` choice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PMethod {
    /// Exact null distribution of the signed-rank statistic: n ≤ 50, no ties, no zero differences.
    Exact,
    /// All 2ⁿ sign flips enumerated (SciPy's `PermutationMethod`): n ≤ 13 with ties or zeros.
    Permutation,
    /// Normal approximation with tie correction, no continuity correction: every other case.
    Normal,
}

impl PMethod {
    /// `"exact"`, `"permutation"` or `"normal"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Permutation => "permutation",
            Self::Normal => "normal",
        }
    }
}

/// Result of the two-sided Wilcoxon signed-rank test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Wilcoxon {
    /// min(R⁺, R⁻) over the non-zero differences (average ranks for ties).
    pub statistic: f64,
    /// Two-sided p-value; NaN only when every difference is 0 and n > 13 (as SciPy).
    #[serde(with = "nan_as_null")]
    pub p_value: f64,
    /// Whether the p-value is exact (method [`PMethod::Exact`] or [`PMethod::Permutation`]).
    pub exact: bool,
    /// How the p-value was obtained.
    pub method: PMethod,
}

/// Paired comparison of one metric, base vs tuned: a metric of score vectors ([`Metric`]) or
/// another per-sample quantity (such as a faithfulness level's circuit size).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedStat<M = Metric> {
    /// The metric.
    pub metric: M,
    /// Number of pairs.
    pub n: usize,
    /// Mean of the base values.
    pub base_mean: f64,
    /// Median of the base values.
    pub base_median: f64,
    /// Mean of the tuned values.
    pub tuned_mean: f64,
    /// Median of the tuned values.
    pub tuned_median: f64,
    /// Mean of the per-sample differences tuned − base.
    pub mean_diff: f64,
    /// Median of the per-sample differences tuned − base.
    pub median_diff: f64,
    /// (tuned_mean − base_mean) / |base_mean|; NaN (JSON `null`) when base_mean is 0.
    #[serde(with = "nan_as_null")]
    pub relative_change: f64,
    /// Share of pairs with tuned > base.
    pub share_tuned_greater: f64,
    /// Wilcoxon statistic min(R⁺, R⁻).
    pub wilcoxon_statistic: f64,
    /// Two-sided Wilcoxon p-value; NaN (JSON `null`) when all differences are 0 and n > 13.
    #[serde(with = "nan_as_null")]
    pub p_value: f64,
    /// How the p-value was obtained.
    pub p_method: PMethod,
    /// The p-value adjusted for its family of tests ([`adjust`]); equal to `p_value` for a
    /// test of its own, NaN (JSON `null`) when `p_value` is, and when read from a file written
    /// before the adjustment was recorded.
    #[serde(with = "nan_as_null", default = "not_adjusted")]
    pub p_adjusted: f64,
    /// Lower end of the percentile-bootstrap interval of the mean difference.
    pub ci_low: f64,
    /// Upper end of the percentile-bootstrap interval of the mean difference.
    pub ci_high: f64,
}

/// Compare `base` and `tuned` (paired by index) for `metric`.
///
/// The bootstrap draws `opts.bootstrap_resamples` resamples of the differences with replacement
/// from `StdRng::seed_from_u64(opts.seed)` and takes the (1 ± confidence)/2 quantiles of their
/// means with linear interpolation (NumPy's default). Equal inputs and seed give equal intervals
/// (for one version of `rand`).
pub fn paired<M: std::fmt::Display>(
    metric: M,
    base: &[f64],
    tuned: &[f64],
    opts: &CompareOptions,
) -> Result<PairedStat<M>, CompareError> {
    validate(&metric.to_string(), base, tuned)?;
    if opts.bootstrap_resamples == 0 {
        return Err(CompareError::InvalidOptions(
            "bootstrap_resamples must be at least 1".to_owned(),
        ));
    }
    if !(opts.confidence > 0.0 && opts.confidence < 1.0) {
        return Err(CompareError::InvalidOptions(format!(
            "confidence must lie in (0, 1), got {}",
            opts.confidence
        )));
    }
    let diffs: Vec<f64> = tuned.iter().zip(base).map(|(t, b)| t - b).collect();
    let (base_mean, tuned_mean, mean_diff) = (mean(base), mean(tuned), mean(&diffs));
    let test = signed_rank(&diffs);
    let (ci_low, ci_high) = bootstrap_ci(&diffs, mean_diff, opts);
    let greater = tuned.iter().zip(base).filter(|(t, b)| t > b).count();
    Ok(PairedStat {
        metric,
        n: base.len(),
        base_mean,
        base_median: median(base),
        tuned_mean,
        tuned_median: median(tuned),
        mean_diff,
        median_diff: median(&diffs),
        relative_change: if base_mean == 0.0 {
            f64::NAN
        } else {
            (tuned_mean - base_mean) / base_mean.abs()
        },
        share_tuned_greater: greater as f64 / base.len() as f64,
        wilcoxon_statistic: test.statistic,
        p_value: test.p_value,
        p_method: test.method,
        p_adjusted: test.p_value,
        ci_low,
        ci_high,
    })
}

/// Adjust the p-values of `stats`, one family of tests, with `correction`: each statistic's
/// `p_adjusted` is set from every `p_value` of the family. Returns the family's size (the
/// tests with a p-value).
pub fn adjust<'a, M: 'a>(
    stats: impl IntoIterator<Item = &'a mut PairedStat<M>>,
    correction: Correction,
) -> usize {
    let mut family: Vec<&mut PairedStat<M>> = stats.into_iter().collect();
    let raw: Vec<f64> = family.iter().map(|s| s.p_value).collect();
    for (s, p) in family.iter_mut().zip(correction.adjust(&raw)) {
        s.p_adjusted = p;
    }
    raw.iter().filter(|p| !p.is_nan()).count()
}

/// What a statistic read from a file without an adjusted p-value holds: NaN, not a number
/// that could be mistaken for one.
fn not_adjusted() -> f64 {
    f64::NAN
}

/// The mean of `values` and its percentile-bootstrap interval, drawn as [`paired`] draws the
/// interval of a mean difference (same resamples, seed and confidence).
pub fn mean_interval(
    metric: &str,
    values: &[f64],
    opts: &CompareOptions,
) -> Result<(f64, f64, f64), CompareError> {
    validate(metric, values, values)?;
    let center = mean(values);
    let (low, high) = bootstrap_ci(values, center, opts);
    Ok((center, low, high))
}

/// [`mean_interval`] of many samples at once: the resample indices are drawn once per sample
/// length and shared, so that each interval equals the one [`mean_interval`] gives alone (the
/// same seed draws the same indices) at the cost of one draw for all. Each sample keeps its own
/// result (an empty sample or one with a value that is not finite is an error alone).
pub fn mean_intervals(
    metric: &str,
    samples: &[Vec<f64>],
    opts: &CompareOptions,
) -> Vec<Result<(f64, f64, f64), CompareError>> {
    let mut draws: std::collections::HashMap<usize, Vec<u32>> = std::collections::HashMap::new();
    samples
        .iter()
        .map(|values| {
            validate(metric, values, values)?;
            let indices = draws
                .entry(values.len())
                .or_insert_with(|| resample_indices(values.len(), opts));
            let center = mean(values);
            let (low, high) = interval_over(values, center, indices, opts);
            Ok((center, low, high))
        })
        .collect()
}

/// Two-sided Wilcoxon signed-rank test of the differences `x − y`, as
/// `scipy.stats.wilcoxon(x, y)` with SciPy 1.17's defaults.
///
/// Zero differences are dropped. `method="auto"` is resolved as SciPy does, where n counts the
/// pairs *including* zero differences: n > 50 → normal approximation; otherwise no ties among
/// the |d| and no zeros → exact distribution; otherwise n ≤ 13 → all 2ⁿ sign flips; otherwise
/// the normal approximation (with tie correction, without continuity correction).
/// Errors name the metric `"wilcoxon"`.
pub fn wilcoxon(x: &[f64], y: &[f64]) -> Result<Wilcoxon, CompareError> {
    validate("wilcoxon", x, y)?;
    let diffs: Vec<f64> = x.iter().zip(y).map(|(a, b)| a - b).collect();
    Ok(signed_rank(&diffs))
}

/// Exact two-sided McNemar test of a change in accuracy on paired questions: of the
/// `only_base + only_tuned` questions exactly one model got right, the chance under "neither is
/// better" (each such question equally likely to favour either) of a split at least as uneven,
/// i.e. `scipy.stats.binomtest(only_tuned, only_base + only_tuned, 0.5).pvalue`. 1 when no
/// question is discordant.
pub fn mcnemar_exact(only_base: usize, only_tuned: usize) -> f64 {
    let n = only_base + only_tuned;
    let low = only_base.min(only_tuned);
    if n == 0 || 2 * low == n {
        return 1.0;
    }
    // Binomial(n, ½) is symmetric: the two tails are equal, each P(X ≤ low).
    let ln_half = 0.5f64.ln();
    let tail: f64 = (0..=low)
        .map(|k| (ln_binomial(n as u64, k as u64) + n as f64 * ln_half).exp())
        .sum();
    (2.0 * tail).min(1.0)
}

/// Equal, non-zero lengths and finite values.
fn validate(metric: &str, base: &[f64], tuned: &[f64]) -> Result<(), CompareError> {
    if base.len() != tuned.len() {
        return Err(CompareError::LengthMismatch {
            metric: metric.to_owned(),
            base: base.len(),
            tuned: tuned.len(),
        });
    }
    if base.is_empty() {
        return Err(CompareError::Empty {
            metric: metric.to_owned(),
        });
    }
    for (side, values) in [(Side::Base, base), (Side::Tuned, tuned)] {
        if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(CompareError::NonFinite {
                metric: metric.to_owned(),
                side,
                index,
                value,
            });
        }
    }
    Ok(())
}

/// The signed-rank test of finite differences `d` (see [`wilcoxon`]).
fn signed_rank(d: &[f64]) -> Wilcoxon {
    let mut nonzero: Vec<f64> = d.iter().copied().filter(|&v| v != 0.0).collect();
    let n_zero = d.len() - nonzero.len();
    nonzero.sort_by(|a, b| a.abs().total_cmp(&b.abs()));
    let count = nonzero.len();

    // Ranks are doubled so that average ranks of ties stay integers: a group of c equal |d|
    // starting at 0-based position i has rank i + (c + 1) / 2, i.e. doubled 2i + c + 1.
    let mut doubled_ranks = Vec::with_capacity(count);
    let (mut r_plus2, mut tie_correct, mut has_ties) = (0_usize, 0.0_f64, false);
    let mut i = 0;
    while let Some(&first) = nonzero.get(i) {
        let c = nonzero.get(i..).map_or(1, |rest| {
            rest.iter().take_while(|v| v.abs() == first.abs()).count()
        });
        let rank2 = 2 * i + c + 1;
        for v in nonzero.iter().skip(i).take(c) {
            doubled_ranks.push(rank2);
            if *v > 0.0 {
                r_plus2 += rank2;
            }
        }
        if c > 1 {
            has_ties = true;
            let cf = c as f64;
            tie_correct += cf * cf * cf - cf;
        }
        i += c;
    }
    let r_plus = r_plus2 as f64 / 2.0;
    let r_minus = (count * (count + 1) - r_plus2) as f64 / 2.0;

    let method = if d.len() > 50 {
        PMethod::Normal
    } else if !has_ties && n_zero == 0 {
        PMethod::Exact
    } else if d.len() <= 13 {
        PMethod::Permutation
    } else {
        PMethod::Normal
    };
    let p_value = match method {
        PMethod::Normal => normal_p(count, r_plus, tie_correct),
        PMethod::Exact | PMethod::Permutation => enumerated_p(&doubled_ranks, r_plus2),
    };
    Wilcoxon {
        statistic: r_plus.min(r_minus),
        p_value,
        exact: method != PMethod::Normal,
        method,
    }
}

/// 2 · Φ(−|z|) with z = (R⁺ − n(n+1)/4) / se, se² = (n(n+1)(2n+1) − Σ(t³ − t)/2) / 24,
/// in SciPy's order of operations; NaN when n = 0.
fn normal_p(count: usize, r_plus: f64, tie_correct: f64) -> f64 {
    if count == 0 {
        return f64::NAN;
    }
    let n = count as f64;
    let mn = n * (n + 1.0) * 0.25;
    let se = n * (n + 1.0) * (2.0 * n + 1.0);
    let se = ((se - tie_correct / 2.0) / 24.0).sqrt();
    let z = (r_plus - mn) / se;
    let normal = Normal::standard();
    2.0 * normal.cdf(-z.abs())
}

/// min(1, 2 · min(P(R⁺ ≤ r), P(R⁺ ≥ r))) under the null distribution of R⁺ over all sign
/// flips of the non-zero differences (ranks doubled). With distinct ranks this is the exact
/// signed-rank distribution; with ties it is SciPy's exhaustive permutation test (zero
/// differences only duplicate each flip, which leaves the proportions unchanged). The counts
/// and 2ⁿ are exact integers, so the result is the same dyadic number SciPy computes.
fn enumerated_p(doubled_ranks: &[usize], r_plus2: usize) -> f64 {
    let max_sum: usize = doubled_ranks.iter().sum();
    // ways[s]: number of subsets of the ranks whose doubled sum is s (at most 2⁵⁰ ≤ u64).
    let mut ways = vec![0_u64; max_sum + 1];
    if let Some(w) = ways.first_mut() {
        *w = 1;
    }
    let mut reached = 0;
    for &r in doubled_ranks {
        reached += r;
        for s in (r..=reached).rev() {
            let add = ways.get(s - r).copied().unwrap_or(0);
            if let Some(w) = ways.get_mut(s) {
                *w += add;
            }
        }
    }
    let total: u64 = 1_u64 << doubled_ranks.len();
    let below: u64 = ways.iter().take(r_plus2 + 1).sum();
    let above: u64 = ways.iter().skip(r_plus2).sum();
    let p = 2.0 * below.min(above) as f64 / total as f64;
    p.min(1.0)
}

/// Percentile-bootstrap interval of the mean of `diffs` (whose mean is `center`). Resample
/// means are formed as `center + mean(d − center)`, so constant differences give exactly
/// `center` at both ends.
fn bootstrap_ci(diffs: &[f64], center: f64, opts: &CompareOptions) -> (f64, f64) {
    interval_over(diffs, center, &resample_indices(diffs.len(), opts), opts)
}

/// The indices of `opts.bootstrap_resamples` resamples of `n` values, `n` a resample, drawn in
/// order from the seed.
fn resample_indices(n: usize, opts: &CompareOptions) -> Vec<u32> {
    let mut rng = StdRng::seed_from_u64(opts.seed);
    (0..opts.bootstrap_resamples * n)
        .map(|_| rng.random_range(0..n) as u32)
        .collect()
}

/// The percentile interval of the mean of `values` (whose mean is `center`) over the resamples
/// of [`resample_indices`].
fn interval_over(
    values: &[f64],
    center: f64,
    indices: &[u32],
    opts: &CompareOptions,
) -> (f64, f64) {
    let n = values.len();
    let centered: Vec<f64> = values.iter().map(|v| v - center).collect();
    let mut means: Vec<f64> = indices
        .chunks(n.max(1))
        .map(|draw| {
            let sum: f64 = draw
                .iter()
                .map(|&i| centered.get(i as usize).copied().unwrap_or(0.0))
                .sum();
            center + sum / n as f64
        })
        .collect();
    interval_of(&mut means, opts)
}

/// The (1 ± confidence)/2 quantiles of resample `means` (sorted here).
fn interval_of(means: &mut [f64], opts: &CompareOptions) -> (f64, f64) {
    means.sort_by(f64::total_cmp);
    let alpha = 1.0 - opts.confidence;
    (
        quantile_sorted(means, alpha / 2.0),
        quantile_sorted(means, 1.0 - alpha / 2.0),
    )
}

/// Quantile `q` of sorted `x` with linear interpolation (NumPy's default); NaN when empty.
fn quantile_sorted(x: &[f64], q: f64) -> f64 {
    let Some(last) = x.len().checked_sub(1) else {
        return f64::NAN;
    };
    let h = last as f64 * q;
    let lo = (h.floor() as usize).min(last);
    let hi = (lo + 1).min(last);
    let (a, b) = (x.get(lo).copied(), x.get(hi).copied());
    match (a, b) {
        (Some(a), Some(b)) => a + (h - lo as f64) * (b - a),
        _ => f64::NAN,
    }
}

/// Arithmetic mean; NaN when empty.
fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

/// Median (mean of the two middle values for even n); NaN when empty.
fn median(x: &[f64]) -> f64 {
    let mut sorted = x.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    let upper = sorted.get(mid).copied().unwrap_or(f64::NAN);
    if sorted.len() % 2 == 1 {
        upper
    } else {
        let lower = mid.checked_sub(1).and_then(|i| sorted.get(i)).copied();
        (lower.unwrap_or(f64::NAN) + upper) / 2.0
    }
}

/// Serde for `f64` fields that may be NaN: written as JSON `null`, and `null` read back as NaN.
mod nan_as_null {
    use serde::{Deserialize as _, Deserializer, Serializer};

    /// Finite values as numbers, NaN and ±∞ as `null`.
    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        if value.is_finite() {
            serializer.serialize_f64(*value)
        } else {
            serializer.serialize_none()
        }
    }

    /// A number, or `null` as NaN.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
    }
}
