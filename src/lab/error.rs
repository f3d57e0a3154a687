//! Why a lab run failed.

use super::layout;
use crate::report::train_log;
use std::path::{Path, PathBuf};

/// Why a lab run failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    #[error(transparent)]
    Prompt(#[from] crate::study::prompt::PromptError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Log(#[from] train_log::UnknownColumn),
    #[error(transparent)]
    Run(#[from] crate::report::run::RunError),
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    #[error("{}: {source}", path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{} holds a lab run with other settings ({}): choose another --out", dir.display(), layout::LabDir::new(dir).config_path().display())]
    DifferentLab { dir: PathBuf },
    #[error("the gradient is not finite (norm {norm}) at step {step}: lower the learning rate")]
    NonFiniteGradient { norm: f64, step: usize },
    #[error("the base model gave no question both a correct and an incorrect answer, so DPO has no pairs: sample more questions or answers")]
    NoPreferencePairs,
    #[error("a training sequence needs a prompt and an answer")]
    EmptySequence,
    #[error("no worked solution for `{0}`")]
    NoWorkedSolution(String),
    #[error("cannot tokenize {text:?}: {message}")]
    Tokenize { text: String, message: String },
    #[error("{}: not a checkpoint of this run: {message}", path.display())]
    NotThisRun { path: PathBuf, message: String },
    #[error(transparent)]
    Dataset(#[from] crate::study::dataset::DatasetError),
    #[error(transparent)]
    Target(#[from] crate::model::UnknownTarget),
    #[error("{0}")]
    Config(String),
    #[error("fine-tuning {spec} needs about {:.1} GiB ({what}), but only {:.1} GiB of memory is available: {fix}", *needed as f64 / GIB, *available as f64 / GIB)]
    TooLarge {
        spec: String,
        needed: u64,
        available: u64,
        what: String,
        fix: String,
    },
    #[error("{}: line {line}: {message}", path.display())]
    Pairs {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// Bytes in a GiB, for messages.
const GIB: f64 = (1u64 << 30) as f64;

impl LabError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }

    pub fn json(path: &Path, source: serde_json::Error) -> Self {
        Self::Json {
            path: path.to_owned(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, LabError>;
