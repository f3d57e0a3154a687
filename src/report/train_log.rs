//! Training curves: `train_log.csv` files of a lab directory (one subfolder per trained model),
//! read into one line chart per metric with a curve per model.
//!
//! A log's header starts with `step`; every other column is a metric. Cells may be empty (not
//! measured at that step) and are skipped, as are cells that are not numbers.

use super::figures::{LineChart, Series};
use super::run::RunError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The log file a trained model's folder holds.
pub const FILE_NAME: &str = "train_log.csv";

/// The state a TRL/transformers trainer writes beside its checkpoints, its log among it.
pub const TRAINER_STATE: &str = "trainer_state.json";

/// The name of a TRL (transformers Trainer) checkpoint's folder before its step.
const TRL_PREFIX: &str = "checkpoint-";

/// The folder of a TRL run's checkpoint after `step` steps (`checkpoint-40`).
pub fn trl_checkpoint_dir(out: &Path, step: u64) -> PathBuf {
    out.join(format!("{TRL_PREFIX}{step}"))
}

/// The step of a TRL checkpoint's folder name (`checkpoint-40`: 40).
pub fn trl_step(name: &str) -> Option<u64> {
    name.strip_prefix(TRL_PREFIX)?.parse().ok()
}

/// The columns every log written by the lab has after `step`, in order; a trainer may add its
/// own after them.
pub const STANDARD_COLUMNS: [&str; 4] = ["loss", "reward", "accuracy", "kl"];

/// A value for a column the log does not have.
#[derive(Debug, thiserror::Error)]
#[error("train log has no column `{0}`")]
pub struct UnknownColumn(pub String);

/// One model's training log: `step` and metric columns, a row per logged step, empty cells where
/// a value was not measured. The lab writes it, the app and the report read it.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainLog {
    /// The model (its folder's name).
    pub name: String,
    /// Metric columns after `step`, in file order.
    pub columns: Vec<String>,
    /// Each row's step and a value (or none) per column.
    pub rows: Vec<(f64, Vec<Option<f64>>)>,
}

impl TrainLog {
    /// An empty log with the standard columns and `extra` ones.
    pub fn new(name: &str, extra: &[&str]) -> Self {
        Self {
            name: name.to_owned(),
            columns: STANDARD_COLUMNS
                .iter()
                .chain(extra)
                .map(|c| (*c).to_owned())
                .collect(),
            rows: Vec::new(),
        }
    }

    /// Record `values` (column, value) at `step`.
    pub fn push(&mut self, step: usize, values: &[(&str, f64)]) -> Result<(), UnknownColumn> {
        let mut row = vec![None; self.columns.len()];
        for (name, v) in values {
            let i = self
                .columns
                .iter()
                .position(|c| c == name)
                .ok_or_else(|| UnknownColumn((*name).to_owned()))?;
            row[i] = Some(*v);
        }
        self.rows.push((step as f64, row));
        Ok(())
    }

    /// The log as CSV (values to 6 decimals).
    pub fn to_csv(&self) -> String {
        let mut text = format!("step,{}\n", self.columns.join(","));
        for (step, row) in &self.rows {
            text.push_str(&step.to_string());
            for v in row {
                text.push(',');
                if let Some(v) = v {
                    text.push_str(&format!("{v:.6}"));
                }
            }
            text.push('\n');
        }
        text
    }

    /// Write the log to `path`, atomically.
    pub fn write(&self, path: &Path) -> Result<(), RunError> {
        crate::fsutil::write_atomic(path, self.to_csv().as_bytes()).map_err(|source| RunError::Io {
            path: path.to_owned(),
            source,
        })
    }

    /// The (step, value) points of a column: its finite values.
    pub fn points(&self, column: &str) -> Vec<(f64, f64)> {
        let Some(i) = self.columns.iter().position(|c| c == column) else {
            return Vec::new();
        };
        self.rows
            .iter()
            .filter_map(|(step, row)| row[i].filter(|v| v.is_finite()).map(|v| (*step, v)))
            .collect()
    }

    /// The columns with at least one value, in file order.
    pub fn metrics(&self) -> Vec<&str> {
        self.columns
            .iter()
            .filter(|c| !self.points(c).is_empty())
            .map(String::as_str)
            .collect()
    }

