//! The comparison as a table: one value, rendered as Markdown, CSV and aligned terminal text by
//! the report, the CLI, the demo summary and the app alike.

use super::run::csv_field;
use crate::attribution::compare::PairedStat;
use crate::attribution::exact::{Area, Reach};
use crate::attribution::metrics::{Metric, Metrics};

/// One cell: a value with its meaning, formatted by the renderer.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Metric(Metric),
    Text(String),
    Count(usize),
    /// A value read by people: four significant digits, scientific for small and large
    /// magnitudes.
    Value(f64),
    /// A signed difference, formatted like [`Cell::Value`] with its sign.
    Change(f64),
    /// A relative change (a fraction), shown as a signed percentage.
    Relative(f64),
    /// A share (a fraction), shown as a percentage.
    Share(f64),
    /// A p-value: four decimals, scientific below 1e-3.
    P(f64),
    /// A p-value adjusted for its family of tests, formatted like [`Cell::P`]: what
    /// significance marks and conclusions read.
    AdjustedP(f64),
    /// An interval of differences.
    Interval(f64, f64),
    /// A value at full precision (machine-readable files); empty when not finite.
    Exact(f64),
}

impl Cell {
    /// The cell as text.
    pub fn text(&self) -> String {
        match self {
            Self::Metric(m) => m.name().to_owned(),
            Self::Text(t) => t.clone(),
            Self::Count(n) => n.to_string(),
            Self::Value(v) => value(*v, false),
            Self::Change(v) => value(*v, true),
            Self::Relative(v) if v.is_finite() => format!("{:+.1} %", 100.0 * v),
            Self::Share(v) if v.is_finite() => format!("{:.0} %", 100.0 * v),
            Self::P(v) | Self::AdjustedP(v) => value(*v, false),
            Self::Relative(_) | Self::Share(_) => "—".into(),
            Self::Interval(lo, hi) => format!("[{}, {}]", value(*lo, true), value(*hi, true)),
            Self::Exact(v) if v.is_finite() => v.to_string(),
            Self::Exact(_) => String::new(),
        }
    }

    /// The sort key of the cell (NaN for text and intervals sort by their low end).
    pub fn key(&self) -> f64 {
        match self {
            Self::Metric(_) | Self::Text(_) => f64::NAN,
            Self::Count(n) => *n as f64,
            Self::Value(v)
            | Self::Change(v)
            | Self::Relative(v)
            | Self::Share(v)
            | Self::P(v)
            | Self::AdjustedP(v)
            | Self::Exact(v) => *v,
            Self::Interval(lo, _) => *lo,
        }
    }
}

/// Four significant digits; scientific notation below 1e-3 and from 1e4 on; "—" when not
/// finite.
fn value(v: f64, signed: bool) -> String {
    match (
        v.is_finite(),
        v != 0.0 && (v.abs() >= 1e4 || v.abs() < 1e-3),
        signed,
    ) {
        (false, _, _) => "—".into(),
        (true, true, false) => format!("{v:.3e}"),
        (true, true, true) => format!("{v:+.3e}"),
        (true, false, false) => format!("{v:.4}"),
        (true, false, true) => format!("{v:+.4}"),
    }
}

/// Columns and rows of cells.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

/// The columns of [`Table::paired`], in display order.
pub const PAIRED_COLUMNS: [&str; 9] = [
    "Metric",
    "Base",
    "Tuned",
    "Δ (tuned − base)",
    "Relative change",
    "Tuned > base",
    "p-value",
    "adjusted p",
    "95 % CI of Δ",
];

/// What names a row of paired statistics: a metric of score vectors, or another per-sample
/// quantity.
pub trait RowName {
    fn cell(&self) -> Cell;
}

impl RowName for Metric {
    fn cell(&self) -> Cell {
        Cell::Metric(*self)
    }
}

impl RowName for Reach {
    fn cell(&self) -> Cell {
        Cell::Text(self.name().to_owned())
    }
}

impl RowName for Area {
    fn cell(&self) -> Cell {
        Cell::Text(self.name().to_owned())
    }
}

