//! Figures as data (method.md §6): computed once here from run directories and answers, drawn
//! by the headless renderer (`report::render`) and by the app.

use super::circuit::{Circuit, EdgeSelection, LabelSide, Mode, Point};
use super::run::Run;
use super::validation::Validation;
use super::verdict::EdgeScope;
use crate::attribution::compare::{mean_intervals, CompareOptions};
use crate::attribution::metrics::Metric;
use crate::side::{PerSide, Side};
use serde::{Deserialize, Serialize};

/// A signed score matrix, drawn with diverging colours centred on 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heatmap {
    pub title: String,
    /// Row labels (sources) and column labels (destinations).
    pub rows: Vec<String>,
    pub cols: Vec<String>,
    /// Row-major values; cells outside `mask` are structural zeros.
    pub values: Vec<f32>,
    pub mask: Vec<bool>,
    /// Colours saturate at ±range: the larger of |2nd| and |98th| percentile over real edges.
    pub range: f32,
}

/// What a figure of tuned − base says instead of a colour scale when every difference is 0
/// (the same model given twice, say): a scale of ±1e-38 would mean nothing.
pub const NO_DIFFERENCE: &str = "no difference: the two models' scores are identical";

impl Heatmap {
    /// Whether every real edge's value is 0 (a difference of identical scores).
    pub fn is_zero(&self) -> bool {
        self.values
            .iter()
            .zip(&self.mask)
            .all(|(&v, &real)| !real || v == 0.0)
    }
}

impl CircuitGraph {
    /// Whether the graph draws no nonzero edge (a difference of identical scores).
    pub fn is_zero(&self) -> bool {
        self.edges.iter().all(|e| e.value == 0.0)
    }
}

/// A named curve; a curve of one model of the pair names its side (and takes its colour).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side: Option<Side>,
    pub points: Vec<(f64, f64)>,
    /// An interval (low, high) around each point, drawn as a shaded band; empty for none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub band: Vec<(f64, f64)>,
}

impl Series {
    /// The curve of one model of the pair.
    pub fn of_side(side: Side, points: Vec<(f64, f64)>) -> Self {
        Self::named(side.name(), Some(side), points)
    }

    /// A curve without a band.
    pub fn named(name: &str, side: Option<Side>, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.to_owned(),
            side,
            points,
            band: Vec::new(),
        }
    }
}

/// A named sample of values, of one model of the pair or of something else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side: Option<Side>,
    pub values: Vec<f64>,
}

impl Sample {
    fn named(name: &str, values: Vec<f64>) -> Self {
        Self {
            name: name.to_owned(),
            side: None,
            values,
        }
    }
}

/// Curves on shared axes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_y: bool,
    pub series: Vec<Series>,
}

/// Points on shared axes (one colour per series), with the diagonal y = x: estimates against
/// the values they estimate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scatter {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

impl Scatter {
    /// The ranges of x and of y over the finite points, each padded by 5 % ((−1, 1) when
    /// there are none): each axis fits its own values, so that estimates far smaller than
    /// what they estimate still spread out.
    pub fn bounds(&self) -> ((f64, f64), (f64, f64)) {
        let points = self.series.iter().flat_map(|s| s.points.iter());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in points.filter(|p| p.0.is_finite() && p.1.is_finite()) {
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
        }
        let pad = |lo: f64, hi: f64| {
            if lo > hi {
                return (-1.0, 1.0);
            }
            let p = (hi - lo).max(1e-12 * hi.abs().max(1e-12)) * 0.05;
            (lo - p, hi + p)
        };
        (pad(x0, x1), pad(y0, y1))
    }

    /// The stretch of the diagonal y = x inside [`Scatter::bounds`], if any.
    pub fn diagonal(&self) -> Option<(f64, f64)> {
        let ((x0, x1), (y0, y1)) = self.bounds();
        let (lo, hi) = (x0.max(y0), x1.min(y1));
        (lo < hi).then_some((lo, hi))
    }
}