    /// Parse the text of a `train_log.csv`; cells that are not numbers count as not measured.
    pub fn parse(name: &str, text: &str, path: &Path) -> Result<Self, RunError> {
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
        let columns: Vec<String> = header[1..].iter().map(|h| (*h).to_owned()).collect();
        let mut rows = Vec::new();
        for (i, line) in lines.enumerate() {
            let cells: Vec<&str> = line.split(',').map(str::trim).collect();
            let step: f64 = cells[0].parse().map_err(|_| {
                invalid(format!(
                    "line {}: step `{}` is not a number",
                    i + 2,
                    cells[0]
                ))
            })?;
            let values = (0..columns.len())
                .map(|c| cells.get(c + 1).and_then(|v| v.parse::<f64>().ok()))
                .collect();
            rows.push((step, values));
        }
        Ok(Self {
            name: name.to_owned(),
            columns,
            rows,
        })
    }
}

/// Where a training run logged its progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "path")]
pub enum LogSource {
    /// A TRL/transformers `trainer_state.json` (its `log_history`).
    TrainerState(PathBuf),
    /// The lab's `train_log.csv`.
    LabCsv(PathBuf),
}

impl LogSource {
    /// The log a file is, by its name: `*.json` a trainer state, anything else a CSV.
    pub fn of_file(path: &Path) -> Self {
        if path.extension().is_some_and(|e| e == "json") {
            Self::TrainerState(path.to_owned())
        } else {
            Self::LabCsv(path.to_owned())
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            Self::TrainerState(p) | Self::LabCsv(p) => p,
        }
    }
}

impl LogSource {
    /// Read the log: a trainer state's `log_history`, or a CSV.
    pub fn read(&self) -> Result<TrainLog, RunError> {
        let path = self.path();
        let text = std::fs::read_to_string(path).map_err(|source| RunError::Io {
            path: path.to_owned(),
            source,
        })?;
        let name = path
            .parent()
            .and_then(Path::file_name)
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        match self {
            Self::TrainerState(_) => TrainLog::from_trainer_state(&name, &text, path),
            Self::LabCsv(_) => TrainLog::parse(&name, &text, path),
        }
    }
}

impl TrainLog {
    /// The `log_history` of a TRL/transformers `trainer_state.json`: a row per entry with a
    /// `step`, a column per numeric key (the lab's standard columns first when present, then the
    /// others by name). Entries logged at the same step (training metrics, then an evaluation)
    /// are joined into one row.
    pub fn from_trainer_state(name: &str, text: &str, path: &Path) -> Result<Self, RunError> {
        let invalid = |message: String| RunError::Invalid {
            path: path.to_owned(),
            message,
        };
        let state: serde_json::Value = serde_json::from_str(&non_finite_as_null(text))
            .map_err(|e| invalid(format!("not a trainer state (JSON: {e})")))?;
        let history = state
            .get("log_history")
            .and_then(|h| h.as_array())
            .ok_or_else(|| {
                invalid("no `log_history` list: is this a trainer_state.json?".into())
            })?;
        let mut by_step: BTreeMap<u64, BTreeMap<String, f64>> = BTreeMap::new();
        for (i, entry) in history.iter().enumerate() {
            let Some(fields) = entry.as_object() else {
                return Err(invalid(format!("log_history[{i}] is not an object")));
            };
            let Some(step) = fields.get("step").and_then(serde_json::Value::as_u64) else {
                continue;
            };
            let row = by_step.entry(step).or_default();
            for (key, v) in fields {
                if let (false, Some(v)) = (key == "step", v.as_f64()) {
                    row.insert(key.clone(), v);
                }
            }
        }
        let mut columns: Vec<String> = STANDARD_COLUMNS
            .iter()
            .filter(|c| by_step.values().any(|r| r.contains_key(**c)))
            .map(|c| (*c).to_owned())
            .collect();
        let others: std::collections::BTreeSet<&String> = by_step
            .values()
            .flat_map(|r| r.keys())
            .filter(|k| !STANDARD_COLUMNS.contains(&k.as_str()))
            .collect();
        columns.extend(others.into_iter().cloned());
        let rows = by_step
            .iter()
            .map(|(step, r)| {
                let values = columns.iter().map(|c| r.get(c).copied()).collect();
                (*step as f64, values)
            })
            .collect();
        Ok(Self {
            name: name.to_owned(),
            columns,
            rows,
        })
    }