impl Table {
    /// The paired statistics as people read them: means, mean difference, relative change,
    /// share of pairs where tuned is greater, Wilcoxon p-value, the p-value adjusted for its
    /// family and the bootstrap interval.
    pub fn paired<M: RowName>(stats: &[PairedStat<M>]) -> Self {
        Self {
            columns: PAIRED_COLUMNS.map(str::to_owned).to_vec(),
            rows: stats
                .iter()
                .map(|s| {
                    vec![
                        s.metric.cell(),
                        Cell::Value(s.base_mean),
                        Cell::Value(s.tuned_mean),
                        Cell::Change(s.mean_diff),
                        Cell::Relative(s.relative_change),
                        Cell::Share(s.share_tuned_greater),
                        Cell::P(s.p_value),
                        Cell::AdjustedP(s.p_adjusted),
                        Cell::Interval(s.ci_low, s.ci_high),
                    ]
                })
                .collect(),
        }
    }

    /// One run's metrics in the layout of [`Table::paired`], in its Base column.
    pub fn single(m: &Metrics) -> Self {
        let empty = || Cell::Text(String::new());
        Self {
            columns: PAIRED_COLUMNS.map(str::to_owned).to_vec(),
            rows: Metric::ALL
                .into_iter()
                .map(|metric| {
                    let mut row = vec![Cell::Metric(metric), Cell::Value(m.get(metric))];
                    row.resize_with(PAIRED_COLUMNS.len(), empty);
                    row
                })
                .collect(),
        }
    }

    /// Every field of every paired statistic at full precision: `comparison.csv`.
    pub fn exact(stats: &[PairedStat]) -> Self {
        let columns = [
            "metric",
            "n",
            "base_mean",
            "base_median",
            "tuned_mean",
            "tuned_median",
            "mean_diff",
            "median_diff",
            "relative_change",
            "share_tuned_greater",
            "wilcoxon_statistic",
            "p_value",
            "p_adjusted",
            "p_method",
            "ci_low",
            "ci_high",
        ];
        Self {
            columns: columns.map(str::to_owned).to_vec(),
            rows: stats
                .iter()
                .map(|s| {
                    let mut row = vec![Cell::Metric(s.metric), Cell::Count(s.n)];
                    row.extend(
                        [
                            s.base_mean,
                            s.base_median,
                            s.tuned_mean,
                            s.tuned_median,
                            s.mean_diff,
                            s.median_diff,
                            s.relative_change,
                            s.share_tuned_greater,
                            s.wilcoxon_statistic,
                            s.p_value,
                            s.p_adjusted,
                        ]
                        .map(Cell::Exact),
                    );
                    row.push(Cell::Text(s.p_method.as_str().to_owned()));
                    row.extend([s.ci_low, s.ci_high].map(Cell::Exact));
                    row
                })
                .collect(),
        }
    }

    /// Append a column.
    pub fn push_column(&mut self, name: &str, cells: impl IntoIterator<Item = Cell>) {
        self.columns.push(name.to_owned());
        for (row, cell) in self.rows.iter_mut().zip(cells) {
            row.push(cell);
        }
    }

    /// Sort the rows by column `col`: by name for text, else by value with NaN last.
    pub fn sort_by(&mut self, col: usize, descending: bool) {
        self.rows.sort_by(|a, b| {
            let (x, y) = (&a[col], &b[col]);
            let (kx, ky) = (x.key(), y.key());
            let ord = if kx.is_nan() && ky.is_nan() {
                x.text().cmp(&y.text())
            } else {
                match (kx.is_nan(), ky.is_nan()) {
                    (true, _) => return std::cmp::Ordering::Greater,
                    (_, true) => return std::cmp::Ordering::Less,
                    _ => kx.total_cmp(&ky),
                }
            };
            if descending {
                ord.reverse()
            } else {
                ord
            }
        });
    }

