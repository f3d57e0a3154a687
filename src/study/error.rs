//! Why a study or a trajectory failed: one error type for both pipelines and their stages.

use super::dir::StudyDir;
use super::trajectory_dir::TrajectoryDir;
use crate::side::Side;
use std::path::{Path, PathBuf};

/// Why a study failed.
#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    #[error(transparent)]
    Dataset(#[from] super::dataset::DatasetError),
    #[error(transparent)]
    Prompt(#[from] super::prompt::PromptError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Select(#[from] crate::attribution::select::SelectError),
    #[error(transparent)]
    Run(#[from] crate::report::run::RunError),
    #[error(transparent)]
    Dir(#[from] super::dir::DirError),
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    #[error(transparent)]
    Render(#[from] crate::report::render::RenderError),
    #[error("{} holds a different study (see its study.json); choose another --out or delete it", dir.display())]
    DifferentStudy { dir: PathBuf },
    #[error("{} holds a different trajectory (see its trajectory.json: other checkpoints or settings); choose another --out or delete it", dir.display())]
    DifferentTrajectory { dir: PathBuf },
    #[error(transparent)]
    Import(#[from] super::import_record::ImportError),
    #[error(transparent)]
    Ladder(#[from] super::ladder::LadderError),
    #[error("--offset {offset} skips every question: the dataset holds {loaded} (use an offset below {loaded}): {dataset}")]
    OffsetPastEnd {
        offset: usize,
        loaded: usize,
        dataset: String,
    },
    #[error("{}: the real pair's adapters (checkpoint-N/) are missing from the assets; reinstall circuitdiff or restore assets/zoo from the source", dir.display())]
    RealPairMissing { dir: PathBuf },
    #[error("{}: sha256 {found} is not that of the real pair's base ({expected}, the file the adapters were trained on); delete it and run `circuitdiff demo --real` again to fetch it anew, or pass the right file with --real-base", path.display())]
    RealBaseChecksum {
        path: PathBuf,
        found: String,
        expected: &'static str,
    },
    #[error("--shard {i}/{n}: expected i/n with 0 ≤ i < n")]
    Shard { i: usize, n: usize },
    #[error(transparent)]
    Unpairable(#[from] crate::attribution::pair::Unpairable),
    #[error(
        "--stop-id {id} is not a token of these models (ids 0..{vocab}); use an id below {vocab}"
    )]
    StopIdOutsideVocabulary { id: u32, vocab: usize },
    #[error("{spec}: tokenizing question {id}: {message}")]
    Tokenize {
        spec: String,
        id: String,
        message: String,
    },
    #[error("{spec}: generating for questions {first}…: {source}")]
    Generate {
        spec: String,
        first: String,
        source: Box<candle_core::Error>,
    },
    #[error("{}: not a shard (no --shard)", dir.display())]
    NotAShard { dir: PathBuf },
    #[error("{}: holds a {found}, not a {merging} shard; `circuitdiff merge` joins the shards of one {merging} (each written by `circuitdiff {merging} --shard i/n`)", dir.display())]
    ShardOfOtherWorkflow {
        dir: PathBuf,
        found: Workflow,
        merging: Workflow,
    },
    #[error("{}: a shard of a different study", dir.display())]
    ShardOfAnotherStudy { dir: PathBuf },
    #[error("no shard directories given")]
    NoShards,
    #[error("the shards {seen:?} do not cover 0..{n} exactly once")]
    ShardCoverage { seen: Vec<(usize, usize)>, n: usize },
    #[error("question {id} has no {side} answer in any shard: finish that shard first")]
    MissingAnswer { id: String, side: Side },
}

/// The workflows whose shards `merge` joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workflow {
    Study,
    Trajectory,
}

impl Workflow {
    /// `study` or `trajectory`: the command's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Study => "study",
            Self::Trajectory => "trajectory",
        }
    }

    /// The workflow whose configuration `dir` holds, if any (a study or trajectory claims its
    /// folder with it before anything is scored).
    fn of(dir: &Path) -> Option<Self> {
        if TrajectoryDir::is_trajectory(dir) {
            Some(Self::Trajectory)
        } else if StudyDir::new(dir).config_path().is_file() {
            Some(Self::Study)
        } else {
            None
        }
    }

    /// Why `dir`, given to merge shards of this workflow, is not one of them.
    pub(super) fn not_a_shard(self, dir: &Path) -> StudyError {
        match Self::of(dir) {
            Some(found) if found != self => StudyError::ShardOfOtherWorkflow {
                dir: dir.to_owned(),
                found,
                merging: self,
            },
            _ => StudyError::NotAShard {
                dir: dir.to_owned(),
            },
        }
    }
}

impl std::fmt::Display for Workflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
