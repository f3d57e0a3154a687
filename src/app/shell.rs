//! The app's state and what happens on each event, without drawing: `logic` drains the
//! background jobs and applies the commands the panels queued during the previous frame
//! (`dispatch.rs`); `layout.rs` draws.

use super::assets;
use super::commands::Command;
use super::error::AppError;
use super::export::Exporter;
use super::figure::{SaveForm, Saver};
use super::models::ModelPicker;
use super::options::Options;
use super::paths::PathPrompt;
use super::results::{self, Results};
use super::settings::Settings;
use super::study::{Ended, Running};
use super::trajectory::{self, Opened, TrajectoryState};
use super::views::{View, ViewState};
use super::worker::{Message, Worker};
use crate::message;
use crate::report::circuit::{EdgeSelection, Mode};
use crate::side::Side;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A line of the status bar.
pub(super) struct Status {
    pub(super) error: bool,
    pub(super) text: String,
}

/// The `--screenshot` run: save the view once results are shown, then close.
struct Screenshot {
    path: PathBuf,
    queued: bool,
}

/// What is open: the results on screen, the folder being loaded, the trajectory.
#[derive(Default)]
pub struct Shown {
    pub results: Option<Results>,
    pub(super) loading: Option<(PathBuf, Worker<Opened>)>,
    /// The open trajectory; its chosen checkpoint's pair with the first is `results`.
    pub trajectory: TrajectoryState,
    /// Whether the command line chose the view (an opened trajectory then does not switch
    /// to its own).
    view_given: bool,
    /// The user's own `circuitdiff demo` folder the shown results belong to, with its studies
    /// and trajectory (not the bundled copy).
    pub(super) demo_run: Option<(PathBuf, Vec<(String, PathBuf)>)>,
}

/// The models picked for a study, and the study running on them.
#[derive(Default)]
pub struct Studying {
    pub models: ModelPicker,
    pub running: Option<Running>,
}

/// What ships with circuitdiff: the demo studies and trajectory, the zoo's pairs.
#[derive(Default)]
pub(super) struct Catalogue {
    pub(super) demos: Vec<(String, PathBuf)>,
    /// The bundled trajectories' names and folders.
    pub(super) demo_trajectories: Vec<(String, PathBuf)>,
    pub(super) zoo_pairs: Vec<(String, PathBuf, PathBuf)>,
}

impl Catalogue {
    /// What the assets folder `assets` holds (nothing without one).
    fn bundled(assets: Option<&Path>) -> Self {
        Self {
            demos: assets.map(assets::demo_studies).unwrap_or_default(),
            demo_trajectories: assets.map(assets::demo_trajectories).unwrap_or_default(),
            zoo_pairs: assets.map(assets::zoo_pairs).unwrap_or_default(),
        }
    }
}

/// Figures and screenshots on their way to files.
#[derive(Default)]
pub(super) struct Saving {
    pub(super) exporter: Exporter,
    pub(super) saver: Saver,
    /// The "Save figure" window.
    pub(super) form: SaveForm,
    screenshot: Option<Screenshot>,
}

/// The window's plumbing: storage, theme, the view's area, dialogs, and the failure a
/// `--screenshot` run exits with.
pub struct Window {
    persist: bool,
    failure: Arc<Mutex<Option<String>>>,
    pub(super) view_rect: egui::Rect,
    applied_dark: Option<bool>,
    /// Whether native file dialogs can be shown (else paths are typed).
    pub native_dialogs: bool,
    /// The typed-path window, while one is open.
    pub path_prompt: Option<PathPrompt>,
}

/// The whole app.
pub struct App {
    pub settings: Settings,
    pub views: ViewState,
    /// What is open.
    pub shown: Shown,
    /// The study and its models.
    pub study: Studying,
    /// The fine-tune started from the Models panel.
    pub tuning: super::tune::Tuning,
    pub(super) catalogue: Catalogue,
    pub(super) saving: Saving,
    pub window: Window,
    /// What the panels asked for during the frame, applied by `logic` before the next.
    pub(super) commands: Vec<Command>,
    pub(super) status: Option<Status>,
}

impl App {
    /// The app, with its settings from `cc`'s storage when `options.persist`.
    pub fn new(
        cc: &eframe::CreationContext<'_>,
        options: Options,
        failure: Arc<Mutex<Option<String>>>,
    ) -> Self {
        Self::start(&cc.egui_ctx, cc.storage, options, failure)
    }