    /// Each column's last finite value logged at or before `step`.
    pub fn at_step(&self, step: f64) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (_, row) in self.rows.iter().filter(|(s, _)| *s <= step) {
            for (c, v) in self.columns.iter().zip(row) {
                if let Some(v) = v.filter(|v| v.is_finite()) {
                    out.insert(c.clone(), v);
                }
            }
        }
        out
    }
}

/// `text` with the bare `NaN`, `Infinity` and `-Infinity` that Python's `json` writes for
/// non-finite numbers (and so HF's Trainer, in a diverged `log_history`) replaced by `null`
/// outside strings: JSON has no such numbers, and a value that is not finite was not measured.
fn non_finite_as_null(text: &str) -> std::borrow::Cow<'_, str> {
    const TOKENS: [&str; 3] = ["-Infinity", "Infinity", "NaN"];
    if !TOKENS.iter().any(|t| text.contains(t)) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if !in_string {
            if let Some(t) = TOKENS.iter().find(|t| rest.starts_with(**t)) {
                out.push_str("null");
                rest = &rest[t.len()..];
                continue;
            }
        }
        if in_string && escaped {
            escaped = false;
        } else if in_string && c == '\\' {
            escaped = true;
        } else if c == '"' {
            in_string = !in_string;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out.into()
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
            logs.push(TrainLog::parse(&name, &text, &path)?);
        }
    }
    logs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(logs)
}

/// The kind of training a log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Supervised fine-tuning: a loss only, no reward and no KL to a reference.
    Supervised,
    /// RL (PPO, GRPO) or preference optimisation (DPO): measured against a reference model.
    Reinforcement,
}

impl Stage {
    pub fn label(self) -> &'static str {
        match self {
            Self::Supervised => "Supervised fine-tuning",
            Self::Reinforcement => "RL and preference optimisation",
        }
    }
}

impl TrainLog {
    /// The stage this log records: reinforcement when it logged a reward or a KL.
    pub fn stage(&self) -> Stage {
        if ["reward", "kl"].iter().any(|c| !self.points(c).is_empty()) {
            Stage::Reinforcement
        } else {
            Stage::Supervised
        }
    }
}

/// An exponential moving average of `points` (TensorBoard's smoothing): each value weighs the
/// running average by `weight` ∈ [0, 1) and itself by 1 − `weight`; 0 leaves the curve as it is.
pub fn smooth(points: &[(f64, f64)], weight: f64) -> Vec<(f64, f64)> {
    let weight = weight.clamp(0.0, 0.999);
    let mut average = None;
    points
        .iter()
        .map(|&(x, y)| {
            let a = average.map_or(y, |a: f64| weight * a + (1.0 - weight) * y);
            average = Some(a);
            (x, a)
        })
        .collect()
}

