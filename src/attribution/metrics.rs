//! Metrics of one edge-score vector (method.md §5): intensity, entropy, kurtosis, Gini and
//! concentration of |s|; and relative intensity (method.md §7, "Saturation"), the intensity
//! divided by the loss L of the sample the vector was scored on.
//!
//! Everything is accumulated in `f64`. Non-finite scores (NaN, ±∞) are skipped: every metric is
//! computed over the finite values only, and `n` below means their number. No input panics:
//! an empty (or all non-finite) vector and an all-zero vector give 0 for every metric, a
//! vector with zero variance gives kurtosis 0 (SciPy would return NaN), and a loss that is 0,
//! negative or not finite gives relative intensity 0 (see [`relative_intensity`]).

use serde::{Deserialize, Serialize};

/// Choices of method.md §5, recorded in every output.
/// The default is signed kurtosis and mass entropy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricOptions {
    /// Kurtosis of |s| instead of the signed scores s (default: signed).
    pub kurtosis_of_abs: bool,
    /// `None` (default): entropy of the mass p_e = |s_e| / Σ|s|, normalised by ln(n).
    /// `Some(b)`: entropy of the histogram of the signed values over `b` equal-width bins between
    /// their minimum and maximum (NumPy's `histogram` binning), normalised by ln(b); `Some(0)` is
    /// treated as one bin.
    pub entropy_bins: Option<usize>,
}

/// Metrics of one score vector. Every value is finite.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Activation intensity: mean |s|.
    pub intensity: f64,
    /// Relative intensity: `intensity / L`, L the loss (per answer token) of the scored sample,
    /// or the mean of the samples' losses for a mean vector; scale-free across models of
    /// different confidence. 0 when L is not a positive finite number (see
    /// [`relative_intensity`]). Absent from files written before it existed (read as 0; a run's
    /// loader derives it again from `intensity` and the stored losses).
    #[serde(default)]
    pub relative_intensity: f64,
    /// Entropy in nats (mass or histogram entropy, see [`MetricOptions::entropy_bins`]).
    pub entropy: f64,
    /// `entropy / ln(n)` (histogram entropy: `/ ln(bins)`); 0 when the divisor is 0.
    pub entropy_normalized: f64,
    /// Fisher kurtosis m4/m2² − 3 with population (biased) moments, as
    /// `scipy.stats.kurtosis` by default; 0 when the variance is 0.
    pub kurtosis: f64,
    /// Gini coefficient of |s| (0: all equal, → 1: one edge holds everything).
    pub gini: f64,
    /// Share of Σ|s| held by the ⌈1% · n⌉ largest |s|.
    pub top1: f64,
    /// Share of Σ|s| held by the ⌈5% · n⌉ largest |s|.
    pub top5: f64,
    /// Share of Σ|s| held by the ⌈10% · n⌉ largest |s|.
    pub top10: f64,
    /// Smallest number of edges (largest |s| first) whose |s| sum reaches 50% of Σ|s|.
    pub edges50: f64,
    /// Smallest number of edges (largest |s| first) whose |s| sum reaches 90% of Σ|s|.
    pub edges90: f64,
}

/// What a larger value of a metric says about a score vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HigherMeans {
    /// More attribution overall.
    Stronger,
    /// Attribution spread over more edges.
    MoreSpread,
    /// Attribution held by fewer edges.
    MoreConcentrated,
}

impl HigherMeans {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Stronger => "stronger edges",
            Self::MoreSpread => "more diverse (spread over more edges)",
            Self::MoreConcentrated => "more concentrated (fewer edges hold the attribution)",
        }
    }
}

/// One metric of a score vector (method.md §5): its name in every file, report and view, its
/// definition and what a higher value means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Intensity,
    RelativeIntensity,
    Entropy,
    EntropyNormalized,
    Kurtosis,
    Gini,
    Top1,
    Top5,
    Top10,
    Edges50,
    Edges90,
}

impl Metric {
    /// Every metric, in the order of [`Metrics::values`] and of every table.
    pub const ALL: [Self; 11] = [
        Self::Intensity,
        Self::RelativeIntensity,
        Self::Entropy,
        Self::EntropyNormalized,
        Self::Kurtosis,
        Self::Gini,
        Self::Top1,
        Self::Top5,
        Self::Top10,
        Self::Edges50,
        Self::Edges90,
    ];

    /// The study's headline metrics: activation intensity and diversity.
    pub const HEADLINE: [Self; 3] = [Self::Intensity, Self::Entropy, Self::Kurtosis];