/// Overlaid histograms of several samples of values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub title: String,
    pub x_label: String,
    pub bins: usize,
    pub series: Vec<Sample>,
}

/// A histogram's counts: `bins` equal-width bins from `lo`, one count vector per series.
#[derive(Debug, Clone, PartialEq)]
pub struct Binned {
    pub lo: f64,
    pub width: f64,
    pub counts: Vec<Vec<usize>>,
}

impl Histogram {
    /// Count every series' finite values into bins spanning all series (one unit wide around a
    /// single repeated value).
    pub fn binned(&self) -> Binned {
        let all = self
            .series
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .filter(|v| v.is_finite());
        let (lo, hi) = all.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
        let (lo, hi) = if lo > hi {
            (0.0, 1.0)
        } else if hi == lo {
            (lo - 0.5, hi + 0.5)
        } else {
            (lo, hi)
        };
        let bins = self.bins.max(1);
        let width = (hi - lo) / bins as f64;
        let counts = self
            .series
            .iter()
            .map(|s| {
                let mut c = vec![0usize; bins];
                for &x in s.values.iter().filter(|x| x.is_finite()) {
                    c[(((x - lo) / width) as usize).min(bins - 1)] += 1;
                }
                c
            })
            .collect();
        Binned { lo, width, counts }
    }
}

fn percentile(sorted: &[f32], q: f64) -> f32 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    let w = (pos - lo as f64) as f32;
    sorted[lo] * (1.0 - w) + sorted[hi] * w
}

/// The heatmap of a dense matrix of `run`'s graph.
pub fn heatmap(run: &Run, title: &str, values: Vec<f32>) -> Heatmap {
    let graph = &run.manifest.graph;
    let mask = graph.mask();
    let mut real: Vec<f32> = values
        .iter()
        .zip(&mask)
        .filter(|(_, &m)| m)
        .map(|(&v, _)| v)
        .collect();
    real.sort_by(f32::total_cmp);
    let range = percentile(&real, 0.02)
        .abs()
        .max(percentile(&real, 0.98).abs())
        .max(f32::MIN_POSITIVE);
    Heatmap {
        title: title.to_owned(),
        rows: graph.sources.iter().map(ToString::to_string).collect(),
        cols: graph.destinations.iter().map(ToString::to_string).collect(),
        values,
        mask,
        range,
    }
}

impl Heatmap {
    /// Give `maps` one colour scale: the largest of their ranges.
    pub fn share_range(maps: &mut [Heatmap]) {
        let range = maps
            .iter()
            .map(|m| m.range)
            .fold(f32::MIN_POSITIVE, f32::max);
        for map in maps {
            map.range = range;
        }
    }
}

/// Mean score matrices of base and tuned, and their changes in [`Mode`] order: the signed
/// difference (tuned − base) and the change in importance (|tuned| − |base|); each on its own
/// colour scale.
pub fn heatmaps(base: &Run, tuned: &Run) -> Vec<Heatmap> {
    let (b, t) = (base.mean_scores(), tuned.mean_scores());
    let mut out = vec![
        heatmap(base, "base", b.clone()),
        heatmap(tuned, "tuned", t.clone()),
    ];
    if b.len() == t.len() {
        for mode in [Mode::Difference, Mode::ImportanceChange] {
            let change = t
                .iter()
                .zip(&b)
                .filter_map(|(&t, &b)| mode.value(b, Some(t)))
                .collect();
            out.push(heatmap(base, mode.quantity(), change));
        }
    }
    out
}

/// [`heatmaps`] with base and tuned on one colour scale, so that their colours compare; the
/// difference keeps its own (symmetric) scale.
pub fn comparison_heatmaps(base: &Run, tuned: &Run) -> Vec<Heatmap> {
    let mut maps = heatmaps(base, tuned);
    let pair = maps.len().min(2);
    Heatmap::share_range(&mut maps[..pair]);
    maps
}

