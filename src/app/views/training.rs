//! Training curves: every metric of the `train_log.csv` files of a lab directory (the bundled
//! model zoo, or a folder the user opens) against the step, one curve per model.

use super::line_chart_ui;
use crate::report::figures::LineChart;
use crate::report::run::RunError;
use crate::report::train_log::{self, TrainLog};
use egui::Ui;
use std::path::{Path, PathBuf};

/// The lab directory shown and its charts.
#[derive(Default)]
pub struct TrainingState {
    pub dir: Option<PathBuf>,
    pub logs: Vec<TrainLog>,
    pub charts: Vec<LineChart>,
    pub error: Option<RunError>,
}

impl TrainingState {
    /// Read the logs of `dir` (each subfolder with a `train_log.csv`).
    pub fn open(&mut self, dir: &Path) {
        self.dir = Some(dir.to_owned());
        match train_log::read_lab(dir) {
            Ok(logs) => {
                self.charts = train_log::charts(&logs);
                self.logs = logs;
                self.error = None;
            }
            Err(e) => {
                self.logs.clear();
                self.charts.clear();
                self.error = Some(e);
            }
        }
    }
}

/// Draw the charts, two a row. Returns true when "Open lab folder…" was clicked.
pub fn training_ui(ui: &mut Ui, state: &TrainingState) -> bool {
    let mut open = false;
    ui.horizontal(|ui| {
        open = ui.button("Open lab folder…").clicked();
        match &state.dir {
            Some(d) => ui.label(format!(
                "{} models with a training log in {}",
                state.logs.len(),
                crate::assets::display_path(d).display()
            )),
            None => ui.label("No lab folder: open one whose subfolders hold train_log.csv"),
        };
    });
    if let Some(e) = &state.error {
        let palette = super::super::theme::Palette::of(ui.ctx());
        ui.colored_label(palette.error(), crate::message::chain(e));
    }
    if state.charts.is_empty() {
        if state.dir.is_some() && state.error.is_none() {
            ui.label("No subfolder of this folder holds a train_log.csv");
        }
        return open;
    }
    let rows = state.charts.len().div_ceil(2) as f32;
    let height = ((ui.available_height() - 20.0) / rows - 30.0).max(110.0);
    egui::ScrollArea::vertical().show(ui, |ui| {
        for pair in state.charts.chunks(2) {
            ui.columns(2, |cols| {
                for (col, chart) in cols.iter_mut().zip(pair) {
                    line_chart_ui(col, chart, false, height);
                }
            });
        }
    });
    open
}
