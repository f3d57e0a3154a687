//! Edge-distribution curves (sorted |score|, cumulative share, histogram of signed scores) and
//! per-layer metric curves, both models overlaid.

use super::super::results::Results;
use super::super::theme::Palette;
use super::{line_chart_ui, series_color};
use crate::report::figures::Histogram;
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

/// Every metric per destination layer, two charts a row.
pub fn per_layer_ui(ui: &mut Ui, results: &Results) {
    let charts = &results.figures.per_layer;
    let height =
        ((ui.available_height() - 40.0) / charts.len().div_ceil(2) as f32 - 30.0).max(90.0);
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
