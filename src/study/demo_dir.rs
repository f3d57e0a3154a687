//! The folder `circuitdiff demo` writes (the bundled `assets/demo/` is one): the one owner of
//! its layout.
//!
//! ```text
//! <pair>/          the study of base → pair, for each of demo::PAIRS
//! <tuned>_trajectory/  the trajectory of one fine-tune's checkpoints (demo::TRAJECTORY)
//! summary.json     the summaries of the pairs; the file that marks a demo folder
//! summary.md       the same as text
//! ```

use super::dir::StudyDir;
use super::trajectory_dir::TrajectoryDir;
use std::path::{Path, PathBuf};

/// The fine-tunes compared with the base, each a folder of the zoo and of the demo output.
pub const PAIRS: [&str; 3] = ["grpo", "ppo", "dpo"];

/// The fine-tune whose training run the demo follows, and the demo folder of its trajectory.
pub const TRAJECTORY: (&str, &str) = ("grpo", "grpo_trajectory");

/// A folder `circuitdiff demo` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoDir {
    root: PathBuf,
}

impl DemoDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether `dir` is a folder `circuitdiff demo` wrote (it holds the summary).
    pub fn is_demo(dir: &Path) -> bool {
        Self::new(dir).summary_path().is_file()
    }

    /// The study of the pair base → `pair`.
    pub fn study_dir(&self, pair: &str) -> PathBuf {
        self.root.join(pair)
    }

    /// The trajectory's folder.
    pub fn trajectory_dir(&self) -> PathBuf {
        self.root.join(TRAJECTORY.1)
    }

    pub fn summary_path(&self) -> PathBuf {
        self.root.join("summary.json")
    }

    pub fn summary_md_path(&self) -> PathBuf {
        self.root.join("summary.md")
    }

    /// What the folder holds: each pair's finished study, then the trajectory, as (name,
    /// folder); empty when it is no demo folder.
    pub fn entries(&self) -> Vec<(String, PathBuf)> {
        if !Self::is_demo(&self.root) {
            return Vec::new();
        }
        let mut entries: Vec<(String, PathBuf)> = PAIRS
            .iter()
            .map(|name| ((*name).to_owned(), self.study_dir(name)))
            .filter(|(_, d)| StudyDir::is_study(d))
            .collect();
        let trajectory = self.trajectory_dir();
        if TrajectoryDir::is_trajectory(&trajectory) {
            entries.push((format!("{} trajectory", TRAJECTORY.0), trajectory));
        }
        entries
    }
}