fn sorted_abs(run: &Run) -> Vec<f64> {
    let mut v: Vec<f64> = run
        .manifest
        .graph
        .edge_values(&run.mean_scores())
        .iter()
        .map(|x| f64::from(x.abs()))
        .collect();
    v.sort_by(|a, b| b.total_cmp(a));
    v
}

/// |score| of the mean vector sorted from largest to smallest, both models (log y).
pub fn sorted_abs_curve(base: &Run, tuned: &Run) -> LineChart {
    let series = PerSide { base, tuned }
        .iter()
        .map(|(side, run)| {
            let points = sorted_abs(run)
                .into_iter()
                .enumerate()
                .map(|(i, v)| ((i + 1) as f64, v.max(1e-30)))
                .collect();
            Series::of_side(side, points)
        })
        .collect();
    LineChart {
        title: "edge scores, largest first".into(),
        x_label: "edge rank".into(),
        y_label: "|score| (mean over samples)".into(),
        log_y: true,
        series,
    }
}

/// Cumulative share of total |score| against the share of edges (largest first).
pub fn cumulative_share(base: &Run, tuned: &Run) -> LineChart {
    let series = PerSide { base, tuned }
        .iter()
        .map(|(side, run)| {
            let v = sorted_abs(run);
            let total: f64 = v.iter().sum::<f64>().max(f64::MIN_POSITIVE);
            let n = v.len().max(1) as f64;
            let mut acc = 0.0;
            let mut points = vec![(0.0, 0.0)];
            for (i, x) in v.iter().enumerate() {
                acc += x;
                points.push(((i + 1) as f64 / n, acc / total));
            }
            Series::of_side(side, points)
        })
        .collect();
    LineChart {
        title: "concentration of attribution".into(),
        x_label: "share of edges".into(),
        y_label: "share of total |score|".into(),
        log_y: false,
        series,
    }
}

/// Histogram of the signed edge scores of each run's mean vector.
pub fn score_histogram(runs: &[(Side, &Run)]) -> Histogram {
    Histogram {
        title: "signed edge scores".into(),
        x_label: "score (mean over samples)".into(),
        bins: 60,
        series: runs
            .iter()
            .map(|&(side, run)| {
                let values = run.manifest.graph.edge_values(&run.mean_scores());
                Sample {
                    name: side.name().to_owned(),
                    side: Some(side),
                    values: values.into_iter().map(f64::from).collect(),
                }
            })
            .collect(),
    }
}

/// Histograms of both models' per-sample losses, as log10 of nats per answer token; samples
/// left of the saturation threshold carry scores that say little (method.md §7).
pub fn loss_histogram(base: &Run, tuned: &Run) -> Histogram {
    let threshold = super::saturation::THRESHOLD;
    Histogram {
        title: format!(
            "per-sample loss; saturated left of {:.0} ({:.0e} nats per answer token)",
            threshold.log10(),
            threshold
        ),
        x_label: "log10 loss (nats per answer token)".into(),
        bins: 30,
        series: PerSide { base, tuned }
            .iter()
            .map(|(side, run)| Sample {
                name: side.name().to_owned(),
                side: Some(side),
                values: run
                    .metrics
                    .samples
                    .iter()
                    .map(|s| s.loss.max(f64::MIN_POSITIVE).log10())
                    .filter(|v| v.is_finite())
                    .collect(),
            })
            .collect(),
    }
}

/// Most bootstrap resamples of a figure's bands (the comparison's seed and confidence): enough
/// for a band's ends, and cheap enough to draw every metric at every layer when results open.
pub const BAND_RESAMPLES: usize = 1_000;

/// `opts` with at most [`BAND_RESAMPLES`] resamples.
fn band_options(opts: &CompareOptions) -> CompareOptions {
    CompareOptions {
        bootstrap_resamples: opts.bootstrap_resamples.min(BAND_RESAMPLES),
        ..opts.clone()
    }
}

