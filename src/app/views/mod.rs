//! The views of the central area, one file each, and what they share: the view list, per-view
//! state and line-chart drawing.

pub mod charts;
pub mod edges;
pub mod faithfulness;
pub mod graph;
pub mod heatmap;
pub mod help;
pub mod questions;
pub mod table;
pub mod training;
pub mod trajectory;

use super::theme::Palette;
use crate::report::circuit::Mode;
use crate::report::figures::{LineChart, Series};
use crate::side::Side;
use egui::Ui;
use egui_plot::{FilledArea, Line, Plot, PlotPoints, VLine};

/// The views, in tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum View {
    #[default]
    Graph,
    Heatmap,
    Distributions,
    Layers,
    Table,
    Edges,
    Faithfulness,
    Questions,
    Training,
    Trajectory,
}

impl View {
    pub const ALL: [Self; 10] = [
        Self::Graph,
        Self::Heatmap,
        Self::Distributions,
        Self::Layers,
        Self::Table,
        Self::Edges,
        Self::Faithfulness,
        Self::Questions,
        Self::Training,
        Self::Trajectory,
    ];

    /// The tab's label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Graph => "Circuit graph",
            Self::Heatmap => "Heatmap",
            Self::Distributions => "Edge distributions",
            Self::Layers => "Per layer",
            Self::Table => "Comparison table",
            Self::Edges => "Changed edges",
            Self::Faithfulness => "Faithfulness",
            Self::Questions => "Questions",
            Self::Training => "Training",
            Self::Trajectory => "Trajectory",
        }
    }

    /// File name of the view's PNG.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Graph => "graph.png",
            Self::Heatmap => "heatmap.png",
            Self::Distributions => "distributions.png",
            Self::Layers => "per_layer.png",
            Self::Table => "comparison_table.png",
            Self::Edges => "changed_edges.png",
            Self::Faithfulness => "faithfulness.png",
            Self::Questions => "questions.png",
            Self::Training => "training.png",
            Self::Trajectory => "trajectory.png",
        }
    }

    /// The view's name on the command line: the file name's stem (`per_layer`).
    pub fn slug(self) -> &'static str {
        self.file_name().trim_end_matches(".png")
    }

    /// Whether the view shows one mode (base, tuned, a change) at a time.
    pub fn depends_on_mode(self) -> bool {
        matches!(self, Self::Graph | Self::Heatmap | Self::Questions)
    }

    /// File name of the view's PNG in `mode`: `graph_difference.png`, or the plain name for a
    /// view that shows every mode at once.
    pub fn file_name_in(self, mode: Mode) -> String {
        if self.depends_on_mode() {
            format!("{}_{}.png", self.slug(), mode.slug())
        } else {
            self.file_name().to_owned()
        }
    }

    /// Whether the view shows results (all but the training curves and the trajectory).
    pub fn needs_results(self) -> bool {
        !matches!(self, Self::Training | Self::Trajectory)
    }
}

impl std::str::FromStr for View {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|v| v.slug() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|v| v.slug()).collect();
                format!("'{s}' is not a view ({})", names.join(", "))
            })
    }
}

/// State of the views that outlives a frame.
#[derive(Default)]
pub struct ViewState {
    pub graph: graph::GraphState,
    pub heatmap: heatmap::HeatmapState,
    pub table: table::TableState,
    pub edges: edges::EdgesState,
    pub questions: questions::QuestionsState,
    pub training: training::TrainingState,
    /// The Guide window (Help menu) is open.
    pub help: bool,
    /// The About window is open.
    pub about: bool,
}

impl ViewState {
    /// Forget what depends on the previous results.
    pub fn reset_for_new_results(&mut self) {
        self.graph = graph::GraphState::default();
        self.heatmap = heatmap::HeatmapState::default();
        self.edges = edges::EdgesState::default();
        self.questions = questions::QuestionsState::default();
    }

    /// Forget what depends on the previous results' scores, keeping the graph's framing,
    /// selection and filter and the chosen question: the new results have the same graph and
    /// questions (another checkpoint of a trajectory).
    pub fn reset_for_same_graph(&mut self) {
        self.heatmap = heatmap::HeatmapState::default();
        self.questions.forget_circuit();
    }
}

/// The colour of a series: base and tuned have theirs, others take the palette in turn.
pub fn series_color(palette: Palette, side: Option<Side>, n: usize) -> egui::Color32 {
    match side {
        Some(Side::Base) => palette.base(),
        Some(Side::Tuned) => palette.tuned(),
        None => palette.series(n),
    }
}

/// The step of 1, 2 or 5 times a power of ten nearest to `x` (on a log scale).
fn nice_step(x: f64) -> f64 {
    let p = 10f64.powf(x.log10().floor());
    let m = x / p;
    p * if m < 2f64.sqrt() {
        1.0
    } else if m < 10f64.sqrt() {
        2.0
    } else if m < 50f64.sqrt() {
        5.0
    } else {
        10.0
    }
}

