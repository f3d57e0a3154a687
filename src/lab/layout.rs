//! The lab's output folder: the one owner of its layout, written by the lab and read by a
//! trajectory's ladder (`study::ladder`).
//!
//! ```text
//! lab.json                   LabConfig: what defines the run (a re-run must match it)
//! train_seconds.json         each finished stage's training time
//! zoo.json                   ZooReport: held-out accuracy of every stage's model
//! <stage>/                   each stage's final model (a Hugging Face folder) with its
//!                            train_log.csv (report::train_log)
//! checkpoints/<stage>/step-NNNNNN/   the stage's intermediate checkpoints
//! ```

use std::path::{Path, PathBuf};

/// The name of an intermediate checkpoint's folder before its step.
const STEP_PREFIX: &str = "step-";

/// A lab output folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabDir {
    root: PathBuf,
}

impl LabDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The lab folder that holds the stage folder `stage_dir`, and the stage's name.
    pub fn of_stage(stage_dir: &Path) -> Option<(Self, String)> {
        let lab = stage_dir.parent()?;
        let name = stage_dir.file_name()?.to_str()?;
        Some((Self::new(lab), name.to_owned()))
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.join("lab.json")
    }

    pub fn times_path(&self) -> PathBuf {
        self.root.join("train_seconds.json")
    }

    pub fn report_path(&self) -> PathBuf {
        self.root.join("zoo.json")
    }

    /// The final model of stage `stage` (the base is the stage `base`).
    pub fn stage_dir(&self, stage: &str) -> PathBuf {
        self.root.join(stage)
    }

    /// The base model, which every later stage starts from (the stage `base`).
    pub fn base_dir(&self) -> PathBuf {
        self.stage_dir("base")
    }

    /// The folder of stage `stage`'s intermediate checkpoints.
    pub fn checkpoints_dir(&self, stage: &str) -> PathBuf {
        self.root.join("checkpoints").join(stage)
    }

    /// Stage `stage`'s checkpoint after `step` training steps.
    pub fn checkpoint_dir(&self, stage: &str, step: usize) -> PathBuf {
        self.checkpoints_dir(stage)
            .join(format!("{STEP_PREFIX}{step:06}"))
    }

    /// The step of an intermediate checkpoint's folder name (`step-000040`: 40).
    pub fn checkpoint_step(name: &str) -> Option<u64> {
        name.strip_prefix(STEP_PREFIX)?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_folder_names_its_step() {
        let lab = LabDir::new("zoo");
        let dir = lab.checkpoint_dir("grpo", 40);
        assert_eq!(dir, Path::new("zoo/checkpoints/grpo/step-000040"));
        let name = dir.file_name().unwrap().to_str().unwrap();
        assert_eq!(LabDir::checkpoint_step(name), Some(40));
        assert_eq!(LabDir::checkpoint_step("checkpoint-40"), None);
        let (of, stage) = LabDir::of_stage(&lab.stage_dir("grpo")).unwrap();
        assert_eq!((of, stage.as_str()), (lab, "grpo"));
    }
}
