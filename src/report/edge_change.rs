//! Which edges changed from base to tuned (method.md §8): for every real edge, the signed change
//! of its mean score Δ = S̄_tuned − S̄_base, the change in importance Δ|S| = |S̄_tuned| − |S̄_base|,
//! and a paired test over the questions of the importance |S| itself: the Wilcoxon signed-rank
//! test of |S_tuned| against |S_base|, question by question, with the Benjamini–Hochberg
//! false-discovery rate across all edges. The most changed edges (smallest adjusted p, then
//! largest per-question Δ|S|) keep a bootstrap interval of the per-question Δ|S| and make the
//! "most changed edges" table.

use super::comparison::pair_by_id;
use super::run::{Run, RunError};
use super::table::{Cell, Table};
use crate::attribution::compare::{mean_intervals, wilcoxon, CompareError, CompareOptions};
use crate::attribution::correction::Correction;
use serde::{Deserialize, Serialize};

/// Edges kept in the table (and in `most_changed_edges.csv`), each with its interval.
pub const TOP: usize = 100;

/// The false-discovery rate at which an edge counts as changed.
pub const FDR: f64 = 0.05;

/// What is tested, in words (the table's caption, the report, the app).
pub const TESTED: &str = "Wilcoxon signed-rank test over the paired questions of each edge's \
    importance |S| (tuned against base), Benjamini–Hochberg FDR across all edges";

/// The columns of [`EdgeChanges::table`] and what each holds.
pub const COLUMNS: [&str; 9] = [
    "Edge",
    "Base mean",
    "Tuned mean",
    "Δ",
    "Δ|S|",
    "p",
    "p (BH)",
    "Δ|S| per question",
    "95 % CI",
];

/// What each of [`COLUMNS`] holds.
pub const COLUMN_HELP: [&str; 9] = [
    "source -> destination",
    "the base model's mean score S over the questions",
    "the tuned model's mean score S over the questions",
    "tuned − base of the mean scores: the signed change (which way the edge pushes)",
    "|tuned| − |base| of the mean scores: the change in importance (positive: more important in \
     tuned)",
    "Wilcoxon signed-rank p-value of |S_tuned| against |S_base|, paired over the questions",
    "the p-value adjusted by Benjamini–Hochberg across every edge tested (FDR)",
    "the tested quantity: the mean over the questions of |S_tuned| − |S_base|",
    "percentile-bootstrap interval of the per-question Δ|S|",
];

/// One edge's change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeChange {
    /// `m0->a3<q>`.
    pub edge: String,
    /// The edge's id (edge-id order of the graph).
    pub id: usize,
    /// Mean score over the questions, S̄.
    pub base_mean: f64,
    pub tuned_mean: f64,
    /// S̄_tuned − S̄_base: the signed change (the Difference mode).
    pub delta: f64,
    /// |S̄_tuned| − |S̄_base|: the change in importance (the Importance change mode).
    pub delta_abs: f64,
    /// Mean over the questions of |S_tuned| − |S_base|: the tested quantity.
    pub paired_delta_abs: f64,
    /// Percentile-bootstrap interval of `paired_delta_abs`.
    pub ci_low: f64,
    pub ci_high: f64,
    /// Two-sided Wilcoxon p-value of |S_tuned| against |S_base| (NaN when every question's
    /// difference is 0 and there are more than 13).
    pub p_value: f64,
    /// Benjamini–Hochberg adjusted p across every edge.
    pub p_adjusted: f64,
}

/// The most changed edges of a pair of runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeChanges {
    /// Paired questions.
    pub n: usize,
    /// Edges tested: the family of the correction.
    pub tested: usize,
    /// Edges whose adjusted p is below [`FDR`].
    pub changed: usize,
    /// The most changed edges, smallest adjusted p first (then largest |per-question Δ|S||).
    pub edges: Vec<EdgeChange>,
}

/// Benjamini–Hochberg adjusted p-values of the per-edge tests (method.md §8), in the order of
/// `p`. An edge with nothing to test (every difference 0: a NaN p-value) counts as p = 1 and
/// stays in the family, so that it still counts among the tests.
fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let p: Vec<f64> = p
        .iter()
        .map(|&v| if v.is_nan() { 1.0 } else { v })
        .collect();
    Correction::BenjaminiHochberg.adjust(&p)
}

/// Mean of `values` as f64.
fn mean(values: impl ExactSizeIterator<Item = f64>) -> f64 {
    let n = values.len().max(1) as f64;
    values.sum::<f64>() / n
}

