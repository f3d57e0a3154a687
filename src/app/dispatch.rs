//! Carrying out the panels' [`Command`]s after the frame: file dialogs, background jobs,
//! exports.

use super::commands::Command;
use super::export::Shot;
use super::figure;
use super::paths::{self, Pick};
use super::shell::App;
use super::study::Running;
use super::views::View;
use crate::report::circuit::Mode;
use crate::report::render::Scale;
use std::path::PathBuf;

/// Where a study goes when the form names no folder.
fn default_study_dir() -> PathBuf {
    default_dir("studies", "study")
}

/// A new folder `NAME-SECONDS` in `kind` under the app's data folder.
fn default_dir(kind: &str, name: &str) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    eframe::storage_dir("circuitdiff")
        .unwrap_or_else(|| PathBuf::from("circuitdiff-studies"))
        .join(kind)
        .join(format!("{name}-{secs}"))
}

impl App {
    /// Carry out one command.
    pub(super) fn apply(&mut self, ctx: &egui::Context, cmd: Command) {
        match cmd {
            Command::OpenResults(dir) => self.open_results(ctx, dir),
            Command::Choose(pick) => match paths::ask(pick, self.window.native_dialogs) {
                Ok(Some(path)) => self.chosen(ctx, pick, path),
                Ok(None) => {}
                Err(prompt) => self.window.path_prompt = Some(prompt),
            },
            Command::SetModel { side, spec } => {
                self.settings.models[side].clone_from(&spec);
                self.study.models.inspect(ctx, side, spec);
            }
            Command::Inspect(side) => {
                let spec = self.settings.models[side].trim().to_owned();
                self.study.models.inspect(ctx, side, spec);
            }
            Command::CancelInspect(side) => self.study.models.cancel(side),
            Command::RunStudy => self.run_study(ctx),
            Command::CancelStudy => {
                if let Some(s) = &self.study.running {
                    s.cancel();
                }
            }
            Command::StartTune => self.start_tune(ctx),
            Command::CancelTune => self.tuning.cancel(),
            Command::TuneTrajectory => {
                let models = crate::side::PerSide {
                    base: String::new(),
                    tuned: String::new(),
                };
                match super::study::config(&self.settings.study, &models) {
                    Ok(study) => self.tuning.start_trajectory(ctx, study),
                    Err(e) => self.tuning.error = Some(e),
                }
            }
            Command::SelectCheckpoint(j) => {
                if let Err(e) = self.shown.trajectory.select(ctx, j) {
                    self.set_status(true, crate::message::chain(&e));
                }
            }
        }
    }

    /// Use the path chosen for `pick`.
    pub(super) fn chosen(&mut self, ctx: &egui::Context, pick: Pick, path: PathBuf) {
        match pick {
            Pick::Results => self.open_results(ctx, path),
            Pick::Model { side, .. } => {
                let spec = path.display().to_string();
                self.apply(ctx, Command::SetModel { side, spec });
            }
            Pick::Dataset => self.settings.study.dataset = path.display().to_string(),
            Pick::StudyFolder => self.settings.study.out = path.display().to_string(),
            Pick::TuneModel { .. } => self.settings.tune.model = path.display().to_string(),
            Pick::TuneDataset => {
                self.settings.tune.source = super::tune::DataSource::File;
                self.settings.tune.file = path.display().to_string();
            }
            Pick::TuneFolder => self.settings.tune.out = path.display().to_string(),
            Pick::SaveFigure(view, mode) => {
                let form = self.saving.form;
                let width = form.width.unwrap_or_else(|| self.default_figure_width(ctx));
                self.save_figure(ctx, (view, mode), &path, form.formats, width);
            }
            Pick::SaveEdges => self.save_edges(&path),
            Pick::ExportAll => match std::fs::create_dir_all(&path) {
                Ok(()) => self.export_all(ctx, &path),
                Err(e) => self.set_status(true, format!("{}: {e}", path.display())),
            },
            Pick::Lab => {
                self.views.training.open(&path);
                self.settings.lab = Some(path);
            }
        }
    }

    /// Write the most changed edges of the open results as CSV at `path`.
    fn save_edges(&mut self, path: &std::path::Path) {
        let changes = self
            .shown
            .results
            .as_ref()
            .and_then(|r| r.edges.as_ref())
            .and_then(|e| e.as_ref().ok());
        let Some(changes) = changes else {
            self.set_status(true, "these results have no tested edges".to_owned());
            return;
        };
        let csv = changes.exact_table().csv();
        match crate::fsutil::write_atomic(path, csv.as_bytes()) {
            Ok(()) => self.set_status(false, format!("wrote {}", path.display())),
            Err(e) => self.set_status(true, format!("{}: {e}", path.display())),
        }
    }

