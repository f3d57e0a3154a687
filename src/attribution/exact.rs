//! Is the circuit real? (method.md §7): the exact loss change of removing an edge beside EAP's
//! first-order estimate of it, their agreement, and the faithfulness of the top-k circuits.
//!
//! Everything here runs ablated passes of the block-level graph ([`Model::masked_losses`]):
//! removing edge u→v sets its mask to 0, a circuit keeps its edges at 1 and every other at 0.

use super::graph::{Graph, Level};
use super::score::{check_sample, Cut, ScoreError};
use crate::model::{CleanPass, EdgeMasks, Model};
use crate::progress::CancelToken;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

/// How many edges get exact effects on a sample, and how the ablated passes are batched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExactOptions {
    /// The top edges by |S| (k of method.md §7; default 32).
    pub top: usize,
    /// A seeded random sample of this many other real edges (default 32).
    pub random: usize,
    /// Seed of the random sample (combined with the sample's index).
    pub seed: u64,
    /// Ablated passes run together in one batch (default 8).
    pub batch: usize,
    /// A graph with at most this many real edges gets the exact effect of every edge on a
    /// checked sample instead of its top and random ones (default 500; 0: never). Options
    /// recorded before this existed read as the default.
    #[serde(default = "default_all_edges_max")]
    pub all_edges_max: usize,
}

/// The default of [`ExactOptions::all_edges_max`].
pub const ALL_EDGES_MAX: usize = 500;

fn default_all_edges_max() -> usize {
    ALL_EDGES_MAX
}

impl Default for ExactOptions {
    fn default() -> Self {
        Self {
            top: 32,
            random: 32,
            seed: 42,
            batch: 8,
            all_edges_max: ALL_EDGES_MAX,
        }
    }
}

impl ExactOptions {
    /// Which edges besides the top ones get exact effects on `graph`: every other real edge
    /// when the graph has at most [`ExactOptions::all_edges_max`], else a random sample.
    pub fn others(&self, graph: &Graph) -> Others {
        if graph.num_edges() <= self.all_edges_max {
            Others::All
        } else {
            Others::Random(self.random)
        }
    }
}

/// The edges that get exact effects besides the top ones by |S|.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Others {
    /// A seeded random sample of this many other real edges.
    Random(usize),
    /// Every other real edge (a small graph: the check covers all of it).
    All,
}

/// Why an edge was given an exact effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeSet {
    /// One of this model's top edges by |S|.
    Top,
    /// One of the other model's top edges (a study measures both models on the union).
    OtherTop,
    /// A seeded random sample of the remaining real edges.
    Random,
    /// Every remaining real edge, when the graph is small enough to check all of them.
    Rest,
}

/// One edge's EAP score and exact effect on one sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeEffect {
    pub name: String,
    /// Dense indices of the edge (source row, destination column).
    pub source: usize,
    pub destination: usize,
    pub set: EdgeSet,
    /// S = −∂L/∂m, EAP's estimate of the effect.
    pub eap: f64,
    /// ΔL = L(m = 0) − L(clean).
    pub exact: f64,
}

/// The faithfulness curve of one sample: F of the top-k circuit by |S| for k on a log grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    /// Circuit sizes k, ascending, from 1 to every real edge.
    pub edges: Vec<usize>,
    /// F(top-k) = (L(∅) − L(top-k)) / (L(∅) − L(all)) at each k.
    pub faithfulness: Vec<f64>,
    /// L(∅): every mask 0 (the logits see nothing).
    pub loss_empty: f64,
    /// L(all): the clean loss.
    pub loss_clean: f64,
}

/// The faithfulness levels reported as paired metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reach {
    K50,
    K80,
    K90,
}

impl Reach {
    pub const ALL: [Self; 3] = [Self::K50, Self::K80, Self::K90];

    pub fn level(self) -> f64 {
        match self {
            Self::K50 => 0.5,
            Self::K80 => 0.8,
            Self::K90 => 0.9,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::K50 => "k50",
            Self::K80 => "k80",
            Self::K90 => "k90",
        }
    }
}

impl std::fmt::Display for Reach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// MIB's faithfulness summaries of a curve (Mueller et al. 2025; method.md §8), over the edge
/// fractions x of [`AREA_FRACTIONS_PER_MILLE`] by the trapezoid rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Area {
    /// Circuit performance ratio: ∫ f dx, the area under the curve (higher: a small circuit
    /// does more of the model's work).
    Cpr,
    /// Circuit–model difference: ∫ |1 − f| dx, the area between the curve and 1 (lower: the
    /// circuits stay closer to the whole model).
    Cmd,
}

