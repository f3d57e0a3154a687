//! Carrying out the panels' [`Command`]s after the frame: file dialogs, background jobs,
//! exports.

use super::commands::Command;
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

fn pick_folder(title: &str) -> Option<PathBuf> {
    rfd::FileDialog::new().set_title(title).pick_folder()
}

fn pick_file(title: &str, kind: &str, extensions: &[&str]) -> Option<PathBuf> {
    rfd::FileDialog::new()
        .set_title(title)
        .add_filter(kind, extensions)
        .pick_file()
}

impl App {
    /// Carry out one command.
    pub(super) fn apply(&mut self, ctx: &egui::Context, cmd: Command) {
        match cmd {
            Command::OpenResults(dir) => self.open_results(ctx, dir),
            Command::ChooseResults => {
                if let Some(dir) = pick_folder("Open a study, comparison or run folder") {
                    self.open_results(ctx, dir);
                }
            }
            Command::ChooseModel { side, folder } => {
                let title = super::models::slot_title(side);
                let picked = if folder {
                    pick_folder(title)
                } else {
                    pick_file(title, "Model", &["gguf", "safetensors"])
                };
                if let Some(p) = picked {
                    let spec = p.display().to_string();
                    self.apply(ctx, Command::SetModel { side, spec });
                }
            }
            Command::SetModel { side, spec } => {
                self.settings.models[side].clone_from(&spec);
                self.models.inspect(ctx, side, spec);
            }
            Command::Inspect(side) => {
                let spec = self.settings.models[side].trim().to_owned();
                self.models.inspect(ctx, side, spec);
            }
            Command::CancelInspect(side) => self.models.cancel(side),
            Command::ChooseDataset => {
                if let Some(p) = pick_file("Dataset", "JSON lines", &["jsonl", "json"]) {
                    self.settings.study.dataset = p.display().to_string();
                }
            }
            Command::ChooseStudyFolder => {
                if let Some(p) = pick_folder("Study output folder") {
                    self.settings.study.out = p.display().to_string();
                }
            }
            Command::RunStudy => self.run_study(ctx),
            Command::CancelStudy => {
                if let Some(s) = &self.study {
                    s.cancel();
                }
            }
            Command::SavePng(view) => {
                if let Some(path) = rfd::FileDialog::new()
                    .set_title("Save PNG")
                    .set_file_name(view.file_name())
                    .add_filter("PNG", &["png"])
                    .save_file()
                {
                    self.exporter.enqueue(view, path);
                }
            }
            Command::ExportAll => {
                if let Some(dir) = pick_folder("Export all figures into") {
                    self.export_all(&dir);
                }
            }
            Command::ChooseLab => {
                if let Some(dir) = pick_folder("Lab folder (subfolders with train_log.csv)") {
                    self.views.training.open(&dir);
                    self.settings.lab = Some(dir);
                }
            }
        }
    }

    /// Queue every view that has something to show for saving into `dir`.
    pub fn export_all(&mut self, dir: &std::path::Path) {
        for view in View::ALL {
            let shown = if view.needs_results() {
                self.results.is_some()
            } else {
                !self.views.training.charts.is_empty()
            };
            if shown {
                self.exporter.enqueue(view, dir.join(view.file_name()));
            }
        }
    }

    /// Queue the view for saving to `path`, as "Save PNG…" does after its dialog.
    pub fn save_png(&mut self, view: View, path: PathBuf) {
        self.exporter.enqueue(view, path);
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