    /// Name in files, tables and figures.
    pub fn name(self) -> &'static str {
        match self {
            Self::Intensity => "intensity",
            Self::RelativeIntensity => "relative_intensity",
            Self::Entropy => "entropy",
            Self::EntropyNormalized => "entropy_normalized",
            Self::Kurtosis => "kurtosis",
            Self::Gini => "gini",
            Self::Top1 => "top1",
            Self::Top5 => "top5",
            Self::Top10 => "top10",
            Self::Edges50 => "edges50",
            Self::Edges90 => "edges90",
        }
    }

    /// One-line definition.
    pub fn definition(self) -> &'static str {
        match self {
            Self::Intensity => "activation intensity: mean |s| over the edges",
            Self::RelativeIntensity => "mean |s| divided by the sample's loss L (per answer token)",
            Self::Entropy => "entropy (nats) of the |s| mass distribution, or of a histogram of s",
            Self::EntropyNormalized => "entropy divided by ln(edges) (or ln(bins))",
            Self::Kurtosis => "Fisher kurtosis of the scores (population moments)",
            Self::Gini => "Gini coefficient of |s|",
            Self::Top1 => "share of Σ|s| held by the largest 1% of edges",
            Self::Top5 => "share of Σ|s| held by the largest 5% of edges",
            Self::Top10 => "share of Σ|s| held by the largest 10% of edges",
            Self::Edges50 => "fewest edges (largest |s| first) holding 50% of Σ|s|",
            Self::Edges90 => "fewest edges (largest |s| first) holding 90% of Σ|s|",
        }
    }

    /// What a higher value means.
    pub fn higher_means(self) -> HigherMeans {
        match self {
            Self::Intensity | Self::RelativeIntensity => HigherMeans::Stronger,
            Self::Entropy | Self::EntropyNormalized | Self::Edges50 | Self::Edges90 => {
                HigherMeans::MoreSpread
            }
            Self::Kurtosis | Self::Gini | Self::Top1 | Self::Top5 | Self::Top10 => {
                HigherMeans::MoreConcentrated
            }
        }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Metric {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|m| m.name()).collect();
                format!("unknown metric '{s}' (one of {})", names.join(", "))
            })
    }
}

impl Metrics {
    /// All values, in the order of [`Metric::ALL`].
    pub fn values(&self) -> [f64; Metric::ALL.len()] {
        Metric::ALL.map(|m| self.get(m))
    }

    /// The value of one metric.
    pub fn get(&self, metric: Metric) -> f64 {
        match metric {
            Metric::Intensity => self.intensity,
            Metric::RelativeIntensity => self.relative_intensity,
            Metric::Entropy => self.entropy,
            Metric::EntropyNormalized => self.entropy_normalized,
            Metric::Kurtosis => self.kurtosis,
            Metric::Gini => self.gini,
            Metric::Top1 => self.top1,
            Metric::Top5 => self.top5,
            Metric::Top10 => self.top10,
            Metric::Edges50 => self.edges50,
            Metric::Edges90 => self.edges90,
        }
    }
}

/// Relative intensity (method.md §7): `intensity / loss`, where `loss` is the sample's loss per
/// answer token. A saturated sample's loss approaches 0 and its scores with it, so the ratio
/// compares models of different confidence on one scale. Defined as 0 when `loss` is 0,
/// negative or not finite (a loss per token is never negative), so that no sample divides by 0,
/// and when the quotient overflows (a loss below ~1e-300).
pub fn relative_intensity(intensity: f64, loss: f64) -> f64 {
    let r = intensity / loss;
    if loss.is_finite() && loss > 0.0 && r.is_finite() {
        r
    } else {
        0.0
    }
}

/// Metrics of `scores` (finite values only; see the module docs for the edge cases), scored on
/// a sample whose loss per answer token is `loss` (for a mean vector: the mean of the samples'
/// losses), which only [`Metrics::relative_intensity`] uses.
pub fn metrics(scores: &[f32], loss: f64, opts: &MetricOptions) -> Metrics {
    let signed: Vec<f64> = scores
        .iter()
        .filter(|s| s.is_finite())
        .map(|&s| f64::from(s))
        .collect();
    // |s|, largest first; `total` is summed in this order so the cumulative sums end at it.
    let mut abs: Vec<f64> = signed.iter().map(|s| s.abs()).collect();
    abs.sort_by(|a, b| b.total_cmp(a));
    let n = abs.len();
    let total: f64 = abs.iter().sum();

    let (entropy, entropy_normalized) = match opts.entropy_bins {
        None => mass_entropy(&abs, total),
        Some(bins) => histogram_entropy(&signed, bins.max(1)),
    };
    let kurtosis = if opts.kurtosis_of_abs {
        fisher_kurtosis(&abs)
    } else {
        fisher_kurtosis(&signed)
    };
    let intensity = if n == 0 { 0.0 } else { total / n as f64 };
    Metrics {
        intensity,
        relative_intensity: relative_intensity(intensity, loss),
        entropy,
        entropy_normalized,
        kurtosis,
        gini: gini_desc(&abs, total),
        top1: top_share(&abs, total, 1),
        top5: top_share(&abs, total, 5),
        top10: top_share(&abs, total, 10),
        edges50: edges_to_reach(&abs, total, 0.5),
        edges90: edges_to_reach(&abs, total, 0.9),
    }
}