/// Points (x, y), or a band's (low, high) at each point.
type Pairs = Vec<(f64, f64)>;

/// The mean of each layer's values at x = its layer and its bootstrap band (NaN where it has
/// none: no values, or a value that is not finite).
fn points_with_bands(per_layer: &[Vec<f64>], opts: &CompareOptions) -> (Pairs, Pairs) {
    mean_intervals("per layer", per_layer, opts)
        .into_iter()
        .enumerate()
        .map(|(l, r)| match r {
            Ok((mean, low, high)) => ((l as f64, mean), (low, high)),
            Err(_) => ((l as f64, f64::NAN), (f64::NAN, f64::NAN)),
        })
        .unzip()
}

/// Destination layers drawn per layer: every layer but `logits`.
fn layers(run: &Run) -> usize {
    run.metrics.mean.per_layer.len().saturating_sub(1)
}

/// One metric per destination layer (logits excluded), both models: the mean over the questions
/// of each question's value, with its bootstrap interval as a band.
pub fn per_layer(base: &Run, tuned: &Run, metric: Metric, opts: &CompareOptions) -> LineChart {
    let opts = band_options(opts);
    let series = PerSide { base, tuned }
        .iter()
        .map(|(side, run)| {
            let values: Vec<Vec<f64>> = (0..layers(run))
                .map(|l| {
                    run.metrics
                        .samples
                        .iter()
                        .filter_map(|s| s.metrics.per_layer.get(l).map(|m| m.get(metric)))
                        .collect()
                })
                .collect();
            let (points, band) = points_with_bands(&values, &opts);
            Series {
                band,
                ..Series::of_side(side, points)
            }
        })
        .collect();
    LineChart {
        title: format!(
            "{metric} per layer (mean over questions, {:.0} % CI)",
            100.0 * opts.confidence
        ),
        x_label: "layer".into(),
        y_label: metric.name().into(),
        log_y: false,
        series,
    }
}

/// One metric per destination layer as the paired difference tuned − base: the mean over the
/// questions (paired by id) of each question's difference, its bootstrap interval as a band,
/// and the zero line. `None` when the runs cannot be paired.
pub fn per_layer_difference(
    base: &Run,
    tuned: &Run,
    metric: Metric,
    opts: &CompareOptions,
) -> Option<LineChart> {
    let pairs = super::comparison::pair_by_id(base, tuned).ok()?;
    let opts = band_options(opts);
    let value = |run: &Run, i: usize, l: usize| {
        run.metrics.samples[i]
            .metrics
            .per_layer
            .get(l)
            .map_or(f64::NAN, |m| m.get(metric))
    };
    let n = layers(base).min(layers(tuned));
    let differences: Vec<Vec<f64>> = (0..n)
        .map(|l| {
            pairs
                .iter()
                .map(|&(i, j)| value(tuned, j, l) - value(base, i, l))
                .collect()
        })
        .collect();
    let (points, band) = points_with_bands(&differences, &opts);
    let zero = (0..n).map(|l| (l as f64, 0.0)).collect();
    Some(LineChart {
        title: format!("Δ {metric} per layer ({:.0} % CI)", 100.0 * opts.confidence),
        x_label: "layer".into(),
        y_label: format!("Δ {metric}"),
        log_y: false,
        series: vec![
            Series {
                band,
                ..Series::named("tuned − base", None, points)
            },
            Series::named("no change", None, zero),
        ],
    })
}

/// Token-length histograms: prompt and answer lengths per model, and tuned − base answer
/// length, over the given (prompt, base answer, tuned answer) lengths.
pub fn length_histograms(lengths: &[(usize, usize, usize)]) -> Vec<Histogram> {
    let col = |f: fn(&(usize, usize, usize)) -> f64| lengths.iter().map(f).collect::<Vec<f64>>();
    vec![
        Histogram {
            title: "token lengths".into(),
            x_label: "tokens".into(),
            bins: 30,
            series: vec![
                Sample::named("prompt", col(|l| l.0 as f64)),
                Sample::named("base answer", col(|l| l.1 as f64)),
                Sample::named("tuned answer", col(|l| l.2 as f64)),
            ],
        },
        Histogram {
            title: "answer length, tuned − base".into(),
            x_label: "tokens".into(),
            bins: 30,
            series: vec![Sample::named(
                "tuned − base",
                col(|l| l.2 as f64 - l.1 as f64),
            )],
        },
    ]
}

