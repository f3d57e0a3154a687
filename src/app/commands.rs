//! What panels ask for while drawing: typed events, applied by the shell after the frame
//! (`dispatch.rs`).

use super::views::View;
use crate::side::Side;
use std::path::PathBuf;

/// A request from the UI.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Load a study, comparison or run directory.
    OpenResults(PathBuf),
    /// Ask for a results directory.
    ChooseResults,
    /// Ask for a model folder (`folder`) or a `.gguf` / `.safetensors` file for a slot.
    ChooseModel {
        side: Side,
        folder: bool,
    },
    /// Put a model spec into a slot and inspect it.
    SetModel {
        side: Side,
        spec: String,
    },
    /// Inspect the slot's spec (downloading a Hub id).
    Inspect(Side),
    CancelInspect(Side),
    ChooseDataset,
    ChooseStudyFolder,
    RunStudy,
    CancelStudy,
    /// Ask for a file and save the view there.
    SavePng(View),
    /// Ask for a folder and save every view there.
    ExportAll,
    /// Ask for a lab folder for the training view.
    ChooseLab,
}