impl EdgeChanges {
    /// Test every edge of per-question edge scores `base[q][e]` and `tuned[q][e]` (paired by
    /// question) and keep the `top` most changed with their intervals; `name` names edge `e`.
    pub fn of_samples(
        name: impl Fn(usize) -> String,
        (base, tuned): (&[Vec<f32>], &[Vec<f32>]),
        opts: &CompareOptions,
        top: usize,
    ) -> Result<Self, CompareError> {
        let edges = base.first().map_or(0, Vec::len);
        let column = |s: &[Vec<f32>], e: usize| -> Vec<f64> {
            s.iter()
                .map(|v| f64::from(v.get(e).copied().unwrap_or(0.0)))
                .collect()
        };
        let mut p = Vec::with_capacity(edges);
        let mut paired = Vec::with_capacity(edges);
        for e in 0..edges {
            let (b, t) = (column(base, e), column(tuned, e));
            let (b_abs, t_abs): (Vec<f64>, Vec<f64>) = (
                b.iter().map(|v| v.abs()).collect(),
                t.iter().map(|v| v.abs()).collect(),
            );
            p.push(wilcoxon(&t_abs, &b_abs)?.p_value);
            paired.push(mean(t_abs.iter().zip(&b_abs).map(|(t, b)| t - b)));
        }
        let adjusted = benjamini_hochberg(&p);
        let mut order: Vec<usize> = (0..edges).collect();
        order.sort_by(|&a, &b| {
            adjusted[a]
                .total_cmp(&adjusted[b])
                .then(paired[b].abs().total_cmp(&paired[a].abs()))
        });
        let kept: Vec<usize> = order.into_iter().take(top).collect();
        let differences: Vec<Vec<f64>> = kept
            .iter()
            .map(|&e| {
                let (b, t) = (column(base, e), column(tuned, e));
                t.iter().zip(&b).map(|(t, b)| t.abs() - b.abs()).collect()
            })
            .collect();
        let intervals = mean_intervals("Δ|S| per question", &differences, opts);
        let mut rows = Vec::new();
        for (&e, interval) in kept.iter().zip(intervals) {
            let (_, ci_low, ci_high) = interval?;
            let (b, t) = (column(base, e), column(tuned, e));
            let (base_mean, tuned_mean) = (mean(b.into_iter()), mean(t.into_iter()));
            rows.push(EdgeChange {
                edge: name(e),
                id: e,
                base_mean,
                tuned_mean,
                delta: tuned_mean - base_mean,
                delta_abs: tuned_mean.abs() - base_mean.abs(),
                paired_delta_abs: paired[e],
                ci_low,
                ci_high,
                p_value: p[e],
                p_adjusted: adjusted[e],
            });
        }
        Ok(Self {
            n: base.len(),
            tested: edges,
            changed: adjusted.iter().filter(|&&q| q < FDR).count(),
            edges: rows,
        })
    }

    /// The most changed edges of two runs of one graph, their samples paired by id.
    pub fn of_runs(
        base: &Run,
        tuned: &Run,
        opts: &CompareOptions,
        top: usize,
    ) -> Result<Self, RunError> {
        let pairs = pair_by_id(base, tuned)?;
        let graph = &base.manifest.graph;
        let values = |run: &Run, i: usize| graph.edge_values(&run.scores[i].dense);
        let b: Vec<Vec<f32>> = pairs.iter().map(|&(i, _)| values(base, i)).collect();
        let t: Vec<Vec<f32>> = pairs.iter().map(|&(_, j)| values(tuned, j)).collect();
        let edges = graph.edges();
        let name = |e: usize| {
            edges
                .get(e)
                .map_or_else(String::new, |&(s, d)| graph.edge_name(s, d))
        };
        Self::of_samples(name, (&b, &t), opts, top).map_err(|e| RunError::Invalid {
            path: tuned.dir.clone(),
            message: e.to_string(),
        })
    }

    /// The table as people read it: edge, both means, Δ, Δ|S|, raw and adjusted p, and the
    /// tested per-question Δ|S| with its interval (the columns of [`COLUMNS`]).
    pub fn table(&self) -> Table {
        Table {
            columns: COLUMNS.map(str::to_owned).to_vec(),
            rows: self
                .edges
                .iter()
                .map(|c| {
                    vec![
                        Cell::Text(c.edge.clone()),
                        Cell::Change(c.base_mean),
                        Cell::Change(c.tuned_mean),
                        Cell::Change(c.delta),
                        Cell::Change(c.delta_abs),
                        Cell::P(c.p_value),
                        Cell::AdjustedP(c.p_adjusted),
                        Cell::Change(c.paired_delta_abs),
                        Cell::Interval(c.ci_low, c.ci_high),
                    ]
                })
                .collect(),
        }
    }

