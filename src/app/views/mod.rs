//! The views of the central area, one file each, and what they share: the view list, per-view
//! state and line-chart drawing.

pub mod charts;
pub mod faithfulness;
pub mod graph;
pub mod heatmap;
pub mod help;
pub mod questions;
pub mod table;
pub mod training;

use super::theme::Palette;
use crate::report::circuit::Mode;
use crate::report::figures::LineChart;
use crate::side::Side;
use egui::Ui;
use egui_plot::{Line, Plot, PlotPoints};

/// The views, in tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum View {
    #[default]
    Graph,
    Heatmap,
    Distributions,
    Layers,
    Table,
    Faithfulness,
    Questions,
    Training,
}

impl View {
    pub const ALL: [Self; 8] = [
        Self::Graph,
        Self::Heatmap,
        Self::Distributions,
        Self::Layers,
        Self::Table,
        Self::Faithfulness,
        Self::Questions,
        Self::Training,
    ];

    /// The tab's label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Graph => "Circuit graph",
            Self::Heatmap => "Heatmap",
            Self::Distributions => "Edge distributions",
            Self::Layers => "Per layer",
            Self::Table => "Comparison table",
            Self::Faithfulness => "Faithfulness",
            Self::Questions => "Questions",
            Self::Training => "Training",
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
            Self::Faithfulness => "faithfulness.png",
            Self::Questions => "questions.png",
            Self::Training => "training.png",
        }
    }

    /// The view's name on the command line: the file name's stem (`per_layer`).
    pub fn slug(self) -> &'static str {
        self.file_name().trim_end_matches(".png")
    }

    /// Whether the view shows one mode (base, tuned, difference) at a time.
    pub fn depends_on_mode(self) -> bool {
        matches!(self, Self::Graph | Self::Heatmap | Self::Questions)
    }

    /// File name of the view's PNG in `mode`: `graph_difference.png`, or the plain name for a
    /// view that shows every mode at once.
    pub fn file_name_in(self, mode: Mode) -> String {
        if self.depends_on_mode() {
            format!("{}_{}.png", self.slug(), mode.label().to_lowercase())
        } else {
            self.file_name().to_owned()
        }
    }

    /// Whether the view shows results (all but the training curves).
    pub fn needs_results(self) -> bool {
        self != Self::Training
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
        self.questions = questions::QuestionsState::default();
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
    let palette = Palette::of(ui.ctx());
    // The legend sits beside the title, off the data.
    ui.horizontal(|ui| {
        ui.strong(&chart.title);
        for (n, s) in chart.series.iter().enumerate() {
            let color = series_color(palette, s.side, n);
            ui.label(egui::RichText::new(&s.name).color(color));
        }
    });
    let plot = Plot::new(&chart.title)
        .height(height)
        .x_axis_label(chart.x_label.as_str())
        .y_axis_label(if log_y {
            format!("log10 {}", chart.y_label)
        } else {
            chart.y_label.clone()
        })
        .allow_scroll(false);
    let mut plot = readable_y_axis(plot);
    if log_y {
        plot = plot.y_axis_formatter(|mark, _| format!("1e{:.1}", mark.value));
    }
    plot.show(ui, |plot_ui| {
        for (n, s) in chart.series.iter().enumerate() {
            let points: Vec<[f64; 2]> = s
                .points
                .iter()
                .filter(|p| p.0.is_finite() && p.1.is_finite() && (!log_y || p.1 > 0.0))
                .map(|&(x, y)| [x, if log_y { y.log10() } else { y }])
                .collect();
            plot_ui.line(
                Line::new(s.name.as_str(), PlotPoints::new(points))
                    .color(series_color(palette, s.side, n))
                    .width(1.5),
            );
        }
    });
}
