//! The trajectory folder: the one owner of its layout and of the files only a trajectory
//! writes.
//!
//! ```text
//! trajectory.json       TrajectoryConfig (a re-run must match it)
//! answers/NNN.jsonl     the answers of checkpoint NNN (its place on the ladder)
//! points/NNN/           its run directory (report::run)
//! counts.json           questions asked, answered correctly at the ends, selected
//! summary.json/.csv     report::trajectory
//! train_log.csv         the trainer's log, when there is one
//! figures/              metric curves over the steps, reward and accuracy
//! report.md
//! ```

use super::dataset::LoadReport;
use super::dir::{self, DirError, ModelCounts, StudyConfig};
use super::ladder::Rung;
use crate::attribution::select::SelectCounts;
use crate::report::train_log::LogSource;
use crate::report::trajectory::{AnswerSource, QuestionSet};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Everything that defines a trajectory (`trajectory.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrajectoryConfig {
    /// The checkpoints, by increasing step.
    pub checkpoints: Vec<Rung>,
    pub answers: AnswerSource,
    pub questions: QuestionSet,
    /// The trainer's log.
    pub train_log: Option<LogSource>,
    /// `(i, n)`: only the checkpoints whose place is ≡ i (mod n); `merge` joins the shards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<(usize, usize)>,
    /// The questions, generation, selection, graph, metrics and comparison, as a study has
    /// them (its base and tuned are the first and the last checkpoint).
    pub study: StudyConfig,
}

impl TrajectoryConfig {
    pub(super) fn last(&self) -> usize {
        self.checkpoints.len().saturating_sub(1)
    }

    /// Whether checkpoint `j` is this trajectory's (of its shard).
    pub(super) fn owns(&self, j: usize) -> bool {
        self.shard.is_none_or(|(i, n)| j % n == i)
    }
}

/// `counts.json` of a trajectory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrajectoryCounts {
    pub asked: usize,
    pub dataset: LoadReport,
    /// How the first and the last checkpoint answered every question.
    pub first: ModelCounts,
    pub last: ModelCounts,
    pub filters: SelectCounts,
    pub scored: usize,
    pub t_bar: f64,
    pub k: usize,
}

/// The file that makes a folder a trajectory's, written first.
const CONFIG: &str = "trajectory.json";

/// A trajectory's folder: the one owner of its layout.
#[derive(Debug, Clone)]
pub struct TrajectoryDir {
    root: PathBuf,
}

impl TrajectoryDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.join(CONFIG)
    }

    /// Whether `dir` holds a trajectory.
    pub fn is_trajectory(dir: &Path) -> bool {
        Self::new(dir).config_path().is_file()
    }

    pub fn answers_path(&self, j: usize) -> PathBuf {
        self.root.join("answers").join(format!("{j:03}.jsonl"))
    }

    /// The run directory of checkpoint `j`, relative to the folder.
    pub fn run_rel(j: usize) -> String {
        format!("points/{j:03}")
    }

    pub fn run_dir(&self, j: usize) -> PathBuf {
        self.root.join(Self::run_rel(j))
    }

    pub fn figures_dir(&self) -> PathBuf {
        self.root.join("figures")
    }

    pub fn counts_path(&self) -> PathBuf {
        self.root.join("counts.json")
    }

    /// The summary (`report::trajectory`): every checkpoint's metrics and paired changes.
    pub fn summary_path(&self) -> PathBuf {
        self.root.join("summary.json")
    }

    /// The summary as CSV.
    pub fn summary_csv_path(&self) -> PathBuf {
        self.root.join("summary.csv")
    }

    /// The trainer's log, as read, in the lab's CSV layout.
    pub fn train_log_path(&self) -> PathBuf {
        self.root.join(crate::report::train_log::FILE_NAME)
    }

    pub fn report_path(&self) -> PathBuf {
        self.root.join("report.md")
    }

    pub fn read_config(&self) -> Result<Option<TrajectoryConfig>, DirError> {
        let path = self.config_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(serde_json::from_str(&text).map_err(|source| {
                DirError::Json {
                    path: path.clone(),
                    source,
                }
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(DirError::Io { path, source }),
        }
    }

    /// Claim the folder for `cfg`, or check that it already holds this trajectory: `false`
    /// when it holds another one (nothing is written then).
    pub(super) fn claim(&self, cfg: &TrajectoryConfig) -> Result<bool, DirError> {
        match self.read_config()? {
            Some(previous) if previous == *cfg => {}
            Some(_) => return Ok(false),
            None => {
                if let Some(first) =
                    crate::fsutil::foreign_entry(&self.root, CONFIG).map_err(|source| {
                        DirError::Io {
                            path: self.root.clone(),
                            source,
                        }
                    })?
                {
                    return Err(DirError::NotEmpty {
                        path: self.root.clone(),
                        first,
                    });
                }
                std::fs::create_dir_all(&self.root).map_err(|source| DirError::Io {
                    path: self.root.clone(),
                    source,
                })?;
                dir::write_json(&self.config_path(), cfg)?;
            }
        }
        let answers = self.root.join("answers");
        std::fs::create_dir_all(&answers).map_err(|source| DirError::Io {
            path: answers,
            source,
        })?;
        Ok(true)
    }
}