/// A y axis with about four labelled steps whatever the plot's height and range, each label
/// with the decimals its step needs (0.05 → two, 0.5 → one).
pub fn readable_y_axis(plot: Plot<'_>) -> Plot<'_> {
    plot.y_grid_spacer(egui_plot::uniform_grid_spacer(|input| {
        // About four steps over the range, and no closer than about 24 points (three times the
        // grid's smallest spacing), where labels still fit.
        let span = (input.bounds.1 - input.bounds.0).abs();
        let mut step = nice_step((span / 4.0).max(f64::MIN_POSITIVE));
        while step < 3.0 * input.base_step_size {
            step = nice_step(step * 2.2);
        }
        [step / 10.0, step, step * 10.0]
    }))
    .y_axis_formatter(|mark, _| {
        let decimals = (-mark.step_size.log10()).ceil().clamp(0.0, 12.0) as usize;
        format!("{:.*}", decimals, mark.value)
    })
}

/// Draw a line chart in a plot `height` high; `log_y` plots log10 of positive values.
pub fn line_chart_ui(ui: &mut Ui, chart: &LineChart, log_y: bool, height: f32) {
    chart_header_ui(ui, chart);
    let style = ChartStyle {
        log_y,
        height,
        ..ChartStyle::default()
    };
    chart_plot_ui(ui, chart, &style);
}

/// A chart's title with its series' names beside it, each in its colour (the legend, off the
/// data).
pub fn chart_header_ui(ui: &mut Ui, chart: &LineChart) {
    let palette = Palette::of(ui.ctx());
    ui.horizontal(|ui| {
        ui.strong(&chart.title);
        for (n, s) in chart.series.iter().enumerate() {
            let color = series_color(palette, s.side, n);
            ui.label(egui::RichText::new(&s.name).color(color));
        }
    });
}

/// How a chart's plot is drawn besides its data.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChartStyle {
    /// Plot log10 of positive values.
    pub log_y: bool,
    pub height: f32,
    /// Plots that share their x axis: the link group and the x range they start at.
    pub shared_x: Option<(egui::Id, [f64; 2])>,
    /// A vertical marker at this x.
    pub marker: Option<f64>,
}

/// `y` on the plot's scale (log10 with `log_y`); `None` where the point `(x, y)` cannot be drawn.
fn plotted(x: f64, y: f64, log_y: bool) -> Option<f64> {
    let ok = x.is_finite() && y.is_finite() && (!log_y || y > 0.0);
    ok.then(|| if log_y { y.log10() } else { y })
}

/// A series' band, on the plot's scale: x, low and high of each point where all are drawable.
fn band_points(s: &Series, log_y: bool) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut out = (Vec::new(), Vec::new(), Vec::new());
    if s.band.len() != s.points.len() {
        return out;
    }
    for (&(x, _), &(lo, hi)) in s.points.iter().zip(&s.band) {
        if let (Some(lo), Some(hi)) = (plotted(x, lo, log_y), plotted(x, hi, log_y)) {
            out.0.push(x);
            out.1.push(lo);
            out.2.push(hi);
        }
    }
    out
}

/// Draw a chart's plot: each series with its band (a translucent area), and the marker.
/// Returns the x clicked, if the plot was clicked.
pub fn chart_plot_ui(ui: &mut Ui, chart: &LineChart, style: &ChartStyle) -> Option<f64> {
    let palette = Palette::of(ui.ctx());
    let log_y = style.log_y;
    let mut plot = Plot::new(&chart.title)
        .height(style.height)
        .x_axis_label(chart.x_label.as_str())
        .y_axis_label(if log_y {
            format!("log10 {}", chart.y_label)
        } else {
            chart.y_label.clone()
        })
        .allow_scroll(false);
    if let Some((group, [lo, hi])) = style.shared_x {
        // The same y-axis width in every plot lines up their step axes.
        plot = plot
            .link_axis(group, [true, false])
            .link_cursor(group, [true, false])
            .default_x_bounds(lo, hi)
            .y_axis_min_width(64.0);
    }
    let mut plot = readable_y_axis(plot);
    if log_y {
        plot = plot.y_axis_formatter(|mark, _| format!("1e{:.1}", mark.value));
    }
    plot.show(ui, |plot_ui| {
        for (n, s) in chart.series.iter().enumerate() {
            let color = series_color(palette, s.side, n);
            let (xs, lows, highs) = band_points(s, log_y);
            // A mesh between the interval's ends: egui_plot's `Polygon` fills convex shapes
            // only, and a band seldom is one.
            if xs.len() > 1 {
                plot_ui.add(
                    FilledArea::new(format!("{} interval", s.name), &xs, &lows, &highs)
                        .fill_color(color.gamma_multiply(0.22))
                        .allow_hover(false),
                );
            }
            let points: Vec<[f64; 2]> = s
                .points
                .iter()
                .filter_map(|&(x, y)| Some([x, plotted(x, y, log_y)?]))
                .collect();
            plot_ui.line(
                Line::new(s.name.as_str(), PlotPoints::new(points))
                    .color(color)
                    .width(1.5),
            );
        }
        if let Some(x) = style.marker {
            plot_ui.vline(
                VLine::new("chosen", x)
                    .color(palette.highlight())
                    .width(1.5),
            );
        }
        let clicked = plot_ui.response().clicked();
        plot_ui
            .pointer_coordinate()
            .filter(|_| clicked)
            .map(|p| p.x)
    })
    .inner
}
