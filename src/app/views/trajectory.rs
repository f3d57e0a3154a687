//! A trajectory: every chosen metric's mean over the training steps with its interval, beside
//! the trainer's reward, accuracy, KL and loss and the question set's accuracy, all on one
//! linked step axis; a slider (or a click in any plot) chooses the checkpoint that the other
//! views compare with the first, marked in every plot.

use super::super::trajectory::{TrajectoryResults, TrajectoryState};
use super::{chart_header_ui, chart_plot_ui, help, ChartStyle};
use crate::attribution::metrics::Metric;
use crate::report::figures::LineChart;
use crate::report::table::Cell;
use egui::Ui;

/// Draw the open trajectory (or say how to open one). Returns the checkpoint chosen this frame.
pub fn trajectory_ui(ui: &mut Ui, state: &mut TrajectoryState) -> Option<usize> {
    let Some(data) = state.data.clone() else {
        ui.centered_and_justified(|ui| {
            ui.label(
                "No trajectory open: open the folder that `circuitdiff trajectory` wrote \
                 (Open results folder…, or drop it here), or the demo trajectory in the \
                 Results panel",
            );
        });
        return None;
    };
    let mut chosen = header_ui(ui, &data, state);
    metric_picker_ui(ui, &mut state.metrics);
    ui.horizontal(|ui| {
        ui.label("Curves");
        ui.selectable_value(&mut state.levels, false, "Change from first")
            .on_hover_text(
                "each metric's mean paired difference from the first checkpoint, question by \
                 question, with its paired interval (the band); 0 is no change",
            );
        ui.selectable_value(&mut state.levels, true, "Levels")
            .on_hover_text(
                "each metric's mean over the question set with its own interval; overlapping \
                 bands do not mean the paired change is insignificant",
            );
    });
    if let Some(j) = charts_ui(ui, &data, state) {
        chosen = Some(j);
    }
    chosen.filter(|&j| j != state.selected)
}

/// The trajectory's line, the checkpoint slider and the chosen checkpoint's line.
fn header_ui(ui: &mut Ui, data: &TrajectoryResults, state: &TrajectoryState) -> Option<usize> {
    let t = &data.summary;
    let name = data.dir.file_name().map_or_else(
        || data.dir.display().to_string(),
        |n| n.to_string_lossy().into(),
    );
    ui.horizontal(|ui| {
        ui.heading(format!("Trajectory {name}"));
        ui.label(format!(
            "{} checkpoints, {} questions, K = {}, {} answers",
            t.points.len(),
            t.n,
            t.k,
            t.answers.name()
        ))
        .on_hover_text(format!(
            "the question set: {}; {}",
            t.questions.describe(),
            t.answers.describe()
        ));
    });
    let mut j = state.selected;
    let last = data.last();
    ui.horizontal(|ui| {
        ui.label("Checkpoint");
        ui.add_enabled(
            last > 0,
            egui::Slider::new(&mut j, 0..=last).show_value(false),
        )
        .on_hover_text("the checkpoint the other views compare with the first (or click a plot)");
        if ui
            .add_enabled(j > 0, egui::Button::new("Previous"))
            .clicked()
        {
            j -= 1;
        }
        if ui
            .add_enabled(j < last, egui::Button::new("Next"))
            .clicked()
        {
            j += 1;
        }
        checkpoint_line_ui(ui, data, state.selected);
        if state.busy() {
            ui.spinner();
        }
    });
    Some(j)
}

/// Step, model, accuracy and loss of checkpoint `j`.
fn checkpoint_line_ui(ui: &mut Ui, data: &TrajectoryResults, j: usize) {
    let Some(p) = data.point(j) else {
        return;
    };
    ui.strong(data.label(j)).on_hover_text(&p.model);
    let accuracy = p
        .accuracy
        .map_or_else(|| "not graded".to_owned(), |a| Cell::Share(a).text());
    ui.label(format!(
        "accuracy {accuracy}, mean loss {}",
        short(p.mean_loss, false)
    ))
    .on_hover_text(
        "the share of the question set answered correctly, and the mean loss per scored \
         answer token (nats)",
    );
}

/// `v` to three significant digits, scientific below 0.001 and from 10 000; with a sign when
/// `signed`.
fn short(v: f64, signed: bool) -> String {
    let a = v.abs();
    let text = if a != 0.0 && !(1e-3..1e4).contains(&a) {
        format!("{a:.2e}")
    } else {
        let decimals = if a == 0.0 {
            0
        } else {
            (2.0 - a.log10().floor()).clamp(0.0, 5.0) as usize
        };
        format!("{a:.decimals$}")
    };
    let sign = if v < 0.0 {
        "-"
    } else if signed && v > 0.0 {
        "+"
    } else {
        ""
    };
    if v.is_finite() {
        format!("{sign}{text}")
    } else {
        "n/a".to_owned()
    }
}

