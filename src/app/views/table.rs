//! The comparison table: every metric with base, tuned, Δ, relative change, share of samples
//! up, p-value and bootstrap interval; sortable by any column; copied as CSV or Markdown.

use super::super::results::Results;
use crate::report::table::Table;
use egui::Ui;

/// Sort order of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableState {
    /// Index into [`crate::report::table::PAIRED_COLUMNS`] (`None`: file order).
    pub sort: Option<usize>,
    pub descending: bool,
}

/// The table in the shown order: the comparison's paired statistics, or one run's metrics.
fn table(results: &Results, state: TableState) -> Table {
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
            Some(c) => ui.label(format!(
                "{} paired samples; Wilcoxon signed-rank p-values, bootstrap intervals ({} resamples)",
                c.n, c.options.bootstrap_resamples
            )),
            None => ui.label("One run: metrics of its mean score vector"),
        };
    });
    ui.separator();
    egui::ScrollArea::both().show(ui, |ui| {
        egui::Grid::new("comparison_table")
            .striped(true)
            .spacing([18.0, 6.0])
            .show(ui, |ui| {
                for (i, name) in table.columns.iter().enumerate() {
                    ui.horizontal(|ui| {
                        if ui.button(name).clicked() {
                            if state.sort == Some(i) {
                                state.descending = !state.descending;
                            } else {
                                state.sort = Some(i);
                                state.descending = false;
                            }
                        }
                        if state.sort == Some(i) {
                            ui.label(if state.descending {
                                "(descending)"
                            } else {
                                "(ascending)"
                            });
                        }
                    });
                }
                ui.end_row();
                for r in &table.rows {
                    for (i, c) in r.iter().enumerate() {
                        if i == 0 {
                            ui.strong(c.text());
                        } else {
                            ui.monospace(c.text());
                        }
                    }
                    ui.end_row();
                }
            });
    });
}