impl Area {
    pub const ALL: [Self; 2] = [Self::Cpr, Self::Cmd];

    pub fn name(self) -> &'static str {
        match self {
            Self::Cpr => "CPR",
            Self::Cmd => "CMD",
        }
    }
}

impl std::fmt::Display for Area {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The trapezoid rule of `g` over the points `(x, y)`, x ascending.
fn trapezoid(points: &[(f64, f64)], g: impl Fn(f64) -> f64) -> f64 {
    points
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) * (g(w[0].1) + g(w[1].1)) / 2.0)
        .sum()
}

impl Curve {
    /// F at circuit size `k`, when the grid holds it.
    pub fn at(&self, k: usize) -> Option<f64> {
        let i = self.edges.iter().position(|&e| e == k)?;
        self.faithfulness.get(i).copied()
    }

    /// `area` of the curve; `None` when its grid lacks a size k(x) (a curve written before
    /// the summaries existed).
    pub fn area(&self, area: Area) -> Option<f64> {
        let n = *self.edges.last()?;
        let points = AREA_FRACTIONS_PER_MILLE
            .iter()
            .map(|&x| Some((x as f64 / 1000.0, self.at(edges_at_fraction(x, n))?)))
            .collect::<Option<Vec<(f64, f64)>>>()?;
        Some(match area {
            Area::Cpr => trapezoid(&points, |f| f),
            Area::Cmd => trapezoid(&points, |f| (1.0 - f).abs()),
        })
    }

    /// The fewest edges on the grid whose top-k circuit reaches F ≥ `reach`'s level (every
    /// real edge when none does).
    pub fn edges_to(&self, reach: Reach) -> usize {
        self.edges
            .iter()
            .zip(&self.faithfulness)
            .find(|(_, &f)| f >= reach.level())
            .or(self.edges.last().zip(self.faithfulness.last()))
            .map_or(0, |(&k, _)| k)
    }
}

/// The edge fractions x of MIB's faithfulness summaries (method.md §8), in thousandths:
/// 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.
pub const AREA_FRACTIONS_PER_MILLE: [usize; 10] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];

/// The circuit size k(x) = max(1, ⌈x·n⌉) of the fraction x = `per_mille`/1000 of `n` edges, in
/// integers (no rounding of x·n).
pub fn edges_at_fraction(per_mille: usize, n: usize) -> usize {
    (per_mille * n).div_ceil(1000).max(1)
}

/// The circuit sizes of a faithfulness curve over `n` edges: [`log_grid`] and the sizes k(x)
/// of MIB's edge fractions ([`edges_at_fraction`]), ascending and distinct.
pub fn curve_grid(n: usize) -> Vec<usize> {
    let mut grid = log_grid(n);
    grid.extend(
        AREA_FRACTIONS_PER_MILLE
            .iter()
            .map(|&x| edges_at_fraction(x, n)),
    );
    grid.sort_unstable();
    grid.dedup();
    grid
}

/// The circuit sizes of a faithfulness curve over `n` edges: 1, then four points per doubling
/// (2^(i/4) rounded, distinct), and `n` itself.
pub fn log_grid(n: usize) -> Vec<usize> {
    let mut grid: Vec<usize> = (0..)
        .map(|i| 2f64.powf(f64::from(i) / 4.0).round() as usize)
        .take_while(|&k| k < n)
        .collect();
    grid.dedup();
    grid.push(n);
    grid
}

/// The edges of `graph` ordered by |S| (largest first; ties by dense index).
pub fn by_magnitude(graph: &Graph, dense: &[f32]) -> Vec<(usize, usize)> {
    let nd = graph.dense_shape().1;
    let mut edges = graph.edges();
    edges.sort_by(|&(a, b), &(c, d)| {
        let (x, y) = (dense[a * nd + b].abs(), dense[c * nd + d].abs());
        y.total_cmp(&x).then((a, b).cmp(&(c, d)))
    });
    edges
}

