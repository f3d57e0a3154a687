//! The output folder of `lab tune`, in the layout of a TRL run: `checkpoint-N/` folders (the
//! adapter or the full model, `trainer_state.json`, and the optimiser state for resuming) and a
//! `trainer_state.json` whose `log_history` holds a row per step. A checkpoint is written into a
//! hidden folder and renamed into place, so a run killed at any moment leaves only whole ones.

use super::{LabError, Result};
use crate::report::train_log;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The run's settings, in its output folder.
pub const CONFIG_FILE: &str = "tune.json";
/// The trainer state, in the output folder and in every checkpoint.
pub const STATE_FILE: &str = train_log::TRAINER_STATE;
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
    train_log::trl_checkpoint_dir(out, step as u64)
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
        let Some(step) = train_log::trl_step(name).and_then(|n| usize::try_from(n).ok()) else {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::train_log::TrainLog;

    #[test]
    fn the_state_reads_back_and_as_a_trainer_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = TrainerState {
            global_step: 0,
            max_steps: 2,
            save_steps: 2,
            log_history: Vec::new(),
        };
        state.push(1, &[("loss", 0.5), ("reward", f64::NAN)]);
        state.push(2, &[("reward", 1.0), ("accuracy", 0.25)]);
        assert_eq!(state.global_step, 2);
        let path = dir.path().join(STATE_FILE);
        state.write(&path).unwrap();
        assert_eq!(TrainerState::read(&path).unwrap(), state);
        let text = std::fs::read_to_string(&path).unwrap();
        let log = TrainLog::from_trainer_state("run", &text, &path).unwrap();
        assert_eq!(log.rows.len(), 2);
        let reward = log.columns.iter().position(|c| c == "reward").unwrap();
        assert_eq!(log.rows[0].1[reward], None, "a NaN is not a measurement");
        assert_eq!(log.at_step(2.0)["accuracy"], 0.25);
    }

    #[test]
    fn only_whole_checkpoints_count_and_partial_ones_are_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let state = TrainerState {
            global_step: 2,
            max_steps: 4,
            save_steps: 2,
            log_history: Vec::new(),
        };
        write_checkpoint(dir.path(), 2, &state, |_| Ok(())).unwrap();
        // A checkpoint killed while it was being written.
        std::fs::create_dir_all(dir.path().join(".partial-4")).unwrap();
        let (step, path) = last_checkpoint(dir.path()).unwrap().unwrap();
        assert_eq!((step, path), (2, checkpoint_dir(dir.path(), 2)));
        assert!(!dir.path().join(".partial-4").exists());
    }
}
