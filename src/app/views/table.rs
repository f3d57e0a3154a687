//! The comparison table: every metric with base, tuned, Δ, relative change, share of samples
//! up, p-value and bootstrap interval; sortable by any column; copied as CSV or Markdown.

use super::super::results::Results;
use crate::attribution::compare::PairedStat;
use crate::attribution::metrics::Metrics;
use crate::report::run::csv_field;
use egui::Ui;

/// The columns, in display order.
pub const COLUMNS: [&str; 8] = [
    "Metric",
    "Base",
    "Tuned",
    "Δ (tuned − base)",
    "Relative change",
    "Samples up",
    "p-value",
    "95% CI of Δ",
];

/// Sort order of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableState {
    /// Index into [`COLUMNS`] (`None`: file order).
    pub sort: Option<usize>,
    pub descending: bool,
}

/// One row: the metric and its cells.
struct Row {
    metric: String,
    /// Sort key per column (NaN sorts last).
    keys: [f64; 8],
    cells: [String; 8],
}

fn num(v: f64) -> String {
    if !v.is_finite() {
        "—".into()
    } else if v != 0.0 && (v.abs() >= 1e4 || v.abs() < 1e-3) {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

fn stat_row(s: &PairedStat, index: usize) -> Row {
    Row {
        metric: s.metric.clone(),
        keys: [
            index as f64,
            s.base_mean,
            s.tuned_mean,
            s.mean_diff,
            s.relative_change,
            s.share_tuned_greater,
            s.p_value,
            s.ci_low,
        ],
        cells: [
            s.metric.clone(),
            num(s.base_mean),
            num(s.tuned_mean),
            num(s.mean_diff),
            if s.relative_change.is_finite() {
                format!("{:+.1}%", 100.0 * s.relative_change)
            } else {
                "—".into()
            },
            format!("{:.0}%", 100.0 * s.share_tuned_greater),
            num(s.p_value),
            format!("[{}, {}]", num(s.ci_low), num(s.ci_high)),
        ],
    }
}

/// Rows of a single run: its mean-vector metrics in the Base column.
fn single_rows(m: &Metrics) -> Vec<Row> {
    Metrics::NAMES
        .iter()
        .zip(m.values())
        .enumerate()
        .map(|(i, (name, v))| {
            let mut keys = [f64::NAN; 8];
            keys[0] = i as f64;
            keys[1] = v;
            let mut cells: [String; 8] = Default::default();
            cells[0] = (*name).to_owned();
            cells[1] = num(v);
            Row {
                metric: (*name).to_owned(),
                keys,
                cells,
            }
        })
        .collect()
}

fn rows(results: &Results, state: TableState) -> Vec<Row> {
    let mut rows = match &results.comparison {
        Some(c) => c
            .metrics
            .iter()
            .enumerate()
            .map(|(i, s)| stat_row(s, i))
            .collect(),
        None => single_rows(&results.base.metrics.mean.overall),
    };
    if let Some(col) = state.sort {
        rows.sort_by(|a, b| {
            let (x, y) = (a.keys[col], b.keys[col]);
            let ord = if col == 0 {
                a.metric.cmp(&b.metric)
            } else {
                match (x.is_nan(), y.is_nan()) {
                    (true, true) => std::cmp::Ordering::Equal,
                    (true, false) => return std::cmp::Ordering::Greater,
                    (false, true) => return std::cmp::Ordering::Less,
                    _ => x.total_cmp(&y),
                }
            };
            if state.descending {
                ord.reverse()
            } else {
                ord
            }
        });
    }
    rows
}

/// The table as CSV, in the shown order.
fn to_csv(rows: &[Row]) -> String {
    let mut out = COLUMNS.map(csv_field).join(",");
    out.push('\n');
    for r in rows {
        out.push_str(
            &r.cells
                .iter()
                .map(|c| csv_field(c))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push('\n');
    }
    out
}

/// The table as a Markdown table, in the shown order.
fn to_markdown(rows: &[Row]) -> String {
    let mut out = format!("| {} |\n", COLUMNS.join(" | "));
    out.push_str(&format!("|{}\n", " --- |".repeat(COLUMNS.len())));
    for r in rows {
        out.push_str(&format!("| {} |\n", r.cells.join(" | ").replace('\n', " ")));
    }
    out
}

/// The metric names in the shown order (for tests and the copy actions).
pub fn shown_order(results: &Results, state: TableState) -> Vec<String> {
    rows(results, state).into_iter().map(|r| r.metric).collect()
}

/// Draw the table; clicking a header sorts by it (again: reverses).
pub fn table_ui(ui: &mut Ui, results: &Results, state: &mut TableState) {
    let rows = rows(results, *state);
    ui.horizontal(|ui| {
        if ui.button("Copy CSV").clicked() {
            ui.ctx().copy_text(to_csv(&rows));
        }
        if ui.button("Copy Markdown").clicked() {
            ui.ctx().copy_text(to_markdown(&rows));
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
                for (i, name) in COLUMNS.iter().enumerate() {
                    ui.horizontal(|ui| {
                        if ui.button(*name).clicked() {
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
                for r in &rows {
                    for (i, c) in r.cells.iter().enumerate() {
                        if i == 0 {
                            ui.strong(c);
                        } else {
                            ui.monospace(c);
                        }
                    }
                    ui.end_row();
                }
            });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_markdown_have_a_line_per_row() {
        let rows = single_rows(&crate::attribution::metrics::metrics(
            &[1.0, -2.0, 0.5],
            &Default::default(),
        ));
        let csv = to_csv(&rows);
        assert_eq!(csv.lines().count(), 11);
        assert!(csv.starts_with("Metric,Base,Tuned"), "{csv}");
        let first = csv.lines().nth(1).unwrap();
        assert!(first.starts_with("intensity,1.1667,,"), "{csv}");
        let md = to_markdown(&rows);
        assert_eq!(md.lines().count(), 12);
        assert!(md.lines().nth(1).unwrap().starts_with("| --- |"), "{md}");
    }
}