/// A seeded sample of `k` real edges of `graph` outside `exclude` (sorted; all of them when
/// fewer remain). The same seed gives the same edges for any model of the same graph.
pub fn random_edges(
    graph: &Graph,
    k: usize,
    seed: u64,
    exclude: &[(usize, usize)],
) -> Vec<(usize, usize)> {
    let pool: Vec<(usize, usize)> = graph
        .edges()
        .into_iter()
        .filter(|e| !exclude.contains(e))
        .collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut picked: Vec<(usize, usize)> =
        rand::seq::index::sample(&mut rng, pool.len(), k.min(pool.len()))
            .into_iter()
            .map(|i| pool[i])
            .collect();
    picked.sort_unstable();
    picked
}

/// Why exact effects were not computed.
#[derive(Debug, thiserror::Error)]
pub enum AblationError {
    /// The cancel token was set; the work stopped before its next batch.
    #[error("cancelled")]
    Cancelled,
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

/// An ablation-ready sample: its cut and its clean pass.
pub struct Ablation<'m> {
    model: &'m Model,
    graph: &'m Graph,
    clean: CleanPass,
    batch: usize,
    /// Polled before each batch of ablated passes (the unit of work).
    cancel: CancelToken,
}

impl<'m> Ablation<'m> {
    /// Run the clean pass of one sample (the same tokens as its EAP scores, method.md §3).
    pub fn new(
        model: &'m Model,
        graph: &'m Graph,
        id: &str,
        (prompt, answer): (&[u32], &[u32]),
        cut: usize,
        batch: usize,
    ) -> Result<Self, ScoreError> {
        check_sample(model, id, prompt, answer)?;
        let bad = |message: String| ScoreError::Sample {
            id: id.to_owned(),
            message,
        };
        if graph.level != Level::Block {
            return Err(bad(
                "exact effects are computed on the block-level graph; score without --heads".into(),
            ));
        }
        if cut == 0 || batch == 0 {
            return Err(bad(
                "the cut length K and the batch must be at least 1".into()
            ));
        }
        let cut = Cut::new(prompt, answer, cut);
        let clean = model.clean_pass(&cut.ids, cut.positions.clone(), &cut.targets)?;
        if !clean.loss.is_finite() {
            return Err(ScoreError::not_finite(model, id, "the clean loss is"));
        }
        Ok(Self {
            model,
            graph,
            clean,
            batch,
            cancel: CancelToken::new(),
        })
    }

    /// Stop before the next batch of ablated passes once `cancel` is set.
    pub fn cancelled_by(self, cancel: &CancelToken) -> Self {
        Self {
            cancel: cancel.clone(),
            ..self
        }
    }

    /// L(clean), from the same kernels as the ablated passes.
    pub fn clean_loss(&self) -> f64 {
        self.clean.loss
    }

    /// The losses of masks built one row per item, in batches; the rows of a batch share the
    /// clean computation below the first block any of them changes, so items are run in the
    /// order given (callers sort them by destination).
    fn losses<T>(
        &self,
        items: &[T],
        fill: f32,
        mut set: impl FnMut(&mut EdgeMasks, usize, &T),
    ) -> Result<Vec<f64>, AblationError> {
        let layers = self.graph.layers;
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(self.batch) {
            if self.cancel.is_cancelled() {
                return Err(AblationError::Cancelled);
            }
            let mut masks = EdgeMasks::filled(chunk.len(), layers, fill);
            for (row, item) in chunk.iter().enumerate() {
                set(&mut masks, row, item);
            }
            out.extend(self.model.masked_losses(&self.clean, &masks)?);
        }
        Ok(out)
    }

    /// ΔL = L(m_uv = 0) − L(clean) of each edge (dense indices), in the order given.
    pub fn edge_effects(&self, edges: &[(usize, usize)]) -> Result<Vec<f64>, AblationError> {
        // Batches of edges into nearby destinations start from the same clean block.
        let mut order: Vec<usize> = (0..edges.len()).collect();
        order.sort_by_key(|&i| (edges[i].1, edges[i].0));
        let sorted: Vec<(usize, usize)> = order.iter().map(|&i| edges[i]).collect();
        let losses = self.losses(&sorted, 1.0, |m, row, &(s, d)| m.set(row, s, d, 0.0))?;
        let mut out = vec![0.0; edges.len()];
        for (&i, l) in order.iter().zip(losses) {
            out[i] = l - self.clean.loss;
        }
        Ok(out)
    }

    /// The loss of each circuit (a set of dense edges kept; every other edge removed).
    pub fn circuit_losses(
        &self,
        circuits: &[&[(usize, usize)]],
    ) -> Result<Vec<f64>, AblationError> {
        self.losses(circuits, 0.0, |m, row, circuit| {
            for &(s, d) in circuit.iter() {
                m.set(row, s, d, 1.0);
            }
        })
    }