    /// Write every view that has something to show, in every mode it has, into `dir`: PNG at
    /// twice the figure's base size and SVG, on a background thread. The view on screen stays.
    pub fn export_all(&mut self, ctx: &egui::Context, dir: &std::path::Path) {
        let modes = self
            .shown
            .results
            .as_ref()
            .map(|r| r.circuit.modes())
            .unwrap_or_default();
        let src = self.figure_sources();
        let mut jobs = Vec::new();
        for view in View::ALL {
            let view_modes = if view.depends_on_mode() {
                modes.clone()
            } else {
                vec![self.settings.mode]
            };
            for mode in view_modes {
                // A view with nothing to draw (no training logs, one run) is left out.
                if let Ok(data) = figure::figure_of(view, mode, &src) {
                    jobs.push(figure::Job {
                        data,
                        path: dir.join(view.file_name_in(mode)),
                        formats: figure::Formats::default(),
                        scale: Scale::default(),
                    });
                }
            }
        }
        if let Err(e) = self.saving.saver.start(ctx, jobs) {
            self.set_status(true, crate::message::chain(&e));
        }
    }

    /// Write `view`'s figure in `mode` at `path` (its extension set per format), the PNG
    /// `width` pixels wide, on a background thread.
    pub fn save_figure(
        &mut self,
        ctx: &egui::Context,
        (view, mode): (View, Mode),
        path: &std::path::Path,
        formats: figure::Formats,
        width: u32,
    ) {
        let started = figure::figure_of(view, mode, &self.figure_sources()).and_then(|data| {
            let base = data.base_size().0.max(1);
            let job = figure::Job {
                data,
                path: path.to_owned(),
                formats,
                scale: Scale(f64::from(width.max(1)) / f64::from(base)),
            };
            self.saving.saver.start(ctx, vec![job])
        });
        if let Err(e) = started {
            self.set_status(true, crate::message::chain(&e));
        }
    }

    /// Twice the view's width on screen, in pixels.
    pub fn default_figure_width(&self, ctx: &egui::Context) -> u32 {
        let width = self.window.view_rect.width() * ctx.pixels_per_point() * 2.0;
        if width.is_finite() && width >= 1.0 {
            width.round() as u32
        } else {
            2560
        }
    }

    /// What the figures are drawn from.
    pub(super) fn figure_sources(&self) -> figure::Sources<'_> {
        figure::Sources {
            results: self.shown.results.as_ref(),
            trajectory: &self.shown.trajectory,
            views: &self.views,
            top_k: self.settings.top_k,
            log_y: self.settings.log_y,
            heatmap_scale: self.settings.heatmap_scale,
        }
    }

    /// Queue a screenshot of the view, in the mode on screen, cropped to the view's area, for
    /// saving to `path` (`--screenshot`).
    pub fn screenshot_view(&mut self, view: View, path: PathBuf) {
        let shown = (self.settings.view, self.settings.mode);
        let mode = self.settings.mode;
        self.saving
            .exporter
            .enqueue(Shot { view, mode, path }, shown);
    }

    /// Whether screenshots or figures are queued or being written.
    pub fn exporting(&self) -> bool {
        self.saving.exporter.busy() || self.saving.saver.busy()
    }

    /// Start the fine-tune form's run (into a new folder when it names none); bad settings are
    /// shown in the panel.
    pub fn start_tune(&mut self, ctx: &egui::Context) {
        if self.tuning.run.is_some() {
            return;
        }
        match self.settings.tune.config() {
            Ok(cfg) => {
                if self.settings.tune.out.trim().is_empty() {
                    self.settings.tune.out = default_dir("tunes", "tune").display().to_string();
                }
                let out = PathBuf::from(self.settings.tune.out.trim());
                self.set_status(false, format!("fine-tuning into {}", out.display()));
                self.tuning.start(ctx, cfg, out);
            }
            Err(e) => self.tuning.error = Some(e),
        }
    }

    /// Start the form's study on the two slots' models.
    pub fn run_study(&mut self, ctx: &egui::Context) {
        if self.study.running.is_some() {
            return;
        }
        if let Err(why) =
            (self.study.models).ready(&self.settings.models, self.settings.study.level())
        {
            self.set_status(true, why.to_string());
            return;
        }
        let cfg = match super::study::config(&self.settings.study, &self.settings.models) {
            Ok(c) => c,
            Err(e) => {
                self.set_status(true, crate::message::chain(&e));
                return;
            }
        };
        if self.settings.study.out.trim().is_empty() {
            self.settings.study.out = default_study_dir().display().to_string();
        }
        let out = PathBuf::from(self.settings.study.out.trim());
        match Running::start(ctx, cfg, self.settings.study.device, out) {
            Ok(r) => {
                self.set_status(false, format!("study running into {}", r.out.display()));
                self.study.running = Some(r);
            }
            Err(e) => self.set_status(true, crate::message::chain(&e)),
        }
    }
}