    /// The app on `ctx`, with its settings from `storage` when `options.persist`.
    fn start(
        ctx: &egui::Context,
        storage: Option<&dyn eframe::Storage>,
        options: Options,
        failure: Arc<Mutex<Option<String>>>,
    ) -> Self {
        let mut settings = if options.persist {
            storage.and_then(Settings::load).unwrap_or_default()
        } else {
            Settings::default()
        };
        settings.view = options.view.unwrap_or(settings.view);
        settings.mode = options.mode.unwrap_or(settings.mode);
        let assets = crate::assets::dir();
        let mut app = Self {
            settings,
            views: ViewState::default(),
            shown: Shown {
                view_given: options.view.is_some(),
                ..Shown::default()
            },
            study: Studying::default(),
            tuning: Default::default(),
            catalogue: Catalogue::bundled(assets.as_deref()),
            saving: Saving {
                screenshot: options.screenshot.map(|path| Screenshot {
                    path,
                    queued: false,
                }),
                ..Saving::default()
            },
            window: Window {
                persist: options.persist,
                failure,
                view_rect: egui::Rect::NOTHING,
                applied_dark: None,
                native_dialogs: super::paths::native_dialogs(),
                path_prompt: None,
            },
            commands: Vec::new(),
            status: None,
        };
        let lab = app
            .settings
            .lab
            .clone()
            .filter(|d| d.is_dir())
            .or_else(|| assets.map(|a| a.join("zoo")).filter(|d| d.is_dir()));
        if let Some(lab) = lab {
            app.views.training.open(&lab);
        }
        let start = options
            .open
            .or_else(|| app.catalogue.demos.first().map(|d| d.1.clone()))
            .or_else(|| {
                app.settings
                    .recent_results
                    .iter()
                    .find(|d| results::is_results_dir(d))
                    .cloned()
            });
        if let Some(dir) = start {
            app.open_results(ctx, dir);
        }
        // eframe restores a saved window size over the one it is given (with or without
        // --no-persist): the size asked for on the command line is set again.
        if let Some([w, h]) = options.window {
            ctx.send_viewport_cmd(egui::ViewportCommand::InnerSize(egui::vec2(w, h)));
        }
        app
    }

    /// Whether a results directory is being loaded.
    pub fn is_loading(&self) -> bool {
        self.shown.loading.is_some()
    }

    /// Whether a study is running.
    pub fn study_running(&self) -> bool {
        self.study.running.is_some()
    }

    /// The status line's text.
    pub fn status_text(&self) -> Option<&str> {
        self.status.as_ref().map(|s| s.text.as_str())
    }

    pub(super) fn set_status(&mut self, error: bool, text: impl Into<String>) {
        let text = text.into();
        if error {
            log::warn!("{text}");
        }
        self.status = Some(Status { error, text });
    }

    /// Start loading `dir` in the background; the current results stay until it is done.
    pub(super) fn open_results(&mut self, ctx: &egui::Context, dir: PathBuf) {
        // A folder `demo` wrote opens on its first study.
        let dir = assets::results_to_open(&dir);
        let repaint = ctx.clone();
        let job_dir = dir.clone();
        match Worker::spawn(
            "results-loader",
            Box::new(move || repaint.request_repaint()),
            move |_, _| trajectory::open(&job_dir),
        ) {
            Ok(w) => self.shown.loading = Some((dir, w)),
            Err(source) => {
                let e = AppError::Spawn {
                    what: "loading the results",
                    source,
                };
                self.set_status(true, message::chain(&e));
            }
        }
    }

    /// Show what `dir` opened as: results, or a trajectory (then in its own view unless the
    /// command line chose one).
    fn opened(&mut self, dir: PathBuf, opened: Opened) {
        let name = dir.file_name().unwrap_or(dir.as_os_str());
        self.set_status(false, format!("opened {}", name.to_string_lossy()));
        let results = match opened {
            Opened::Results(results) => {
                self.shown.trajectory.close();
                results
            }
            Opened::Trajectory(data, results) => {
                self.shown.trajectory.open(data);
                if !self.shown.view_given {
                    self.settings.view = View::Trajectory;
                }
                results
            }
        };
        self.shown.view_given = false;
        let bundled = crate::assets::dir().map(|a| a.join("demo"));
        self.shown.demo_run =
            assets::demo_run_of(&dir).filter(|(run, _)| Some(run) != bundled.as_ref());
        let specs = [
            &results.base,
            results.tuned.as_ref().unwrap_or(&results.base),
        ]
        .map(|r| r.manifest.model.spec.clone());
        self.views.training.open_models(&specs);
        self.show_results(*results, true);
        self.settings.add_recent_results(dir);
    }

