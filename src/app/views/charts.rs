//! Edge-distribution curves (sorted |score|, cumulative share, histogram of signed scores) and
//! per-layer metric curves, both models overlaid.

use super::super::results::Results;
use super::super::theme::Palette;
use super::{line_chart_ui, series_color};
use crate::report::circuit::Mode;
use crate::report::figures::{Histogram, LineChart};
use egui::Ui;
use egui_plot::{Bar, BarChart, Legend, Plot};

/// The three distribution charts; `log_y` puts sorted |score| on a log axis.
pub fn distributions_ui(ui: &mut Ui, results: &Results, log_y: &mut bool) {
    ui.checkbox(log_y, "Log |score| axis");
    let height = ((ui.available_height() - 110.0) / 3.0).max(120.0);
    let f = &results.figures;
    line_chart_ui(ui, &f.sorted, *log_y, height);
    line_chart_ui(ui, &f.cumulative, false, height);
    histogram_ui(ui, &f.histogram, height, "edges");
}

/// Overlaid bar charts of a histogram's series; `y_label` names what is counted.
pub fn histogram_ui(ui: &mut Ui, h: &Histogram, height: f32, y_label: &str) {
    let palette = Palette::of(ui.ctx());
    ui.strong(&h.title);
    let binned = h.binned();
    Plot::new(&h.title)
        .height(height)
        .legend(Legend::default())
        .x_axis_label(h.x_label.as_str())
        .y_axis_label(y_label)
        .allow_scroll(false)
        .show(ui, |plot_ui| {
            for (n, (sample, counts)) in h.series.iter().zip(&binned.counts).enumerate() {
                let color = series_color(palette, sample.side, n);
                let bars = counts
                    .iter()
                    .enumerate()
                    .map(|(i, &c)| {
                        Bar::new(binned.lo + (i as f64 + 0.5) * binned.width, c as f64)
                            .width(binned.width)
                            .fill(color.gamma_multiply(0.45))
                            .stroke(egui::Stroke::new(0.5, color))
                    })
                    .collect();
                plot_ui.bar_chart(BarChart::new(sample.name.as_str(), bars).color(color));
            }
        });
}

/// The per-layer charts of `mode`: the paired differences tuned − base in a mode of change
/// (when the results are a pair), else both models' levels.
pub fn per_layer_charts(results: &Results, mode: Mode) -> &[LineChart] {
    let f = &results.figures;
    if shows_difference(results, mode) {
        &f.per_layer_difference
    } else {
        &f.per_layer
    }
}

/// Whether the per-layer view shows differences in `mode`.
fn shows_difference(results: &Results, mode: Mode) -> bool {
    mode.is_change() && !results.figures.per_layer_difference.is_empty()
}

/// Every metric per destination layer, two charts a row, with their intervals: both models'
/// levels, or in a mode of change the paired difference tuned − base and the zero line.
pub fn per_layer_ui(ui: &mut Ui, results: &Results, mode: Mode) {
    let charts = per_layer_charts(results, mode);
    ui.label(if shows_difference(results, mode) {
        "Paired difference tuned − base per layer: the mean over the questions of each \
         question's difference, with its bootstrap interval (the band); the line at 0 is no \
         change. Base or Tuned shows both models' levels."
    } else {
        "Mean over the questions per layer with its bootstrap interval (the band). Difference \
         shows the paired difference tuned − base."
    });
    let height =
        ((ui.available_height() - 60.0) / charts.len().div_ceil(2) as f32 - 30.0).max(90.0);
    egui::ScrollArea::vertical().show(ui, |ui| {
        for pair in charts.chunks(2) {
            ui.columns(2, |cols| {
                for (col, chart) in cols.iter_mut().zip(pair) {
                    line_chart_ui(col, chart, false, height);
                }
            });
        }
    });
}
