//! `train_log.csv`: one row per logged step, rewritten atomically after every row.

use super::{LabError, Result};
use std::path::PathBuf;

/// The columns every log has, in order; a trainer may add its own after them.
pub const COLUMNS: [&str; 5] = ["step", "loss", "reward", "accuracy", "kl"];

/// A training log: `step,loss,reward,accuracy,kl[,extra…]`, empty cells where a value was not
/// measured at that step.
pub struct TrainLog {
    path: PathBuf,
    columns: Vec<String>,
    rows: Vec<(usize, Vec<Option<f64>>)>,
}

impl TrainLog {
    pub fn new(path: PathBuf, extra: &[&str]) -> Self {
        let columns = COLUMNS[1..]
            .iter()
            .chain(extra)
            .map(|c| (*c).to_owned())
            .collect();
        Self {
            path,
            columns,
            rows: Vec::new(),
        }
    }

    /// Record `values` (column, value) at `step` and rewrite the file.
    pub fn push(&mut self, step: usize, values: &[(&str, f64)]) -> Result<()> {
        let mut row = vec![None; self.columns.len()];
        for (name, v) in values {
            let i = self
                .columns
                .iter()
                .position(|c| c == name)
                .ok_or_else(|| LabError::Other(format!("train log has no column `{name}`")))?;
            row[i] = Some(*v);
        }
        self.rows.push((step, row));
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
        crate::fsutil::write_atomic(&self.path, text.as_bytes())
            .map_err(|e| LabError::io(&self.path, e))
    }
}
