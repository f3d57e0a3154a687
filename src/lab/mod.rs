//! The lab: trains the demo model zoo from scratch on the built-in arithmetic task. A small
//! Llama learns worked solutions by supervised training (the base), then three fine-tunes of
//! it: GRPO and PPO (online RL with the grader as reward) and DPO (preferences from the base's
//! own samples). Every model is a Hugging Face folder with its `train_log.csv`.
//!
//! Training runs the one transformer of [`crate::model`] with its weights made trainable
//! ([`crate::model::Model::trainable`]); attribution never computes weight gradients.

pub mod dpo;
mod error;
pub mod eval;
pub mod grpo;
pub mod layout;
pub mod optim;
mod pairs;
pub mod peft;
pub mod policy;
pub mod ppo;
pub mod rollout;
pub mod sft;
mod stage;
pub mod task;
pub mod tune;
mod tune_out;
mod zoo;

pub use zoo::{train_zoo, LabConfig, ModelShape, ZooReport, STAGES};

pub use error::{LabError, Result};
pub use stage::StageContext;