/// A toggle per metric: which curves are drawn.
fn metric_picker_ui(ui: &mut Ui, metrics: &mut Vec<Metric>) {
    ui.horizontal_wrapped(|ui| {
        for metric in Metric::ALL {
            let on = metrics.contains(&metric);
            if ui
                .selectable_label(on, metric.name())
                .on_hover_text(help::metric_tooltip(metric))
                .clicked()
            {
                if on {
                    metrics.retain(|&m| m != metric);
                } else {
                    metrics.push(metric);
                    metrics.sort_by_key(|m| Metric::ALL.iter().position(|a| a == m));
                }
            }
        }
    });
}

/// The chosen metrics' curves (left) beside the training curves (right), one step axis; the
/// checkpoint of a click in any of them.
fn charts_ui(ui: &mut Ui, data: &TrajectoryResults, state: &TrajectoryState) -> Option<usize> {
    let metrics: Vec<(Metric, &LineChart)> = state
        .metrics
        .iter()
        .filter_map(|&m| Some((m, data.metric_chart(m, state.levels)?)))
        .collect();
    let rows = metrics.len().max(data.training.len()).max(1);
    let height = (ui.available_height() / rows as f32 - 30.0).max(110.0);
    let steps: Vec<f64> = data.summary.points.iter().map(|p| p.step as f64).collect();
    let (lo, hi) = (
        steps.first().copied().unwrap_or(0.0),
        steps.last().copied().unwrap_or(1.0),
    );
    let pad = ((hi - lo) * 0.03).max(0.5);
    let style = ChartStyle {
        log_y: false,
        height,
        shared_x: Some((egui::Id::unique("trajectory steps"), [lo - pad, hi + pad])),
        marker: steps.get(state.selected).copied(),
    };
    let mut clicked = None;
    egui::ScrollArea::vertical().show(ui, |ui| {
        ui.columns(2, |cols| {
            if let [left, right] = cols {
                for (metric, chart) in &metrics {
                    metric_header_ui(left, data, *metric, state.selected);
                    clicked = chart_plot_ui(left, chart, &style).or(clicked);
                }
                if data.training.is_empty() {
                    right.label("No training log in this trajectory");
                }
                for chart in &data.training {
                    chart_header_ui(right, chart);
                    clicked = chart_plot_ui(right, chart, &style).or(clicked);
                }
            }
        });
    });
    clicked.map(|x| data.nearest(x))
}

/// A metric's name, its level at checkpoint `j`, and its paired change from the first
/// checkpoint with the interval and p-value; the details on hover.
fn metric_header_ui(ui: &mut Ui, data: &TrajectoryResults, metric: Metric, j: usize) {
    let Some(p) = data.point(j) else {
        return;
    };
    let confidence = Cell::Share(data.summary.options.confidence).text();
    ui.horizontal_wrapped(|ui| {
        ui.strong(metric.name())
            .on_hover_text(help::metric_tooltip(metric));
        if let Some(l) = p.level(metric) {
            ui.label(short(l.mean, false)).on_hover_text(format!(
                "mean over the question set at step {}, {confidence} interval [{}, {}] (the band \
                 of Levels)",
                p.step,
                short(l.ci_low, false),
                short(l.ci_high, false)
            ));
        }
        if let Some(c) = p.change(metric) {
            ui.label(format!(
                "change {} [{}, {}], p {} (adjusted {})",
                short(c.mean_diff, true),
                short(c.ci_low, true),
                short(c.ci_high, true),
                short(c.p_value, false),
                short(c.p_adjusted, false)
            ))
            .on_hover_text(format!(
                "mean paired difference from {} over the question set, its {confidence} \
                 interval (the band of Change from first), the Wilcoxon signed-rank p-value and the \
                 adjusted p-value ({})",
                data.label(0),
                family(&data.summary)
            ));
        }
    });
}

/// The family the trajectory's adjusted p-values are corrected over, in words.
fn family(t: &crate::report::trajectory::Trajectory) -> String {
    if t.family.is_empty() {
        "no correction recorded in this summary".to_owned()
    } else {
        t.family.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::short;

    #[test]
    fn short_numbers_keep_three_digits() {
        assert_eq!(short(0.001_403, false), "0.00140");
        assert_eq!(short(-7.026e-4, true), "-7.03e-4");
        assert_eq!(short(3.6367, false), "3.64");
        assert_eq!(short(0.0796, true), "+0.0796");
        assert_eq!(short(12.5, false), "12.5");
        assert_eq!(short(0.0, true), "0");
        assert_eq!(short(f64::NAN, false), "n/a");
    }
}
