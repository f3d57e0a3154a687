//! What can go wrong in the app: the library's errors, kept with their sources, and the app's
//! own. Panels show one as a line with [`crate::message::chain`].

use crate::model::ModelError;
use crate::report::run::RunError;
use crate::side::Side;
use crate::study::dir::DirError;
use crate::study::job::StudyError;
use crate::study::prompt::PromptError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Study(#[from] StudyError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Dir(#[from] DirError),
    #[error(transparent)]
    Lab(#[from] crate::lab::LabError),
    #[error(transparent)]
    Ladder(#[from] crate::study::ladder::LadderError),
    #[error("template: {0}")]
    Template(#[from] PromptError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "{}: not a study, comparison, run or trajectory directory (no manifest.json, base/, \
         comparison.json or trajectory.json)",
        path.display()
    )]
    NotResults { path: PathBuf },
    /// A trajectory folder without its summary: still running, or stopped before the end.
    #[error(
        "{}: the trajectory has no summary.json with checkpoints yet; finish it with \
         `circuitdiff trajectory` (it resumes)",
        path.display()
    )]
    UnfinishedTrajectory { path: PathBuf },
    #[error("the trajectory has no checkpoint {index}")]
    NoCheckpoint { index: usize },
    /// A view has nothing to draw as a figure.
    #[error("nothing to save: {0}")]
    NoFigure(&'static str),
    /// A PNG could not be encoded or written.
    #[error("{}: {message}", path.display())]
    Image { path: PathBuf, message: String },
    /// A background thread could not be started.
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: &'static str,
        source: std::io::Error,
    },
    /// The fine-tune form names no model.
    #[error("choose the model to fine-tune: a folder, a .gguf file, an adapter or a Hub id")]
    NoTuneModel,
    #[error("a shard study cannot finish here; merge the shards with `circuitdiff merge`")]
    ShardStudy,
    /// A job panicked; the app goes on.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why a study cannot start yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error("inspect the {side} model first")]
    NotInspected { side: Side },
    #[error("checking the vocabularies and graphs…")]
    Checking,
    /// The models cannot be compared.
    #[error(transparent)]
    Unpairable(#[from] crate::attribution::pair::Unpairable),
    /// A model's configuration or tokenizer could not be read (the reason, in words).
    #[error("{0}")]
    Refused(String),
}
