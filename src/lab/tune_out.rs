//! The output folder of `lab tune`, in the layout of a TRL run: `checkpoint-N/` folders (the
//! adapter or the full model, `trainer_state.json`, and the optimiser state for resuming) and a
//! `trainer_state.json` whose `log_history` holds a row per step. A checkpoint is written into a
//! hidden folder and renamed into place, so a run killed at any moment leaves only whole ones.

use super::{LabError, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The run's settings, in its output folder.
pub const CONFIG_FILE: &str = "tune.json";
/// The trainer state, in the output folder and in every checkpoint.
pub const STATE_FILE: &str = "trainer_state.json";
/// The optimiser state, in every checkpoint.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";

/// One row of `log_history`: the step and what was measured at it.
pub type LogRow = serde_json::Map<String, serde_json::Value>;

/// The parts of transformers' `trainer_state.json` that the lab writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    pub global_step: usize,
    pub max_steps: usize,
    pub save_steps: usize,
    pub log_history: Vec<LogRow>,
}

impl TrainerState {
    /// Read a trainer state the lab wrote.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| LabError::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| LabError::json(path, e))
    }

    /// Write it (atomically) to `path`.
    pub fn write(&self, path: &Path) -> Result<()> {
        let value = serde_json::to_value(self).map_err(|e| LabError::json(path, e))?;
        crate::fsutil::write_json(path, &value).map_err(|e| LabError::io(path, e))
    }

    /// Append the row of `step` with `values` (non-finite values are left out, as `null`
    /// would be).
    pub fn push(&mut self, step: usize, values: &[(&str, f64)]) {
        let mut row = LogRow::new();
        row.insert("step".into(), step.into());
        for (k, v) in values {
            if let Some(n) = serde_json::Number::from_f64(*v) {
                row.insert((*k).to_owned(), serde_json::Value::Number(n));
            }
        }
        self.log_history.push(row);
        self.global_step = step;
    }
}

/// The folder of the checkpoint after `step` steps.
pub fn checkpoint_dir(out: &Path, step: usize) -> PathBuf {
    out.join(format!("checkpoint-{step}"))
}

/// The last whole checkpoint in `out` and its step; hidden partial ones are removed.
pub fn last_checkpoint(out: &Path) -> Result<Option<(usize, PathBuf)>> {
    let mut best: Option<(usize, PathBuf)> = None;
    let entries = match std::fs::read_dir(out) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LabError::io(out, e)),
    };
    for entry in entries {
        let path = entry.map_err(|e| LabError::io(out, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with(".partial-") {
            std::fs::remove_dir_all(&path).map_err(|e| LabError::io(&path, e))?;
            continue;
        }
        let Some(step) = name
            .strip_prefix("checkpoint-")
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        if path.join(STATE_FILE).is_file() && best.as_ref().is_none_or(|(b, _)| step > *b) {
            best = Some((step, path));
        }
    }
    Ok(best)
}

/// Write the checkpoint of `step`: `fill` writes the weights and the optimiser state into a
/// hidden folder, the trainer state is added, and the folder is renamed to `checkpoint-N`.
pub fn write_checkpoint(
    out: &Path,
    step: usize,
    state: &TrainerState,
    fill: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let partial = out.join(format!(".partial-{step}"));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(|e| LabError::io(&partial, e))?;
    }
    std::fs::create_dir_all(&partial).map_err(|e| LabError::io(&partial, e))?;
    fill(&partial)?;
    state.write(&partial.join(STATE_FILE))?;
    let dir = checkpoint_dir(out, step);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| LabError::io(&dir, e))?;
    }
    std::fs::rename(&partial, &dir).map_err(|e| LabError::io(&dir, e))?;
    Ok(dir)
}