/// A model's name in titles: the last component of a local path (`assets/zoo/grpo` → `grpo`),
/// or a Hub id (`org/name`) as it is.
pub fn model_name(spec: &str) -> String {
    let p = std::path::Path::new(spec);
    let local = p.is_absolute() || spec.starts_with('.') || spec.matches('/').count() > 1;
    match p.file_name() {
        Some(name) if local => name.to_string_lossy().into_owned(),
        _ => spec.to_owned(),
    }
}

/// The pair of two runs as figure titles name it: `base -> grpo`.
pub fn pair_title(base: &Run, tuned: &Run) -> String {
    format!(
        "{} -> {}",
        model_name(&base.manifest.model.spec),
        model_name(&tuned.manifest.model.spec)
    )
}

/// A saved figure's title: the pair it is of, then what it shows (`base -> grpo · tuned −
/// base`).
pub fn titled(pair: &str, what: &str) -> String {
    format!("{pair} · {what}")
}

/// A labelled node of a circuit graph, in layout units.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphNode {
    pub name: String,
    /// What the drawing writes beside it (at head level only the block's name, on its top
    /// head).
    pub label: Option<String>,
    pub pos: Point,
    /// Where the label goes.
    pub side: LabelSide,
}

/// A drawn edge of a circuit graph: a quadratic curve from `from` through `ctrl` to `to`.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphEdge {
    pub name: String,
    pub from: Point,
    pub ctrl: Point,
    pub to: Point,
    pub value: f32,
    /// The centre of its destination node (`to` is the q, k or v port of an attention input,
    /// else the centre too).
    pub dest: Point,
}

/// The circuit graph of one [`Mode`]: every node, and the selected edges, largest |value| first.
#[derive(Debug, Clone, PartialEq)]
pub struct CircuitGraph {
    pub title: String,
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<GraphEdge>,
    /// Edges of the graph, drawn or not.
    pub total_edges: usize,
    /// The share of the total |score| that the drawn edges hold.
    pub share: f64,
    /// The share the default selection aims for, and how many edges it takes to hold it.
    pub target: (f64, usize),
    /// What a positive and a negative value mean in this mode.
    pub legend: [&'static str; 2],
}

/// The circuit graph of `circuit` in `mode` (`None` when the circuit has no values for it).
pub fn circuit_graph(circuit: &Circuit, mode: Mode, select: EdgeSelection) -> Option<CircuitGraph> {
    let values = circuit.values(mode)?;
    let order = circuit.order(mode);
    let sorted: Vec<f64> = order
        .iter()
        .map(|&e| f64::from(values[e as usize].abs()))
        .collect();
    let shown = circuit.selected(mode, select);
    let total: f64 = sorted.iter().sum();
    let held: f64 = sorted[..shown].iter().sum();
    let edges = order[..shown]
        .iter()
        .map(|&e| {
            let edge = &circuit.edges[e as usize];
            GraphEdge {
                name: circuit.edge_name(e),
                from: edge.from,
                ctrl: edge.ctrl,
                to: edge.to,
                value: values[e as usize],
                dest: circuit.nodes[edge.to_node as usize].pos,
            }
        })
        .collect();
    Some(CircuitGraph {
        title: format!("circuit: {}", mode.quantity()),
        nodes: circuit
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| GraphNode {
                name: n.node.to_string(),
                label: circuit.block_label(i),
                pos: n.pos,
                side: LabelSide::of(n.node),
            })
            .collect(),
        edges,
        total_edges: values.len(),
        share: if total > 0.0 { held / total } else { 0.0 },
        target: {
            let share = EdgeSelection::default().share;
            (share, circuit.edges_for_share(mode, share))
        },
        legend: mode.legend(),
    })
}

