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
//! failed.txt            the error a failed trajectory stopped with (until it is retried)
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
/// The folder of each checkpoint's answers.
const ANSWERS: &str = "answers";
/// The folder of each checkpoint's run directory.
const POINTS: &str = "points";

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

    fn answers_dir(&self) -> PathBuf {
        self.root.join(ANSWERS)
    }

    pub fn answers_path(&self, j: usize) -> PathBuf {
        self.answers_dir().join(format!("{j:03}.jsonl"))
    }

    fn points_dir(&self) -> PathBuf {
        self.root.join(POINTS)
    }

    /// The run directory of checkpoint `j`, relative to the folder.
    pub fn run_rel(j: usize) -> String {
        format!("{POINTS}/{j:03}")
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

    /// Where a failed trajectory leaves its error.
    pub fn failed_path(&self) -> PathBuf {
        self.root.join("failed.txt")
    }

    /// Record that the trajectory stopped with `error`: one of other settings may then
    /// replace it.
    pub fn mark_failed(&self, error: &str) -> Result<(), DirError> {
        let path = self.failed_path();
        dir::write_text(&path, &format!("{error}\n"))
    }

    /// The error the trajectory stopped with, when it failed and was not retried since.
    pub fn failure(&self) -> Option<String> {
        std::fs::read_to_string(self.failed_path())
            .ok()
            .map(|e| e.trim_end().to_owned())
    }

    /// Remove every file and folder of the layout (nothing else).
    fn clear(&self) -> Result<(), DirError> {
        let files = [
            self.counts_path(),
            self.summary_path(),
            self.summary_csv_path(),
            self.train_log_path(),
            self.report_path(),
            self.failed_path(),
            self.config_path(),
        ];
        let folders = [self.answers_dir(), self.points_dir(), self.figures_dir()];
        for (path, removed) in files
            .into_iter()
            .map(|f| (f.clone(), std::fs::remove_file(&f)))
            .chain(
                folders
                    .into_iter()
                    .map(|d| (d.clone(), std::fs::remove_dir_all(&d))),
            )
        {
            match removed {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(DirError::Io { path, source: e })
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Claim the folder for `cfg`, or check that it already holds this trajectory. A
    /// trajectory of other settings that failed there is replaced (what it wrote is removed);
    /// one that did not fail is kept (nothing is written then).
    pub(super) fn claim(&self, cfg: &TrajectoryConfig) -> Result<Claim, DirError> {
        let mut claim = Claim::Claimed;
        match self.read_config()? {
            Some(previous) if previous == *cfg => {
                if self.failure().is_some() {
                    std::fs::remove_file(self.failed_path()).map_err(|source| DirError::Io {
                        path: self.failed_path(),
                        source,
                    })?;
                }
            }
            Some(_) => {
                let Some(error) = self.failure() else {
                    return Ok(Claim::HeldByOther);
                };
                self.clear()?;
                dir::write_json(&self.config_path(), cfg)?;
                claim = Claim::Replaced { error };
            }
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
        Ok(claim)
    }
}

/// What claiming a trajectory folder found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Claim {
    /// The folder is new, or holds this trajectory.
    Claimed,
    /// It held a failed trajectory of other settings, which was removed.
    Replaced {
        /// The error that trajectory stopped with.
        error: String,
    },
    /// It holds another trajectory, which did not fail.
    HeldByOther,
}
