//! The comparison table: every metric with base, tuned, Δ, relative change, share of samples
//! up, p-value and bootstrap interval; sortable by any column; copied as CSV or Markdown.

use super::super::results::Results;
use super::super::theme::Palette;
use crate::attribution::compare::CompareOptions;
use crate::report::comparison::Comparison;
use crate::report::saturation::Saturation;
use crate::report::span::ScoredSpan;
use crate::report::table::{Cell, Table};
use crate::side::Side;
use crate::study::dir::Counts;
use egui::Ui;

/// Sort order of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableState {
    /// Index into [`crate::report::table::PAIRED_COLUMNS`] (`None`: file order).
    pub sort: Option<usize>,
    pub descending: bool,
}

/// The table in the shown order: the comparison's paired statistics, or one run's metrics.
pub fn table(results: &Results, state: TableState) -> Table {
    let mut t = match &results.comparison {
        Some(c) => Table::paired(&c.metrics),
        None => Table::single(&results.base.metrics.mean.overall),
    };
    if let Some(col) = state.sort {
        t.sort_by(col, state.descending);
    }
    t
}

/// The metric names in the shown order (for tests and the copy actions).
pub fn shown_order(results: &Results, state: TableState) -> Vec<String> {
    table(results, state)
        .rows
        .iter()
        .map(|r| r[0].text())
        .collect()
}

/// Draw the table; clicking a header sorts by it (again: reverses).
pub fn table_ui(ui: &mut Ui, results: &Results, state: &mut TableState) {
    let table = table(results, *state);
    ui.horizontal(|ui| {
        if ui.button("Copy CSV").clicked() {
            ui.ctx().copy_text(table.csv());
        }
        if ui.button("Copy Markdown").clicked() {
            ui.ctx().copy_text(table.markdown());
        }
        match &results.comparison {
            Some(c) => ui
                .label(format!(
                    "{} pairs; (*) adjusted p < {}",
                    c.n,
                    significance_level(results)
                ))
                .on_hover_text(format!(
                    "p-value: Wilcoxon signed-rank; adjusted p: {}, marked below the \
                     significance level {}; intervals: percentile bootstrap ({} resamples)",
                    family(c),
                    significance_level(results),
                    c.options.bootstrap_resamples
                )),
            None => ui.label("One run: metrics of its mean score vector"),
        };
    });
    if let Some(counts) = &results.counts {
        ui.label(counts_line(counts));
    }
    span_ui(ui, &results.span());
    if let Some(tuned) = &results.tuned {
        let sat = Saturation::of(&results.base, tuned);
        ui.label(sat.line())
            .on_hover_text("EAP's gradients vanish as a model's probability of its own tokens approaches 1 (method.md section 7)");
        if let Some(w) = sat.warning() {
            ui.colored_label(Palette::of(ui.ctx()).error(), format!("Warning: {w}."));
        }
    }
    ui.separator();
    // Wider than the view (a narrow window, many columns): it scrolls sideways, its scroll bar
    // always shown so that the columns past the edge are not missed.
    let visible = egui::scroll_area::ScrollBarVisibility::AlwaysVisible;
    let right = egui::Margin {
        right: 12,
        bottom: 8,
        ..egui::Margin::ZERO
    };
    let scroll = egui::ScrollArea::both()
        .scroll_bar_visibility(visible)
        .content_margin(right);
    scroll.show(ui, |ui| {
        egui::Grid::new("comparison_table")
            .striped(true)
            .spacing([12.0, 6.0])
            .show(ui, |ui| {
                sort_header_ui(
                    ui,
                    &table.columns,
                    &[],
                    (&mut state.sort, &mut state.descending),
                );
                for r in &table.rows {
                    for c in r {
                        cell_ui(ui, c, significance_level(results));
                    }
                    ui.end_row();
                }
            });
    });
}

/// The significance level the table marks: one minus the interval's confidence.
fn significance_level(results: &Results) -> f64 {
    results.comparison.as_ref().map_or_else(
        || CompareOptions::default().significance_level(),
        |c| c.options.significance_level(),
    )
}

/// The family of tests the comparison's adjusted p-values are corrected over.
fn family(c: &Comparison) -> &str {
    if c.family.is_empty() {
        "no correction recorded in these results"
    } else {
        &c.family
    }
}

/// One cell: a metric with its definition on hover, an adjusted p-value below the
/// significance `level` marked `*`.
fn cell_ui(ui: &mut Ui, cell: &Cell, level: f64) {
    match cell {
        Cell::Metric(m) => {
            ui.strong(cell.text())
                .on_hover_text(super::help::metric_tooltip(*m));
        }
        Cell::AdjustedP(p) if *p < level => {
            let palette = super::super::theme::Palette::of(ui.ctx());
            ui.colored_label(
                palette.highlight(),
                egui::RichText::new(format!("{} *", cell.text())).monospace(),
            )
            .on_hover_text(format!(
                "adjusted p < {level}: the change is significant at this significance level \
                 after the correction for multiple comparisons"
            ));
        }
        _ => {
            ui.monospace(cell.text());
        }
    }
}

/// The scored span in one line, and its warning when K is small (method.md §8).
pub fn span_ui(ui: &mut Ui, span: &ScoredSpan) {
    ui.label(span.line()).on_hover_text(
        "Every edge score is the gradient of the loss over the first K tokens of each answer \
         (method.md section 3): the circuit explains those tokens only",
    );
    if let Some(w) = span.warning() {
        ui.colored_label(Palette::of(ui.ctx()).error(), format!("Warning: {w}."));
    }
}

/// The counts from questions to scored samples, in one line.
pub fn counts_line(c: &Counts) -> String {
    let accuracy = |side: Side| {
        let m = &c.models[side];
        if m.answered == 0 {
            "–".to_owned()
        } else {
            format!("{:.1} %", 100.0 * m.correct as f64 / m.answered as f64)
        }
    };
    format!(
        "{} questions asked; accuracy base {}, tuned {}; {} both correct; {} scored at K = {}",
        c.asked,
        accuracy(Side::Base),
        accuracy(Side::Tuned),
        c.both_correct,
        c.scored,
        c.k
    )
}

/// The column headers of a sortable grid, ending its row: a click sorts by the column (again:
/// reverses it); `help` holds each column's hover text, where it has one.
pub(super) fn sort_header_ui(
    ui: &mut Ui,
    columns: &[String],
    help: &[&str],
    (sort, descending): (&mut Option<usize>, &mut bool),
) {
    for (i, name) in columns.iter().enumerate() {
        ui.horizontal(|ui| {
            let mut button = ui.button(name);
            if let Some(text) = help.get(i) {
                button = button.on_hover_text(*text);
            }
            if button.clicked() {
                if *sort == Some(i) {
                    *descending = !*descending;
                } else {
                    *sort = Some(i);
                    *descending = false;
                }
            }
            if *sort == Some(i) {
                ui.label(if *descending {
                    "(descending)"
                } else {
                    "(ascending)"
                });
            }
        });
    }
    ui.end_row();
}
