//! Training curves: `train_log.csv` files of a lab directory (one subfolder per trained model),
//! read into one line chart per metric with a curve per model.
//!
//! A log's header starts with `step`; every other column is a metric. Cells may be empty (not
//! measured at that step) and are skipped, as are cells that are not numbers.

use super::figures::{LineChart, Series};
use super::run::RunError;
use std::path::Path;

/// The log file a trained model's folder holds.
pub const FILE_NAME: &str = "train_log.csv";

/// One model's training log.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainLog {
    /// The model (its folder's name).
    pub name: String,
    /// Metric columns, in file order, each with its (step, value) points.
    pub columns: Vec<(String, Vec<(f64, f64)>)>,
}

/// Parse the text of a `train_log.csv`.
pub fn parse(name: &str, text: &str, path: &Path) -> Result<TrainLog, RunError> {
    let invalid = |message: String| RunError::Invalid {
        path: path.to_owned(),
        message,
    };
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| invalid("empty file; expected a header line `step,…`".into()))?
        .split(',')
        .map(str::trim)
        .collect();
    if header.first() != Some(&"step") {
        return Err(invalid(format!(
            "the first column is `{}`; expected `step`",
            header.first().unwrap_or(&"")
        )));
    }
    let mut columns: Vec<(String, Vec<(f64, f64)>)> = header[1..]
        .iter()
        .map(|h| ((*h).to_owned(), Vec::new()))
        .collect();
    for (i, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let step: f64 = cells[0].parse().map_err(|_| {
            invalid(format!(
                "line {}: step `{}` is not a number",
                i + 2,
                cells[0]
            ))
        })?;
        for (col, cell) in columns.iter_mut().zip(cells.iter().skip(1)) {
            if let Ok(v) = cell.parse::<f64>() {
                if v.is_finite() {
                    col.1.push((step, v));
                }
            }
        }
    }
    columns.retain(|c| !c.1.is_empty());
    Ok(TrainLog {
        name: name.to_owned(),
        columns,
    })
}

/// Read the logs of every subfolder of `dir` that holds a `train_log.csv`, sorted by name.
pub fn read_lab(dir: &Path) -> Result<Vec<TrainLog>, RunError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| RunError::Io { path, source }
    };
    let mut logs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path().join(FILE_NAME);
        if path.is_file() {
            let text = std::fs::read_to_string(&path).map_err(io(&path))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            logs.push(parse(&name, &text, &path)?);
        }
    }
    logs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(logs)
}

/// One chart per metric (in order of first appearance), a curve per model that logged it.
pub fn charts(logs: &[TrainLog]) -> Vec<LineChart> {
    let mut metrics: Vec<&str> = Vec::new();
    for log in logs {
        for (name, _) in &log.columns {
            if !metrics.contains(&name.as_str()) {
                metrics.push(name);
            }
        }
    }
    metrics
        .into_iter()
        .map(|metric| LineChart {
            title: metric.to_owned(),
            x_label: "step".into(),
            y_label: metric.to_owned(),
            log_y: false,
            series: logs
                .iter()
                .filter_map(|log| {
                    let (_, points) = log.columns.iter().find(|c| c.0 == metric)?;
                    Some(Series {
                        name: log.name.clone(),
                        side: None,
                        points: points.clone(),
                    })
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_cells_are_skipped_and_extra_columns_kept() {
        let text = "step,loss,reward,accuracy,kl,entropy\n0,2.5,,0.1,,\n10,2.0,0.5,,0.01,3\n20,1.5,0.7,0.3,0.02,x\n";
        let log = parse("grpo", text, Path::new("grpo/train_log.csv")).unwrap();
        let names: Vec<&str> = log.columns.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(names, ["loss", "reward", "accuracy", "kl", "entropy"]);
        assert_eq!(log.columns[0].1, [(0.0, 2.5), (10.0, 2.0), (20.0, 1.5)]);
        assert_eq!(log.columns[1].1, [(10.0, 0.5), (20.0, 0.7)]);
        assert_eq!(log.columns[4].1, [(10.0, 3.0)]);

        let other = parse("ppo", "step,loss\n0,3\n", Path::new("p")).unwrap();
        let charts = charts(&[log, other]);
        assert_eq!(charts.len(), 5);
        assert_eq!(charts[0].series.len(), 2, "loss is logged by both");
        assert_eq!(charts[1].series.len(), 1, "reward only by grpo");
    }

    #[test]
    fn a_header_without_step_is_refused() {
        let err = parse("x", "loss,step\n1,2\n", Path::new("x.csv")).unwrap_err();
        assert!(err.to_string().contains("expected `step`"), "{err}");
    }
}
