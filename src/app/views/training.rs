//! Training curves: every metric of the `train_log.csv` files of a lab directory (the bundled
//! model zoo, or a folder the user opens) against the step, one curve per model in one colour
//! across every chart, supervised and RL stages on their own step axes, with smoothing.

use super::super::theme::Palette;
use super::readable_y_axis;
use crate::report::figures::LineChart;
use crate::report::run::RunError;
use crate::report::train_log::{self, LogSource, Stage, TrainLog};
use egui::Ui;
use egui_plot::{Line, Plot, PlotPoints};
use std::path::{Path, PathBuf};

/// The lab directory shown (or the models of the shown results), its charts by stage, and the
/// smoothing.
#[derive(Default)]
pub struct TrainingState {
    pub dir: Option<PathBuf>,
    /// The model specs of the shown results whose own logs are shown (when no lab folder is).
    pub models: Vec<String>,
    pub logs: Vec<TrainLog>,
    /// Each stage's charts, supervised first.
    pub stages: Vec<(Stage, Vec<LineChart>)>,
    /// The weight of the moving average drawn over each curve (0: none).
    pub smoothing: f64,
    pub error: Option<RunError>,
}

impl TrainingState {
    /// Read the logs of `dir` (each subfolder with a `train_log.csv`).
    pub fn open(&mut self, dir: &Path) {
        self.dir = Some(dir.to_owned());
        self.models.clear();
        self.set(train_log::read_lab(dir));
    }

    /// Show the training logs of the models `specs` (the shown results' base and tuned): each
    /// model folder's `train_log.csv` or `trainer_state.json`; none when no folder holds one.
    pub fn open_models(&mut self, specs: &[String]) {
        self.dir = None;
        self.models = specs.to_vec();
        self.models.dedup();
        let logs = self
            .models
            .iter()
            .filter_map(|spec| model_log(spec))
            .map(|source| source.read())
            .collect();
        self.set(logs);
    }

    fn set(&mut self, logs: Result<Vec<TrainLog>, RunError>) {
        match logs {
            Ok(logs) => {
                let mut stages: Vec<Stage> = logs.iter().map(TrainLog::stage).collect();
                stages.sort();
                stages.dedup();
                self.stages = stages
                    .into_iter()
                    .map(|stage| {
                        let of_stage: Vec<TrainLog> = logs
                            .iter()
                            .filter(|l| l.stage() == stage)
                            .cloned()
                            .collect();
                        (stage, train_log::charts(&of_stage))
                    })
                    .collect();
                self.logs = logs;
                self.error = None;
            }
            Err(e) => {
                self.logs.clear();
                self.stages.clear();
                self.error = Some(e);
            }
        }
    }

    /// Whether there is a chart to show.
    pub fn has_charts(&self) -> bool {
        self.stages.iter().any(|(_, charts)| !charts.is_empty())
    }

    /// A model's colour: its place among the lab's models.
    fn color(&self, palette: Palette, model: &str) -> egui::Color32 {
        palette.series(self.logs.iter().position(|l| l.name == model).unwrap_or(0))
    }
}

/// The trainer's log in the folder of the model `spec`: `train_log.csv` (the lab's) or
/// `trainer_state.json` (TRL's). A path the bundled demo recorded (`assets/zoo/…`) is looked up
/// in the assets directory.
fn model_log(spec: &str) -> Option<LogSource> {
    let path = Path::new(spec);
    let folder = if path.is_dir() {
        path.to_owned()
    } else {
        let rest = path.strip_prefix("assets").ok()?;
        crate::assets::dir()?.join(rest)
    };
    [train_log::FILE_NAME, train_log::TRAINER_STATE]
        .into_iter()
        .map(|name| folder.join(name))
        .find(|f| f.is_file())
        .map(|f| LogSource::of_file(&f))
}

