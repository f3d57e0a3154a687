//! Carrying out the panels' [`Command`]s after the frame: file dialogs, background jobs,
//! exports.

use super::commands::Command;
use super::export::Shot;
use super::paths::{self, Pick};
use super::shell::App;
use super::study::Running;
use super::views::View;
use std::path::PathBuf;

/// Where a study goes when the form names no folder.
fn default_study_dir() -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    eframe::storage_dir("circuitdiff")
        .unwrap_or_else(|| PathBuf::from("circuitdiff-studies"))
        .join("studies")
        .join(format!("study-{secs}"))
}

impl App {
    /// Carry out one command.
    pub(super) fn apply(&mut self, ctx: &egui::Context, cmd: Command) {
        match cmd {
            Command::OpenResults(dir) => self.open_results(ctx, dir),
            Command::Choose(pick) => match paths::ask(pick, self.native_dialogs) {
                Ok(Some(path)) => self.chosen(ctx, pick, path),
                Ok(None) => {}
                Err(prompt) => self.path_prompt = Some(prompt),
            },
            Command::SetModel { side, spec } => {
                self.settings.models[side].clone_from(&spec);
                self.models.inspect(ctx, side, spec);
            }
            Command::Inspect(side) => {
                let spec = self.settings.models[side].trim().to_owned();
                self.models.inspect(ctx, side, spec);
            }
            Command::CancelInspect(side) => self.models.cancel(side),
            Command::RunStudy => self.run_study(ctx),
            Command::CancelStudy => {
                if let Some(s) = &self.study {
                    s.cancel();
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
            Pick::SavePng(view, mode) => {
                let shown = (self.settings.view, self.settings.mode);
                self.exporter.enqueue(Shot { view, mode, path }, shown);
            }
            Pick::ExportAll => match std::fs::create_dir_all(&path) {
                Ok(()) => self.export_all(&path),
                Err(e) => self.set_status(true, format!("{}: {e}", path.display())),
            },
            Pick::Lab => {
                self.views.training.open(&path);
                self.settings.lab = Some(path);
            }
        }
    }

    /// Queue every view that has something to show, in every mode it has, for saving into
    /// `dir`; the view and mode on screen come back afterwards.
    pub fn export_all(&mut self, dir: &std::path::Path) {
        let shown = (self.settings.view, self.settings.mode);
        let modes = self
            .results
            .as_ref()
            .map(|r| r.circuit.modes())
            .unwrap_or_default();
        for view in View::ALL {
            let has = if view.needs_results() {
                self.results.is_some()
            } else {
                self.views.training.has_charts()
            };
            if !has {
                continue;
            }
            let view_modes = if view.depends_on_mode() {
                modes.clone()
            } else {
                vec![self.settings.mode]
            };
            for mode in view_modes {
                let path = dir.join(view.file_name_in(mode));
                self.exporter.enqueue(Shot { view, mode, path }, shown);
            }
        }
    }

    /// Queue the view, in the mode on screen, for saving to `path`, as "Save PNG…" does after
    /// its dialog.
    pub fn save_png(&mut self, view: View, path: PathBuf) {
        let shown = (self.settings.view, self.settings.mode);
        let mode = self.settings.mode;
        self.exporter.enqueue(Shot { view, mode, path }, shown);
    }

    /// Whether PNG exports are queued or being written.
    pub fn exporting(&self) -> bool {
        self.exporter.busy()
    }

    /// Start the form's study on the two slots' models.
    pub fn run_study(&mut self, ctx: &egui::Context) {
        if self.study.is_some() {
            return;
        }
        if let Err(why) = self.models.ready(&self.settings.models) {
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
                self.study = Some(r);
            }
            Err(e) => self.set_status(true, crate::message::chain(&e)),
        }
    }
}