/// (H, H / ln n) of p = |s| / Σ|s| (as `scipy.stats.entropy`); zeros contribute nothing.
fn mass_entropy(abs: &[f64], total: f64) -> (f64, f64) {
    if total <= 0.0 {
        return (0.0, 0.0);
    }
    let h: f64 = abs
        .iter()
        .map(|&a| a / total)
        .filter(|&p| p > 0.0)
        .map(|p| -p * p.ln())
        .sum();
    (h, normalize(h, abs.len()))
}

/// (H, H / ln bins) of the histogram of `values` over `bins` equal-width bins from min to max,
/// binned like `numpy.histogram` (left-closed bins, the last one closed on both sides).
fn histogram_entropy(values: &[f64], bins: usize) -> (f64, f64) {
    let (Some(&lo), Some(&hi)) = (
        values.iter().min_by(|a, b| a.total_cmp(b)),
        values.iter().max_by(|a, b| a.total_cmp(b)),
    ) else {
        return (0.0, 0.0);
    };
    if hi <= lo {
        return (0.0, 0.0);
    }
    let width = hi - lo;
    // Bin edges as numpy.linspace(lo, hi, bins + 1) makes them.
    let step = width / bins as f64;
    let edge = |i: usize| if i == bins { hi } else { i as f64 * step + lo };
    let mut counts = vec![0_usize; bins];
    for &v in values {
        let mut i = (((v - lo) / width) * bins as f64) as usize;
        i = i.min(bins - 1);
        if v < edge(i) && i > 0 {
            i -= 1;
        } else if v >= edge(i + 1) && i + 1 < bins {
            i += 1;
        }
        if let Some(c) = counts.get_mut(i) {
            *c += 1;
        }
    }
    let n = values.len() as f64;
    let h: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.ln()
        })
        .sum();
    (h, normalize(h, bins))
}

/// h / ln(k), or 0 when k ≤ 1.
fn normalize(h: f64, k: usize) -> f64 {
    if k <= 1 {
        0.0
    } else {
        h / (k as f64).ln()
    }
}

/// m4 / m2² − 3 with population moments; 0 where SciPy's zero-variance test
/// (m2 ≤ (ε · mean)²) holds.
fn fisher_kurtosis(x: &[f64]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let (mut m2, mut m4) = (0.0, 0.0);
    for &v in x {
        let d2 = (v - mean) * (v - mean);
        m2 += d2;
        m4 += d2 * d2;
    }
    m2 /= n;
    m4 /= n;
    if m2 <= (f64::EPSILON * mean).powi(2) {
        0.0
    } else {
        m4 / (m2 * m2) - 3.0
    }
}

/// Gini coefficient of `desc` (sorted largest first): with x ascending and i = 1..n,
/// G = 2 Σ i·x_i / (n Σ x) − (n + 1) / n.
fn gini_desc(desc: &[f64], total: f64) -> f64 {
    let n = desc.len();
    if n == 0 || total <= 0.0 {
        return 0.0;
    }
    let weighted: f64 = desc
        .iter()
        .enumerate()
        .map(|(j, &x)| (n - j) as f64 * x)
        .sum();
    let nf = n as f64;
    (2.0 * weighted / (nf * total) - (nf + 1.0) / nf).max(0.0)
}

/// Share of `total` held by the ⌈percent · n / 100⌉ largest values of `desc`.
fn top_share(desc: &[f64], total: f64, percent: usize) -> f64 {
    if total <= 0.0 {
        return 0.0;
    }
    let k = (desc.len() * percent).div_ceil(100);
    desc.iter().take(k).sum::<f64>() / total
}

/// Smallest k with Σ of the k largest values ≥ `fraction` · total. The target is lowered by
/// 1e-12 · total so that summation rounding cannot push the answer one edge up.
fn edges_to_reach(desc: &[f64], total: f64, fraction: f64) -> f64 {
    if total <= 0.0 {
        return 0.0;
    }
    let target = fraction * total - 1e-12 * total;
    let mut cum = 0.0;
    for (k, &x) in desc.iter().enumerate() {
        cum += x;
        if cum >= target {
            return (k + 1) as f64;
        }
    }
    desc.len() as f64
}