    /// Make `results` the app's: `fresh` ones (another folder) reset the views and the number
    /// of edges drawn; another checkpoint of the same trajectory keeps them.
    fn show_results(&mut self, results: Results, fresh: bool) {
        if !results.circuit.modes().contains(&self.settings.mode) {
            self.settings.mode = Mode::Base;
        }
        if fresh {
            self.settings.top_k = results
                .circuit
                .selected(self.settings.mode, EdgeSelection::default())
                .max(1);
            self.views.reset_for_new_results();
        } else {
            self.views.reset_for_same_graph();
        }
        self.shown.results = Some(results);
    }

    fn drain_jobs(&mut self, ctx: &egui::Context) {
        if let Some((dir, worker)) = &mut self.shown.loading {
            let dir = dir.clone();
            let finished =
                worker
                    .poll(Duration::from_millis(2))
                    .into_iter()
                    .find_map(|m| match m {
                        Message::Finished(r) => Some(r),
                        _ => None,
                    });
            if let Some(r) = finished {
                self.shown.loading = None;
                match r {
                    Ok(opened) => self.opened(dir, opened),
                    Err(e) => self.set_status(true, message::chain(&e)),
                }
            }
        }
        for pair in self.shown.trajectory.logic(ctx) {
            match pair {
                Ok(results) => self.show_results(results, false),
                Err(e) => self.set_status(true, message::chain(&e)),
            }
        }
        for spec in self.study.models.logic(ctx) {
            self.settings.add_recent_model(spec);
        }
        if let Some(ended) = self.study.running.as_mut().and_then(Running::logic) {
            self.study.running = None;
            match ended {
                Ended::Finished(dir) => {
                    self.set_status(false, "study finished");
                    self.open_results(ctx, dir);
                }
                Ended::Cancelled => {
                    self.set_status(false, "study cancelled; Run study continues it")
                }
                Ended::Failed(e) => {
                    self.set_status(true, format!("study failed: {}", message::chain(&e)))
                }
            }
        }
        if let Some(dir) = self.tuning.logic() {
            self.open_results(ctx, dir);
        }
        self.export_logic(ctx);
    }

    /// Finished figure saves, and the screenshot queue's frame.
    fn export_logic(&mut self, ctx: &egui::Context) {
        for done in self.saving.saver.finished() {
            match done {
                Ok(written) => self.set_status(false, wrote_line(&written)),
                Err(e) => self.set_status(true, message::chain(&e)),
            }
        }
        let frame = self.saving.exporter.logic(ctx);
        if let Some((view, mode)) = frame.show {
            (self.settings.view, self.settings.mode) = (view, mode);
        }
        for s in frame.saved {
            match s {
                Ok((path, [w, h])) => {
                    self.set_status(false, format!("saved {w}×{h} {}", path.display()));
                    if self
                        .saving
                        .screenshot
                        .as_ref()
                        .is_some_and(|s| s.path == path)
                    {
                        println!("saved {w}x{h} {}", path.display());
                        ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                    }
                }
                Err(e) => {
                    let text = message::chain(&e);
                    if self.saving.screenshot.is_some() {
                        if let Ok(mut f) = self.window.failure.lock() {
                            *f = Some(text.clone());
                        }
                        ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                    }
                    self.set_status(true, text);
                }
            }
        }
        if let Some(((view, mode), written)) = frame.ended {
            (self.settings.view, self.settings.mode) = (view, mode);
            if written.len() > 1 {
                self.set_status(false, wrote_line(&written));
            }
        }
    }

