//! What panels ask for while drawing: typed events, applied by the shell after the frame
//! (`dispatch.rs`).

use super::paths::Pick;
use crate::side::Side;
use std::path::PathBuf;

/// A request from the UI.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Load a study, comparison or run directory.
    OpenResults(PathBuf),
    /// Ask for a path (a native dialog, or a typed path), then use it.
    Choose(Pick),
    /// Put a model spec into a slot and inspect it.
    SetModel {
        side: Side,
        spec: String,
    },
    /// Inspect the slot's spec (downloading a Hub id).
    Inspect(Side),
    CancelInspect(Side),
    RunStudy,
    CancelStudy,
    /// Start the fine-tune form's run.
    StartTune,
    CancelTune,
    /// Compute the trajectory of the fine-tune that ended, and open it.
    TuneTrajectory,
    /// Show the open trajectory's checkpoint (its index) against the first.
    SelectCheckpoint(usize),
}
