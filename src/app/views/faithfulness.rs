//! Is the circuit real? (method.md §7) EAP's score against the exact effect of each checked
//! edge, one chart per model with the diagonal where the estimate is exact; the faithfulness
//! curves of the top-k circuits, base against tuned; both models' per-sample losses; and which
//! conclusions of the comparison hold for the exact effects too.

use super::super::results::Results;
use super::super::theme::Palette;
use super::charts::histogram_ui;
use super::{line_chart_ui, readable_y_axis};
use crate::report::figures::Scatter;
use crate::report::saturation::Saturation;
use crate::report::table::Cell;
use crate::report::validation::{Validation, Verdict};
use egui::Ui;
use egui_plot::{Line, Plot, PlotPoints, Points};

/// The view: the check's summary and verdicts, then the charts, two a row.
pub fn faithfulness_ui(ui: &mut Ui, r: &Results) {
    let palette = Palette::of(ui.ctx());
    let validation = r.comparison.as_ref().and_then(|c| c.validation.as_ref());
    match validation {
        Some(v) => summary_ui(ui, v),
        None => {
            ui.label(
                "These results hold no exact effects: run the study with exact effects on \
                 (the study form's \"Exact effects\", or `--exact-samples N` on the command line) \
                 to check EAP's estimates against the true loss change of removing each edge.",
            );
        }
    }
    if let Some(tuned) = &r.tuned {
        let sat = Saturation::of(&r.base, tuned);
        ui.label(sat.line());
        if let Some(w) = sat.warning() {
            ui.colored_label(palette.error(), format!("Warning: {w}."));
        }
    }
    ui.separator();
    let f = &r.figures;
    let rows = if f.exact.is_some() { 2.0 } else { 1.0 };
    let height = ((ui.available_height() - 60.0) / rows - 30.0).max(140.0);
    egui::ScrollArea::vertical().show(ui, |ui| {
        if let Some((scatters, curves)) = &f.exact {
            ui.columns(2, |cols| {
                for (col, s) in cols.iter_mut().zip(scatters) {
                    scatter_ui(col, s, height);
                }
            });
            ui.columns(2, |cols| {
                line_chart_ui(&mut cols[0], curves, false, height);
                if let Some(losses) = &f.losses {
                    histogram_ui(&mut cols[1], losses, height, "questions");
                }
            });
        } else if let Some(losses) = &f.losses {
            histogram_ui(ui, losses, height, "questions");
        }
    });
}

/// The agreement of each model, the verdict on each headline metric with its reason, edge
/// set and question count, and the faithfulness levels and summaries paired.
fn summary_ui(ui: &mut Ui, v: &Validation) {
    let palette = Palette::of(ui.ctx());
    let brief = v.brief();
    for line in brief.lines() {
        ui.label(line);
    }
    if v.robustness.is_empty() {
        return;
    }
    egui::Grid::new("robustness")
        .striped(true)
        .spacing([18.0, 4.0])
        .show(ui, |ui| {
            for h in [
                "metric",
                "Δ from EAP (adjusted p)",
                "Δ from exact effects (adjusted p)",
                "verdict",
            ] {
                ui.strong(h);
            }
            ui.end_row();
            for r in &v.robustness {
                ui.strong(r.metric.name())
                    .on_hover_text(super::help::metric_tooltip(r.metric));
                for s in [&r.eap, &r.exact] {
                    ui.monospace(format!(
                        "{} {} ({})",
                        Cell::Change(s.mean_diff).text(),
                        Cell::Interval(s.ci_low, s.ci_high).text(),
                        Cell::AdjustedP(s.p_adjusted).text()
                    ));
                }
                let color = match r.verdict {
                    Verdict::Confirmed => palette.highlight(),
                    Verdict::Contradicted | Verdict::NotConfirmed => palette.error(),
                    Verdict::NotSignificant | Verdict::Inconclusive => palette.structural(),
                };
                ui.colored_label(color, r.verdict.word())
                    .on_hover_text(&r.reason);
                ui.end_row();
            }
        });
}

/// The colour of a scatter's `n`th series: none of the models' colours (the sets of edges
/// of one model are drawn, not the models).
fn point_color(palette: Palette, n: usize) -> egui::Color32 {
    palette.series(2 + 2 * n)
}

/// Points of each series, each axis fitted to its values, and the part of the diagonal y = x
/// inside them.
fn scatter_ui(ui: &mut Ui, s: &Scatter, height: f32) {
    let palette = Palette::of(ui.ctx());
    ui.horizontal(|ui| {
        ui.strong(&s.title);
        for (n, series) in s.series.iter().enumerate() {
            ui.label(egui::RichText::new(&series.name).color(point_color(palette, n)));
        }
    });
    let finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
    let plot = Plot::new(&s.title)
        .height(height)
        .x_axis_label(s.x_label.as_str())
        .y_axis_label(s.y_label.as_str())
        .allow_scroll(false);
    readable_y_axis(plot).show(ui, |plot_ui| {
        if let Some((lo, hi)) = s.diagonal() {
            plot_ui.line(
                Line::new("exact = EAP", PlotPoints::new(vec![[lo, lo], [hi, hi]]))
                    .color(palette.structural())
                    .width(1.0),
            );
        }
        for (n, series) in s.series.iter().enumerate() {
            let points: Vec<[f64; 2]> = series
                .points
                .iter()
                .filter(finite)
                .map(|&(x, y)| [x, y])
                .collect();
            plot_ui.points(
                Points::new(series.name.as_str(), PlotPoints::new(points))
                    .color(point_color(palette, n))
                    .radius(2.5),
            );
        }
    });
}