    fn screenshot_logic(&mut self, ctx: &egui::Context) {
        let Some(shot) = &mut self.saving.screenshot else {
            return;
        };
        if shot.queued || self.shown.loading.is_some() {
            return;
        }
        if self.shown.results.is_none() {
            if let (Some(s), Ok(mut f)) = (&self.status, self.window.failure.lock()) {
                *f = Some(format!("nothing to show: {}", s.text));
                ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                return;
            }
        }
        shot.queued = true;
        let path = shot.path.clone();
        self.screenshot_view(self.settings.view, path);
    }

    fn dropped_files(&mut self, ctx: &egui::Context) {
        let (files, pointer) = ctx.input(|i| (i.raw.dropped_files.clone(), i.pointer.latest_pos()));
        for f in files {
            let path = f.path().to_owned();
            if results::is_results_dir(&path) {
                self.commands.push(Command::OpenResults(path));
                continue;
            }
            let side = pointer
                .and_then(|p| {
                    Side::BOTH.into_iter().find(|&s| {
                        self.study.models.slots[s]
                            .rect
                            .is_some_and(|r| r.contains(p))
                    })
                })
                .or_else(|| {
                    Side::BOTH
                        .into_iter()
                        .find(|&s| self.settings.models[s].trim().is_empty())
                })
                .unwrap_or(Side::Base);
            self.commands.push(Command::SetModel {
                side,
                spec: path.display().to_string(),
            });
        }
    }

    /// Everything but drawing, once per frame before it: the theme, dropped files, the
    /// queued commands, the background jobs and the screenshot.
    fn frame_logic(&mut self, ctx: &egui::Context) {
        if self.window.applied_dark != Some(self.settings.dark) {
            ctx.set_theme(if self.settings.dark {
                egui::Theme::Dark
            } else {
                egui::Theme::Light
            });
            self.window.applied_dark = Some(self.settings.dark);
        }
        self.dropped_files(ctx);
        for cmd in std::mem::take(&mut self.commands) {
            self.apply(ctx, cmd);
        }
        self.drain_jobs(ctx);
        self.screenshot_logic(ctx);
    }
}

/// The status line after an export: how many files, where, and their names.
fn wrote_line(written: &[PathBuf]) -> String {
    let dir = written
        .first()
        .and_then(|p| p.parent())
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let names: Vec<String> = written
        .iter()
        .filter_map(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    format!(
        "wrote {} files into {dir}: {}",
        names.len(),
        names.join(", ")
    )
}

impl eframe::App for App {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.frame_logic(ctx);
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.frame_ui(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        if self.window.persist {
            self.settings.save(storage);
        }
    }

    fn persist_egui_memory(&self) -> bool {
        self.window.persist
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// The app without a window, with nothing persisted.
    fn headless(ctx: &egui::Context, open: Option<PathBuf>) -> App {
        let options = Options {
            open,
            ..Options::default()
        };
        App::start(ctx, None, options, Arc::default())
    }

    #[test]
    fn a_folder_that_is_not_there_ends_its_loading_on_the_status_line() {
        let ctx = egui::Context::default();
        let tmp = tempfile::tempdir().unwrap();
        let mut app = headless(&ctx, Some(tmp.path().join("missing")));
        assert!(app.is_loading());
        let start = Instant::now();
        while app.is_loading() {
            assert!(start.elapsed() < Duration::from_secs(30), "still loading");
            app.frame_logic(&ctx);
        }
        assert!(app.shown.results.is_none());
        let status = app.status.as_ref().unwrap();
        assert!(status.error, "{}", status.text);
        assert!(status.text.contains("missing"), "{}", status.text);
    }

    #[test]
    fn a_queued_command_is_applied_before_the_next_frame() {
        let ctx = egui::Context::default();
        let tmp = tempfile::tempdir().unwrap();
        let mut app = headless(&ctx, Some(tmp.path().join("missing")));
        let spec = tmp.path().join("model").display().to_string();
        app.commands.push(Command::SetModel {
            side: Side::Tuned,
            spec: spec.clone(),
        });
        app.frame_logic(&ctx);
        assert!(app.commands.is_empty());
        assert_eq!(app.settings.models.tuned, spec);
        assert!(app.settings.models.base.is_empty());
    }

    #[test]
    fn the_export_line_names_the_folder_and_the_files() {
        let written = [PathBuf::from("/f/graph.png"), PathBuf::from("/f/graph.svg")];
        assert_eq!(
            wrote_line(&written),
            "wrote 2 files into /f: graph.png, graph.svg"
        );
    }
}