    /// Every field at full precision: `most_changed_edges.csv`.
    pub fn exact_table(&self) -> Table {
        let columns = [
            "edge",
            "base_mean",
            "tuned_mean",
            "delta",
            "delta_abs",
            "paired_delta_abs",
            "ci_low",
            "ci_high",
            "p_value",
            "p_bh",
        ];
        Table {
            columns: columns.map(str::to_owned).to_vec(),
            rows: self
                .edges
                .iter()
                .map(|c| {
                    let mut row = vec![Cell::Text(c.edge.clone())];
                    row.extend(
                        [
                            c.base_mean,
                            c.tuned_mean,
                            c.delta,
                            c.delta_abs,
                            c.paired_delta_abs,
                            c.ci_low,
                            c.ci_high,
                            c.p_value,
                            c.p_adjusted,
                        ]
                        .map(Cell::Exact),
                    );
                    row
                })
                .collect(),
        }
    }

    /// How many edges changed, of how many, at which rate, over how many questions.
    pub fn summary_count(&self) -> String {
        format!(
            "{} of {} edges changed in importance at a false-discovery rate of {:.0} % ({} \
             paired questions)",
            self.changed,
            self.tested,
            100.0 * FDR,
            self.n
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng as _, SeedableRng as _};

    #[test]
    fn benjamini_hochberg_matches_a_hand_computation() {
        // Sorted: 0.01, 0.02, 0.03, 0.04, 0.5 (m = 5): m·p/j = 0.05, 0.05, 0.05, 0.05, 0.5;
        // the running minimum from the top leaves them so. NaN counts as 1.
        let p = [0.04, 0.5, 0.01, 0.03, 0.02];
        let got = benjamini_hochberg(&p);
        let want = [0.05, 0.5, 0.05, 0.05, 0.05];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-15, "{got:?}");
        }
        // 0.001, 0.04, 0.045, NaN → 4·0.001/1 = 0.004; 4·0.04/2 = 0.08, 4·0.045/3 = 0.06 →
        // min from above 0.06, 0.06; NaN → 1.
        let got = benjamini_hochberg(&[0.045, f64::NAN, 0.001, 0.04]);
        let want = [0.06, 1.0, 0.004, 0.06];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-15, "{got:?}");
        }
    }

    #[test]
    fn p_values_match_scipy() {
        // scipy.stats.wilcoxon(|t|, |b|) per edge and false_discovery_control(p, method="bh")
        // of SciPy 1.17.1 on these scores (f32, as the runs store them); exact p-values, so the
        // tolerance is 1e-12.
        let (questions, edges) = (15, 5);
        let score = |q: usize, e: usize, tuned: bool| -> f32 {
            let b = ((q * 7 + e * 3) as f64).sin() * 1e-3;
            if tuned {
                (b * (1.0 + 0.3 * e as f64) + ((q * 5 + e) as f64).cos() * 2e-4) as f32
            } else {
                b as f32
            }
        };
        let table = |tuned| -> Vec<Vec<f32>> {
            (0..questions)
                .map(|q| (0..edges).map(|e| score(q, e, tuned)).collect())
                .collect()
        };
        let (base, tuned) = (table(false), table(true));
        let opts = CompareOptions {
            bootstrap_resamples: 100,
            ..CompareOptions::default()
        };
        let c =
            EdgeChanges::of_samples(|e| format!("e{e}"), (&base, &tuned), &opts, edges).unwrap();
        let raw = [0.977_966_308_593_75, 3.051_757_812_5e-4, 6.103_515_625e-5];
        let adjusted = [
            0.977_966_308_593_75,
            3.814_697_265_625e-4,
            1.525_878_906_25e-4,
        ];
        for e in 0..edges {
            let r = c.edges.iter().find(|r| r.id == e).unwrap();
            let k = [0, 1, 2, 2, 1][e];
            assert!((r.p_value - raw[k]).abs() < 1e-12, "{e}: {r:?}");
            assert!((r.p_adjusted - adjusted[k]).abs() < 1e-12, "{e}: {r:?}");
        }
        assert_eq!(c.changed, 4);
    }

    /// `questions` × `edges` scores: noise around a per-edge level whose sign is random, and
    /// for the `planted` first edges an importance 1.6 times larger in tuned.
    fn planted(questions: usize, edges: usize, planted: usize) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
        let mut rng = StdRng::seed_from_u64(7);
        let levels: Vec<f32> = (0..edges)
            .map(|_| {
                let sign = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
                sign * rng.random_range(1e-3..3e-3)
            })
            .collect();
        let mut draw = |scale: &dyn Fn(usize) -> f32| -> Vec<Vec<f32>> {
            (0..questions)
                .map(|_| {
                    (0..edges)
                        .map(|e| levels[e] * scale(e) * rng.random_range(0.7..1.3))
                        .collect()
                })
                .collect()
        };
        let base = draw(&|_| 1.0);
        let tuned = draw(&|e| if e < planted { 1.6 } else { 1.0 });
        (base, tuned)
    }

    #[test]
    fn a_planted_change_in_importance_is_found_with_few_false_discoveries() {
        let (base, tuned) = planted(40, 400, 12);
        let opts = CompareOptions {
            bootstrap_resamples: 500,
            ..CompareOptions::default()
        };
        let c = EdgeChanges::of_samples(|e| format!("e{e}"), (&base, &tuned), &opts, 400).unwrap();
        assert_eq!((c.n, c.tested, c.edges.len()), (40, 400, 400));
        let found: Vec<usize> = c
            .edges
            .iter()
            .filter(|r| r.p_adjusted < FDR)
            .map(|r| r.id)
            .collect();
        assert_eq!(found.len(), c.changed);
        // Every planted edge is found, and it is more important in tuned.
        for e in 0..12 {
            assert!(found.contains(&e), "planted edge {e} missed: {found:?}");
        }
        // At most a few of the 388 unchanged edges are called changed (expected ≤ 5 % of the
        // discoveries).
        let false_found = found.iter().filter(|&&e| e >= 12).count();
        assert!(false_found <= 2, "{false_found} false discoveries");
        let first = &c.edges[0];
        assert!(first.id < 12 && first.paired_delta_abs > 0.0 && first.delta_abs > 0.0);
        assert!(first.ci_low > 0.0 && first.ci_low <= first.paired_delta_abs);
        assert!(first.paired_delta_abs <= first.ci_high);
        // The shared resamples give each edge the interval it would get alone.
        for r in &c.edges[..20] {
            let d: Vec<f64> = tuned
                .iter()
                .zip(&base)
                .map(|(t, b)| f64::from(t[r.id].abs()) - f64::from(b[r.id].abs()))
                .collect();
            let (mean, low, high) =
                crate::attribution::compare::mean_interval("d", &d, &opts).unwrap();
            assert_eq!((r.ci_low, r.ci_high), (low, high));
            assert!((mean - r.paired_delta_abs).abs() < 1e-15);
        }
        // Sorted by adjusted p; adjusted p never below the raw one.
        assert!(c
            .edges
            .windows(2)
            .all(|w| w[0].p_adjusted <= w[1].p_adjusted));
        assert!(c.edges.iter().all(|r| r.p_adjusted >= r.p_value));
    }

    #[test]
    fn an_edge_whose_negative_score_halves_lost_importance() {
        // −3.1e-3 → −1.4e-3: the signed change is positive, the importance fell.
        let base = vec![vec![-3.1e-3_f32, 1.0e-3]; 3];
        let tuned = vec![vec![-1.4e-3_f32, 1.0e-3]; 3];
        let opts = CompareOptions {
            bootstrap_resamples: 50,
            ..CompareOptions::default()
        };
        let c = EdgeChanges::of_samples(|e| format!("e{e}"), (&base, &tuned), &opts, 2).unwrap();
        let e = c.edges.iter().find(|r| r.id == 0).unwrap();
        assert!(e.delta > 0.0, "{e:?}");
        assert!(e.delta_abs < 0.0 && e.paired_delta_abs < 0.0, "{e:?}");
        assert!((e.delta_abs - (1.4e-3 - 3.1e-3)).abs() < 1e-9);
        // In Markdown the |s of Δ|S| are escaped: every line has the table's 10 cell borders.
        let md = c.table().markdown();
        assert!(md.contains("| Δ\\|S\\| | p |"), "{md}");
        for line in md.lines() {
            let borders = line.matches('|').count() - line.matches("\\|").count();
            assert_eq!(borders, 10, "{line}");
        }
        let csv = c.exact_table().csv();
        assert!(csv.starts_with("edge,base_mean,tuned_mean,delta,delta_abs,"));
        assert_eq!(csv.lines().count(), 3);
    }
}