/// One chart per metric (in order of first appearance), a curve per model that logged it.
pub fn charts(logs: &[TrainLog]) -> Vec<LineChart> {
    let mut metrics: Vec<&str> = Vec::new();
    for log in logs {
        for name in log.metrics() {
            if !metrics.contains(&name) {
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
                    let points = log.points(metric);
                    (!points.is_empty()).then(|| Series::named(&log.name, None, points))
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
        let log = TrainLog::parse("grpo", text, Path::new("grpo/train_log.csv")).unwrap();
        assert_eq!(
            log.metrics(),
            ["loss", "reward", "accuracy", "kl", "entropy"]
        );
        assert_eq!(log.points("loss"), [(0.0, 2.5), (10.0, 2.0), (20.0, 1.5)]);
        assert_eq!(log.points("reward"), [(10.0, 0.5), (20.0, 0.7)]);
        assert_eq!(log.points("entropy"), [(10.0, 3.0)]);

        let other = TrainLog::parse("ppo", "step,loss\n0,3\n", Path::new("p")).unwrap();
        let charts = charts(&[log, other]);
        assert_eq!(charts.len(), 5);
        assert_eq!(charts[0].series.len(), 2, "loss is logged by both");
        assert_eq!(charts[1].series.len(), 1, "reward only by grpo");
    }

    #[test]
    fn what_the_lab_writes_reads_back() {
        let mut log = TrainLog::new("ppo", &["value_loss"]);
        log.push(1, &[("loss", 2.0), ("value_loss", 0.5)]).unwrap();
        log.push(2, &[("reward", 0.25)]).unwrap();
        assert!(log.push(3, &[("nope", 1.0)]).is_err());
        let text = log.to_csv();
        assert_eq!(
            text,
            "step,loss,reward,accuracy,kl,value_loss\n1,2.000000,,,,0.500000\n2,,0.250000,,,\n"
        );
        let back = TrainLog::parse("ppo", &text, Path::new("p")).unwrap();
        assert_eq!(back, log);
    }

    #[test]
    fn a_trainer_state_reads_as_a_log_by_step() {
        let text = r#"{"global_step": 20, "log_history": [
            {"step": 10, "loss": 0.5, "reward": 0.25, "kl": 0.01, "epoch": 0.1, "rewards/accuracy_reward/mean": 0.25},
            {"step": 20, "loss": 0.4, "reward": 0.5, "kl": 0.02, "epoch": 0.2},
            {"step": 20, "eval_loss": 0.45},
            {"train_runtime": 12.5, "step": 20, "note": "text"},
            {"total_flos": 1}
        ]}"#;
        let log = TrainLog::from_trainer_state("run", text, Path::new("s.json")).unwrap();
        assert_eq!(
            log.columns,
            [
                "loss",
                "reward",
                "kl",
                "epoch",
                "eval_loss",
                "rewards/accuracy_reward/mean",
                "train_runtime"
            ]
        );
        assert_eq!(log.points("reward"), [(10.0, 0.25), (20.0, 0.5)]);
        assert_eq!(log.points("eval_loss"), [(20.0, 0.45)]);
        let at = log.at_step(15.0);
        assert_eq!(at["reward"], 0.25);
        assert!(!at.contains_key("eval_loss"));
        assert_eq!(log.at_step(25.0)["rewards/accuracy_reward/mean"], 0.25);
        let err = TrainLog::from_trainer_state("x", "{}", Path::new("s.json")).unwrap_err();
        assert!(err.to_string().contains("log_history"), "{err}");
    }

    #[test]
    fn non_finite_values_of_a_trainer_state_are_not_measured() {
        // As Python's `json.dumps` writes a diverged run; the strings keep their words.
        let text = r#"{"log_history": [
            {"step": 10, "loss": NaN, "reward": 0.25, "note": "NaN \" Infinity"},
            {"step": 20, "loss": 0.5, "reward": -Infinity, "kl": Infinity},
            {"step": 30, "loss": 0.25, "reward": 1.5, "kl": 0.125}
        ]}"#;
        let log = TrainLog::from_trainer_state("run", text, Path::new("s.json")).unwrap();
        assert_eq!(log.columns, ["loss", "reward", "kl"]);
        assert_eq!(log.points("loss"), [(20.0, 0.5), (30.0, 0.25)]);
        assert_eq!(log.points("reward"), [(10.0, 0.25), (30.0, 1.5)]);
        assert_eq!(log.rows[1].1, [Some(0.5), None, None]);
        assert_eq!(log.at_step(20.0)["reward"], 0.25);
        let kept = non_finite_as_null(r#"{"a": "NaN", "b": NaN}"#);
        assert_eq!(kept, r#"{"a": "NaN", "b": null}"#);
    }

    #[test]
    fn a_header_without_step_is_refused() {
        let err = TrainLog::parse("x", "loss,step\n1,2\n", Path::new("x.csv")).unwrap_err();
        assert!(err.to_string().contains("expected `step`"), "{err}");
    }

    #[test]
    fn stages_and_smoothing() {
        let sft = TrainLog::parse("base", "step,loss\n1,3\n2,2\n", Path::new("b")).unwrap();
        let rl = TrainLog::parse("grpo", "step,loss,kl\n1,0.1,0\n", Path::new("g")).unwrap();
        assert_eq!(sft.stage(), Stage::Supervised);
        assert_eq!(rl.stage(), Stage::Reinforcement);

        let points = [(0.0, 0.0), (1.0, 1.0), (2.0, 1.0)];
        assert_eq!(smooth(&points, 0.0), points);
        let s = smooth(&points, 0.5);
        assert_eq!(s, [(0.0, 0.0), (1.0, 0.5), (2.0, 0.75)]);
    }
}