/// EAP's score against the exact effect of the checked edges, one chart per model: its top
/// edges and the random ones (or every other edge, when all were checked), with the diagonal where the estimate is exact (method.md §7).
pub fn exact_scatter(v: &Validation) -> Vec<Scatter> {
    v.runs
        .iter()
        .map(|(side, r)| Scatter {
            title: format!(
                "{side}: EAP vs exact, Pearson {}",
                r.agreement
                    .pearson
                    .map_or("—".to_owned(), |p| format!("{p:.2}"))
            ),
            x_label: "EAP score S".into(),
            y_label: "exact effect ΔL (nats)".into(),
            series: vec![
                Series::named(&format!("top {} edges", v.options.top), None, r.top.clone()),
                Series::named(
                    match v.scope {
                        EdgeScope::All { .. } => "every other edge",
                        EdgeScope::TopUnion { .. } => "random edges",
                    },
                    None,
                    r.random.clone(),
                ),
            ],
        })
        .collect()
}

/// Faithfulness of the top-k circuit against log10 k: the median over the checked samples of
/// each model (every sample's curve has the same grid: the graphs are the same).
pub fn faithfulness_curves(v: &Validation) -> LineChart {
    let series = v
        .runs
        .iter()
        .map(|(side, r)| {
            let grid = r.curves.first().map_or(&[][..], |c| &c.edges[..]);
            let points = grid
                .iter()
                .enumerate()
                .map(|(i, &k)| {
                    let mut f: Vec<f64> = r
                        .curves
                        .iter()
                        .filter_map(|c| c.faithfulness.get(i).copied())
                        .collect();
                    f.sort_by(f64::total_cmp);
                    (
                        (k as f64).log10(),
                        f.get(f.len() / 2).copied().unwrap_or(f64::NAN),
                    )
                })
                .collect();
            Series::of_side(side, points)
        })
        .collect();
    LineChart {
        title: format!(
            "faithfulness of the top-k circuit (median of {} samples)",
            v.runs.base.curves.len()
        ),
        x_label: "log10 k (edges kept, largest |S| first)".into(),
        y_label: "faithfulness F".into(),
        log_y: false,
        series,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_name_the_pair_by_short_model_names() {
        assert_eq!(model_name("assets/zoo/grpo"), "grpo");
        assert_eq!(model_name("/models/base/"), "base");
        assert_eq!(model_name("./tuned"), "tuned");
        assert_eq!(
            model_name("HuggingFaceTB/SmolLM2-135M-Instruct"),
            "HuggingFaceTB/SmolLM2-135M-Instruct"
        );
        assert_eq!(
            titled("base -> grpo", "tuned − base"),
            "base -> grpo · tuned − base"
        );
    }

    #[test]
    fn a_scatter_fits_each_axis_and_clips_the_diagonal() {
        let s = Scatter {
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            series: vec![Series::named(
                "top",
                None,
                vec![(-0.01, 0.0), (0.01, 5.0), (f64::NAN, 9.0)],
            )],
        };
        let ((x0, x1), (y0, y1)) = s.bounds();
        assert!((x0 + 0.011).abs() < 1e-12 && (x1 - 0.011).abs() < 1e-12);
        assert!((y0 + 0.25).abs() < 1e-12 && (y1 - 5.25).abs() < 1e-12);
        let (lo, hi) = s.diagonal().unwrap();
        assert!((lo + 0.011).abs() < 1e-12 && (hi - 0.011).abs() < 1e-12);
        let far = Scatter {
            series: vec![Series::named("far", None, vec![(0.0, 10.0), (1.0, 11.0)])],
            ..s
        };
        assert_eq!(far.diagonal(), None);
    }
}
