//! The folder `circuitdiff demo` writes (the bundled `assets/demo/` is one): the one owner of
//! its layout.
//!
//! ```text
//! smollm2_grpo/     the study of the real pair (REAL): SmolLM2-135M-Instruct → its GRPO fine-tune
//! smollm2_grpo_trajectory/  that fine-tune's trajectory along its checkpoints
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

/// The real language-model pair beside the zoo's toy ones: SmolLM2-135M-Instruct against its
/// GRPO LoRA fine-tune (`circuitdiff lab tune`). `name` is its study's folder here and its
/// training run's folder in the zoo; `trajectory` the folder of its trajectory.
pub const REAL: RealPair = RealPair {
    name: "smollm2_grpo",
    trajectory: "smollm2_grpo_trajectory",
};

/// The folder names of the real pair (see [`REAL`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RealPair {
    pub name: &'static str,
    pub trajectory: &'static str,
}

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

    /// The real pair's study.
    pub fn real_study_dir(&self) -> PathBuf {
        self.root.join(REAL.name)
    }

    /// The real pair's trajectory.
    pub fn real_trajectory_dir(&self) -> PathBuf {
        self.root.join(REAL.trajectory)
    }

    /// The studies it holds, as (name, folder): the real pair first, then the zoo's.
    pub fn studies(&self) -> Vec<(String, PathBuf)> {
        std::iter::once(REAL.name)
            .chain(PAIRS)
            .map(|name| (name.to_owned(), self.study_dir(name)))
            .filter(|(_, d)| StudyDir::is_study(d))
            .collect()
    }

    /// The trajectories it holds, as (the fine-tune's name, folder): the real pair's first.
    pub fn trajectories(&self) -> Vec<(String, PathBuf)> {
        [
            (REAL.name, self.real_trajectory_dir()),
            (TRAJECTORY.0, self.trajectory_dir()),
        ]
        .into_iter()
        .filter(|(_, d)| TrajectoryDir::is_trajectory(d))
        .map(|(name, d)| (name.to_owned(), d))
        .collect()
    }

    pub fn summary_path(&self) -> PathBuf {
        self.root.join("summary.json")
    }

    pub fn summary_md_path(&self) -> PathBuf {
        self.root.join("summary.md")
    }

    /// What the folder holds: each pair's finished study, then the trajectories, as (name,
    /// folder); empty when it is no demo folder.
    pub fn entries(&self) -> Vec<(String, PathBuf)> {
        if !Self::is_demo(&self.root) {
            return Vec::new();
        }
        let mut entries = self.studies();
        for (name, dir) in self.trajectories() {
            entries.push((format!("{name} trajectory"), dir));
        }
        entries
    }
}