    /// The faithfulness curve of the top-k circuits by |`dense`| over [`curve_grid`].
    pub fn faithfulness(&self, dense: &[f32]) -> Result<Curve, AblationError> {
        let ranked = by_magnitude(self.graph, dense);
        let grid = curve_grid(ranked.len());
        let mut circuits: Vec<&[(usize, usize)]> = vec![&[]];
        circuits.extend(grid.iter().map(|&k| &ranked[..k]));
        let losses = self.circuit_losses(&circuits)?;
        let (empty, clean) = (losses[0], self.clean.loss);
        let span = empty - clean;
        let faithfulness = losses[1..]
            .iter()
            .map(|l| if span == 0.0 { 0.0 } else { (empty - l) / span })
            .collect();
        Ok(Curve {
            edges: grid,
            faithfulness,
            loss_empty: empty,
            loss_clean: clean,
        })
    }

    /// Exact effects of `edges` (each with the set it was chosen for) beside their EAP scores.
    pub fn effects(
        &self,
        dense: &[f32],
        edges: &[((usize, usize), EdgeSet)],
    ) -> Result<Vec<EdgeEffect>, AblationError> {
        let nd = self.graph.dense_shape().1;
        let pairs: Vec<(usize, usize)> = edges.iter().map(|&(e, _)| e).collect();
        let exact = self.edge_effects(&pairs)?;
        Ok(edges
            .iter()
            .zip(exact)
            .map(|(&((s, d), set), exact)| EdgeEffect {
                name: self.graph.edge_name(s, d),
                source: s,
                destination: d,
                set,
                eap: f64::from(dense[s * nd + d]),
                exact,
            })
            .collect())
    }
}

/// The edges of one sample that get exact effects: the top edges by |S| of this model,
/// those of `others` (the other model's top edges, in a study), and either every remaining
/// real edge or a seeded sample of them (the same for every model of the graph, given the
/// same `others` ∪ top set).
pub fn chosen_edges(
    graph: &Graph,
    top: &[(usize, usize)],
    others: &[(usize, usize)],
    rest: Others,
    seed: u64,
) -> Vec<((usize, usize), EdgeSet)> {
    let mut chosen: Vec<((usize, usize), EdgeSet)> =
        top.iter().map(|&e| (e, EdgeSet::Top)).collect();
    chosen.extend(
        others
            .iter()
            .filter(|e| !top.contains(e))
            .map(|&e| (e, EdgeSet::OtherTop)),
    );
    let taken: Vec<(usize, usize)> = chosen.iter().map(|&(e, _)| e).collect();
    match rest {
        Others::Random(k) => chosen.extend(
            random_edges(graph, k, seed, &taken)
                .into_iter()
                .map(|e| (e, EdgeSet::Random)),
        ),
        Others::All => chosen.extend(
            graph
                .edges()
                .into_iter()
                .filter(|e| !taken.contains(e))
                .map(|e| (e, EdgeSet::Rest)),
        ),
    }
    chosen
}

/// Agreement of EAP scores with exact effects over a set of edges (method.md §7).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    pub n: usize,
    /// Pearson correlation; `None` when either side has no variance.
    pub pearson: Option<f64>,
    /// Spearman rank correlation (average ranks for ties); `None` likewise.
    pub spearman: Option<f64>,
    /// Share of edges where S and ΔL have the same sign (zero counting as its own sign).
    pub sign_agreement: f64,
    /// Median of |S − ΔL| / |ΔL| over edges with ΔL ≠ 0; `None` when there are none.
    pub median_relative_error: Option<f64>,
}

impl Agreement {
    /// The agreement of `(eap, exact)` pairs.
    pub fn of(pairs: &[(f64, f64)]) -> Self {
        let (s, x): (Vec<f64>, Vec<f64>) = pairs.iter().copied().unzip();
        let same = pairs
            .iter()
            .filter(|(a, b)| a.signum() == b.signum() || (*a == 0.0 && *b == 0.0))
            .count();
        let mut rel: Vec<f64> = pairs
            .iter()
            .filter(|(_, b)| *b != 0.0)
            .map(|(a, b)| (a - b).abs() / b.abs())
            .collect();
        rel.sort_by(f64::total_cmp);
        let median = match rel.len() {
            0 => None,
            n if n % 2 == 1 => Some(rel[n / 2]),
            n => Some((rel[n / 2 - 1] + rel[n / 2]) / 2.0),
        };
        Self {
            n: pairs.len(),
            pearson: pearson(&s, &x),
            spearman: pearson(&ranks(&s), &ranks(&x)),
            sign_agreement: if pairs.is_empty() {
                0.0
            } else {
                same as f64 / pairs.len() as f64
            },
            median_relative_error: median,
        }
    }
}

fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len() as f64;
    if x.len() < 2 {
        return None;
    }
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// Ranks from 1, ties sharing their average rank.
fn ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut out = vec![0.0; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            out[k] = rank;
        }
        i = j + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_grid_runs_from_one_edge_to_all() {
        assert_eq!(log_grid(1), vec![1]);
        assert_eq!(log_grid(10), vec![1, 2, 3, 4, 5, 6, 7, 8, 10]);
        let g = log_grid(4000);
        assert_eq!((g[0], *g.last().unwrap()), (1, 4000));
        assert!(g.windows(2).all(|w| w[0] < w[1]));
        assert!(g.len() < 50, "{}", g.len());
    }

    /// k(x) = max(1, ⌈x·n⌉) in integers: 0.1 · 77 = 7.7 → 8, 0.2 · 500 = 100 exactly.
    #[test]
    fn edge_fractions_round_up() {
        assert_eq!(edges_at_fraction(1, 77), 1);
        assert_eq!(edges_at_fraction(100, 77), 8);
        assert_eq!(edges_at_fraction(200, 500), 100);
        assert_eq!(edges_at_fraction(1000, 77), 77);
        let g = curve_grid(77);
        assert!(g.windows(2).all(|w| w[0] < w[1]), "{g:?}");
        for x in AREA_FRACTIONS_PER_MILLE {
            assert!(g.contains(&edges_at_fraction(x, 77)), "{g:?}");
        }
    }

    /// Over 100 edges the fractions give k = 1, 1, 1, 1, 2, 5, 10, 20, 50, 100, and F(k) =
    /// k/50 except F(50) = 1.2 (an overshoot) and F(100) = 1, so f = 0.02, 0.02, 0.02, 0.02,
    /// 0.04, 0.1, 0.2, 0.4, 1.2, 1. By hand, Σ Δx · (f_i + f_{i+1}) / 2 = 0.00002 + 0.00006 +
    /// 0.0001 + 0.0003 + 0.0021 + 0.0075 + 0.03 + 0.24 + 0.55 = 0.83008, and with |1 − f|:
    /// 0.00098 + 0.00294 + 0.0049 + 0.0097 + 0.0279 + 0.0425 + 0.07 + 0.12 + 0.05 = 0.32892
    /// (`numpy.trapezoid` agrees). Tolerance 1e-12.
    #[test]
    fn cpr_and_cmd_by_hand() {
        let edges = curve_grid(100);
        let faithfulness = edges
            .iter()
            .map(|&k| match k {
                50 => 1.2,
                100 => 1.0,
                k => k as f64 / 50.0,
            })
            .collect();
        let c = Curve {
            edges,
            faithfulness,
            loss_empty: 5.0,
            loss_clean: 1.0,
        };
        assert!((c.area(Area::Cpr).unwrap() - 0.83008).abs() < 1e-12);
        assert!((c.area(Area::Cmd).unwrap() - 0.32892).abs() < 1e-12);
        let old = Curve {
            edges: log_grid(100),
            ..c
        };
        assert_eq!(
            old.area(Area::Cpr),
            None,
            "the log grid lacks k = 20 and 50"
        );
    }

    #[test]
    fn agreement_of_known_pairs() {
        let a = Agreement::of(&[(1.0, 2.0), (2.0, 4.0), (3.0, 6.0), (-1.0, 1.0)]);
        assert_eq!(a.n, 4);
        assert_eq!(a.sign_agreement, 0.75);
        // Ranks of x: 2, 3, 4, 1; of y: 2, 3, 4, 1 (the −1 pairs with the smallest y).
        assert!((a.spearman.unwrap() - 1.0).abs() < 1e-12);
        // |S − ΔL| / |ΔL|: 0.5, 0.5, 0.5, 2 → median 0.5.
        assert_eq!(a.median_relative_error, Some(0.5));
        let flat = Agreement::of(&[(1.0, 0.0), (1.0, 0.0)]);
        assert_eq!((flat.pearson, flat.median_relative_error), (None, None));
    }

    #[test]
    fn ties_share_their_average_rank() {
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
    }
}