/// The folder line, the smoothing control and the legend: each model in its colour.
fn header_ui(ui: &mut Ui, state: &mut TrainingState) -> bool {
    let mut open = false;
    ui.horizontal(|ui| {
        open = ui.button("Open lab folder…").clicked();
        match &state.dir {
            Some(d) => ui.label(format!(
                "{} models with a training log in {}",
                state.logs.len(),
                crate::assets::display_path(d).display()
            )),
            None if !state.models.is_empty() && state.logs.is_empty() => ui.label(
                "No training logs for these results: neither model's folder holds a \
                 train_log.csv or trainer_state.json (open a lab folder to see others)",
            ),
            None if !state.models.is_empty() => ui.label(format!(
                "The training logs of these results' models ({})",
                state.models.join(", ")
            )),
            None => ui.label("No lab folder: open one whose subfolders hold train_log.csv"),
        };
    });
    if state.logs.is_empty() {
        return open;
    }
    let palette = Palette::of(ui.ctx());
    ui.horizontal_wrapped(|ui| {
        ui.add(egui::Slider::new(&mut state.smoothing, 0.0..=0.99).text("smoothing"))
            .on_hover_text("moving-average weight; the raw curve stays drawn faintly");
        ui.separator();
        for log in &state.logs {
            let color = state.color(palette, &log.name);
            ui.label(egui::RichText::new(&log.name).strong().color(color));
        }
    });
    open
}

/// Draw the charts, two a row, stage by stage. Returns true when "Open lab folder…" was
/// clicked.
pub fn training_ui(ui: &mut Ui, state: &mut TrainingState) -> bool {
    let open = header_ui(ui, state);
    if let Some(e) = &state.error {
        ui.colored_label(Palette::of(ui.ctx()).error(), crate::message::chain(e));
    }
    if !state.has_charts() {
        if state.dir.is_some() && state.error.is_none() {
            ui.label("No subfolder of this folder holds a train_log.csv");
        }
        return open;
    }
    let count: usize = state.stages.iter().map(|(_, c)| c.len().div_ceil(2)).sum();
    let headings = 28.0 * state.stages.len() as f32;
    let height = ((ui.available_height() - headings) / count as f32 - 34.0).max(140.0);
    let state = &*state;
    egui::ScrollArea::vertical().show(ui, |ui| {
        for (stage, charts) in &state.stages {
            ui.heading(stage.label());
            for pair in charts.chunks(2) {
                ui.columns(2, |cols| {
                    for (col, chart) in cols.iter_mut().zip(pair) {
                        chart_ui(col, state, *stage, chart, height);
                    }
                });
            }
        }
    });
    open
}

/// One metric's chart: each model's curve in its colour, smoothed over a faint raw curve.
fn chart_ui(ui: &mut Ui, state: &TrainingState, stage: Stage, chart: &LineChart, height: f32) {
    let palette = Palette::of(ui.ctx());
    ui.strong(&chart.title);
    let plot = Plot::new((stage, &chart.title))
        .height(height)
        .x_axis_label(chart.x_label.as_str())
        .y_axis_label(chart.y_label.as_str())
        .allow_scroll(false);
    readable_y_axis(plot).show(ui, |plot_ui| {
        for s in &chart.series {
            let color = state.color(palette, &s.name);
            let raw: Vec<[f64; 2]> = s.points.iter().map(|&(x, y)| [x, y]).collect();
            if state.smoothing > 0.0 {
                plot_ui.line(
                    Line::new(format!("{} (raw)", s.name), PlotPoints::new(raw))
                        .color(color.gamma_multiply(0.3))
                        .width(1.0),
                );
                let smooth: Vec<[f64; 2]> = train_log::smooth(&s.points, state.smoothing)
                    .into_iter()
                    .map(|(x, y)| [x, y])
                    .collect();
                plot_ui.line(
                    Line::new(s.name.as_str(), PlotPoints::new(smooth))
                        .color(color)
                        .width(1.8),
                );
            } else {
                plot_ui.line(
                    Line::new(s.name.as_str(), PlotPoints::new(raw))
                        .color(color)
                        .width(1.5),
                );
            }
        }
    });
}