    /// A Markdown table; a `|` inside a header or cell (`Δ|S|`) is escaped.
    pub fn markdown(&self) -> String {
        let escape = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        let header: Vec<String> = self.columns.iter().map(|c| escape(c)).collect();
        let mut out = format!("| {} |\n", header.join(" | "));
        out.push_str(&format!("|{}\n", " --- |".repeat(self.columns.len())));
        for row in &self.rows {
            let cells: Vec<String> = row.iter().map(|c| escape(&c.text())).collect();
            out.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        out
    }

    /// CSV with a header line.
    pub fn csv(&self) -> String {
        let line = |cells: Vec<String>| {
            let fields: Vec<String> = cells.iter().map(|c| csv_field(c)).collect();
            fields.join(",") + "\n"
        };
        let mut out = line(self.columns.clone());
        for row in &self.rows {
            out.push_str(&line(row.iter().map(Cell::text).collect()));
        }
        out
    }

    /// Aligned plain text for a terminal: the first column left-aligned, the others right.
    pub fn text(&self) -> String {
        let rows: Vec<Vec<String>> = std::iter::once(self.columns.clone())
            .chain(self.rows.iter().map(|r| r.iter().map(Cell::text).collect()))
            .collect();
        let widths: Vec<usize> = (0..self.columns.len())
            .map(|i| {
                rows.iter()
                    .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for r in &rows {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(i, (c, &w))| {
                    let pad = " ".repeat(w - c.chars().count());
                    if i == 0 {
                        format!("{c}{pad}")
                    } else {
                        format!("{pad}{c}")
                    }
                })
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::metrics::metrics;

    #[test]
    fn one_value_three_renderings() {
        let t = Table::single(&metrics(&[1.0, -2.0, 0.5], 0.5, &Default::default()));
        let csv = t.csv();
        assert_eq!(csv.lines().count(), 12);
        assert!(csv.starts_with("Metric,Base,Tuned"), "{csv}");
        let mut rows = csv.lines().skip(1);
        assert!(
            rows.next().unwrap().starts_with("intensity,1.1667,,"),
            "{csv}"
        );
        assert!(
            rows.next()
                .unwrap()
                .starts_with("relative_intensity,2.3333,,"),
            "{csv}"
        );
        let md = t.markdown();
        assert_eq!(md.lines().count(), 13);
        assert!(md.lines().nth(1).unwrap().starts_with("| --- |"), "{md}");
        let text = t.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 12);
        // Right-aligned values end in the same column.
        let end = |l: &str, v: &str| l.find(v).map(|i| l[..i].chars().count() + v.len());
        assert_eq!(end(lines[0], "Base"), end(lines[1], "1.1667"), "{text}");
    }

    #[test]
    fn numbers_read_at_every_magnitude() {
        assert_eq!(Cell::Value(3.0373e-5).text(), "3.037e-5");
        assert_eq!(Cell::Change(-2.1e-6).text(), "-2.100e-6");
        assert_eq!(Cell::Change(0.25).text(), "+0.2500");
        assert_eq!(Cell::Value(0.0).text(), "0.0000");
        assert_eq!(Cell::Relative(-0.28).text(), "-28.0 %");
        assert_eq!(Cell::Relative(f64::NAN).text(), "—");
        assert_eq!(Cell::Exact(f64::NAN).text(), "");
        assert_eq!(Cell::Exact(0.1).text(), "0.1");
        assert_eq!(Cell::P(0.0078).text(), "0.0078");
        assert_eq!(Cell::P(3.2e-5).text(), "3.200e-5");
    }

    #[test]
    fn sorting_puts_nan_last_and_names_in_order() {
        let mut t = Table {
            columns: vec!["m".into(), "v".into()],
            rows: vec![
                vec![Cell::Metric(Metric::Gini), Cell::Value(f64::NAN)],
                vec![Cell::Metric(Metric::Entropy), Cell::Value(2.0)],
                vec![Cell::Metric(Metric::Top1), Cell::Value(1.0)],
            ],
        };
        t.sort_by(1, true);
        let first: Vec<String> = t.rows.iter().map(|r| r[0].text()).collect();
        assert_eq!(first, ["entropy", "top1", "gini"]);
        t.sort_by(0, false);
        let first: Vec<String> = t.rows.iter().map(|r| r[0].text()).collect();
        assert_eq!(first, ["entropy", "gini", "top1"]);
    }
}
