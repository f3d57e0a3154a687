//! The app's state and its `eframe::App` implementation: `logic` drains the jobs and applies
//! queued commands, `ui` lays out the toolbar, the side panel, the view and the status line.

use super::commands::Command;
use super::error::AppError;
use super::export::Exporter;
use super::models::ModelPicker;
use super::paths::{Answer, PathPrompt, Pick};
use super::results::{self, Results};
use super::settings::Settings;
use super::study::{Ended, Running};
use super::theme::Palette;
use super::trajectory::{self, Opened, TrajectoryState};
use super::views::{self, View, ViewState};
use super::worker::{Message, Worker};
use super::{assets, Options};
use crate::message;
use crate::report::circuit::{EdgeSelection, Mode};
use crate::side::Side;
use egui::Ui;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A line of the status bar.
struct Status {
    error: bool,
    text: String,
}

/// The `--screenshot` run: save the view once results are shown, then close.
struct Screenshot {
    path: PathBuf,
    queued: bool,
}

/// The whole app.
pub struct App {
    pub settings: Settings,
    persist: bool,
    pub results: Option<Results>,
    loading: Option<(PathBuf, Worker<Opened>)>,
    /// The open trajectory; its chosen checkpoint's pair with the first is `results`.
    pub trajectory: TrajectoryState,
    /// Whether the command line chose the view (an opened trajectory then does not switch
    /// to its own).
    view_given: bool,
    pub views: ViewState,
    pub models: ModelPicker,
    pub study: Option<Running>,
    pub(super) exporter: Exporter,
    pub(super) saver: super::figure::Saver,
    /// The "Save figure" window.
    pub(super) save_form: super::figure::SaveForm,
    pub(super) commands: Vec<Command>,
    status: Option<Status>,
    demos: Vec<(String, PathBuf)>,
    /// The bundled trajectory's name and folder, when it is there.
    demo_trajectory: Option<(String, PathBuf)>,
    zoo_pairs: Vec<(String, PathBuf, PathBuf)>,
    /// The user's own `circuitdiff demo` folder the shown results belong to, with its studies
    /// and trajectory (not the bundled copy).
    pub demo_run: Option<(PathBuf, Vec<(String, PathBuf)>)>,
    screenshot: Option<Screenshot>,
    failure: Arc<Mutex<Option<String>>>,
    pub(super) view_rect: egui::Rect,
    applied_dark: Option<bool>,
    /// Whether native file dialogs can be shown (else paths are typed).
    pub native_dialogs: bool,
    /// The typed-path window, while one is open.
    pub path_prompt: Option<PathPrompt>,
}

impl App {
    /// The app, with its settings from `cc`'s storage when `options.persist`.
    pub fn new(
        cc: &eframe::CreationContext<'_>,
        options: Options,
        failure: Arc<Mutex<Option<String>>>,
    ) -> Self {
        let mut settings = if options.persist {
            cc.storage.and_then(Settings::load).unwrap_or_default()
        } else {
            Settings::default()
        };
        let view_given = options.view.is_some();
        settings.view = options.view.unwrap_or(settings.view);
        settings.mode = options.mode.unwrap_or(settings.mode);
        let assets = crate::assets::dir();
        let demos = assets
            .as_deref()
            .map(assets::demo_studies)
            .unwrap_or_default();
        let demo_trajectory = assets.as_deref().and_then(assets::demo_trajectory);
        let zoo_pairs = assets.as_deref().map(assets::zoo_pairs).unwrap_or_default();
        let mut app = Self {
            settings,
            persist: options.persist,
            results: None,
            loading: None,
            trajectory: TrajectoryState::default(),
            view_given,
            views: ViewState::default(),
            models: ModelPicker::default(),
            study: None,
            exporter: Exporter::default(),
            saver: Default::default(),
            save_form: Default::default(),
            commands: Vec::new(),
            status: None,
            demos,
            demo_trajectory,
            zoo_pairs,
            demo_run: None,
            screenshot: options.screenshot.map(|path| Screenshot {
                path,
                queued: false,
            }),
            failure,
            view_rect: egui::Rect::NOTHING,
            applied_dark: None,
            native_dialogs: super::paths::native_dialogs(),
            path_prompt: None,
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
            .or_else(|| app.demos.first().map(|d| d.1.clone()))
            .or_else(|| {
                app.settings
                    .recent_results
                    .iter()
                    .find(|d| results::is_results_dir(d))
                    .cloned()
            });
        if let Some(dir) = start {
            app.open_results(&cc.egui_ctx, dir);
        }
        // eframe restores a saved window size over the one it is given (with or without
        // --no-persist): the size asked for on the command line is set again.
        if let Some([w, h]) = options.window {
            cc.egui_ctx
                .send_viewport_cmd(egui::ViewportCommand::InnerSize(egui::vec2(w, h)));
        }
        app
    }

    /// Whether a results directory is being loaded.
    pub fn is_loading(&self) -> bool {
        self.loading.is_some()
    }

    /// Whether a study is running.
    pub fn study_running(&self) -> bool {
        self.study.is_some()
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
            Ok(w) => self.loading = Some((dir, w)),
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
                self.trajectory.close();
                results
            }
            Opened::Trajectory(data, results) => {
                self.trajectory.open(data);
                if !self.view_given {
                    self.settings.view = View::Trajectory;
                }
                results
            }
        };
        self.view_given = false;
        let bundled = crate::assets::dir().map(|a| a.join("demo"));
        self.demo_run = assets::demo_run_of(&dir).filter(|(run, _)| Some(run) != bundled.as_ref());
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
        self.results = Some(results);
    }

    fn drain_jobs(&mut self, ctx: &egui::Context) {
        if let Some((dir, worker)) = &mut self.loading {
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
                self.loading = None;
                match r {
                    Ok(opened) => self.opened(dir, opened),
                    Err(e) => self.set_status(true, message::chain(&e)),
                }
            }
        }
        for pair in self.trajectory.logic(ctx) {
            match pair {
                Ok(results) => self.show_results(results, false),
                Err(e) => self.set_status(true, message::chain(&e)),
            }
        }
        for spec in self.models.logic(ctx) {
            self.settings.add_recent_model(spec);
        }
        if let Some(ended) = self.study.as_mut().and_then(Running::logic) {
            self.study = None;
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
        self.export_logic(ctx);
    }

    /// Finished figure saves, and the screenshot queue's frame.
    fn export_logic(&mut self, ctx: &egui::Context) {
        for done in self.saver.finished() {
            match done {
                Ok(written) => self.set_status(false, wrote_line(&written)),
                Err(e) => self.set_status(true, message::chain(&e)),
            }
        }
        let frame = self.exporter.logic(ctx);
        if let Some((view, mode)) = frame.show {
            (self.settings.view, self.settings.mode) = (view, mode);
        }
        for s in frame.saved {
            match s {
                Ok((path, [w, h])) => {
                    self.set_status(false, format!("saved {w}×{h} {}", path.display()));
                    if self.screenshot.as_ref().is_some_and(|s| s.path == path) {
                        println!("saved {w}x{h} {}", path.display());
                        ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                    }
                }
                Err(e) => {
                    let text = message::chain(&e);
                    if self.screenshot.is_some() {
                        if let Ok(mut f) = self.failure.lock() {
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
        let Some(shot) = &mut self.screenshot else {
            return;
        };
        if shot.queued || self.loading.is_some() {
            return;
        }
        if self.results.is_none() {
            if let (Some(s), Ok(mut f)) = (&self.status, self.failure.lock()) {
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
                    Side::BOTH
                        .into_iter()
                        .find(|&s| self.models.slots[s].rect.is_some_and(|r| r.contains(p)))
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

    fn toolbar_ui(&mut self, ui: &mut Ui) {
        ui.horizontal_wrapped(|ui| {
            for view in View::ALL {
                ui.selectable_value(&mut self.settings.view, view, view.label())
                    .on_hover_text(views::help::describe_view(view));
            }
            ui.separator();
            if let Some(r) = &self.results {
                for mode in r.circuit.modes() {
                    ui.selectable_value(&mut self.settings.mode, mode, mode.label())
                        .on_hover_text(views::help::describe_mode(mode));
                }
                ui.separator();
            }
            if ui
                .button("Save figure…")
                .on_hover_text("the shown view as a figure: PNG at a chosen size, SVG with text")
                .clicked()
            {
                self.save_form.open = true;
            }
            if ui.button("Export all figures…").clicked() {
                self.commands.push(Command::Choose(Pick::ExportAll));
            }
            ui.separator();
            ui.toggle_value(&mut self.settings.dark, "Dark")
                .on_hover_text("dark theme (off: light)");
            ui.separator();
            ui.menu_button("Help", |ui| {
                if ui.button("Guide: views, metrics, node names").clicked() {
                    self.views.help = true;
                    ui.close();
                }
                if ui.button("About circuitdiff").clicked() {
                    self.views.about = true;
                    ui.close();
                }
            });
        });
    }

    /// The user's own results, apart from the bundled demo: the `demo` run the shown results
    /// belong to, then the recent results folders.
    fn own_results_ui(&mut self, ui: &mut Ui) {
        if let Some((run, entries)) = &self.demo_run {
            ui.horizontal_wrapped(|ui| {
                ui.label("Your demo run")
                    .on_hover_text(run.display().to_string());
                for (name, dir) in entries {
                    if ui.button(name).clicked() {
                        self.commands.push(Command::OpenResults(dir.clone()));
                    }
                }
            });
        }
        let bundled = crate::assets::dir().map(|a| a.join("demo"));
        let own: Vec<&PathBuf> = self
            .settings
            .recent_results
            .iter()
            .filter(|d| bundled.as_ref().is_none_or(|b| !d.starts_with(b)))
            .collect();
        if own.is_empty() {
            return;
        }
        ui.label("Your recent results");
        for dir in own {
            let name = dir
                .file_name()
                .map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into());
            if ui
                .link(name)
                .on_hover_text(dir.display().to_string())
                .clicked()
            {
                self.commands.push(Command::OpenResults(dir.clone()));
            }
        }
    }

    fn sidebar_ui(&mut self, ui: &mut Ui) {
        egui::CollapsingHeader::new("Results")
            .default_open(true)
            .show(ui, |ui| {
                if ui.button("Open results folder…").clicked() {
                    self.commands.push(Command::Choose(Pick::Results));
                }
                if !self.demos.is_empty() {
                    ui.horizontal_wrapped(|ui| {
                        ui.label("Bundled demo studies")
                            .on_hover_text("the copies shipped with circuitdiff (assets/demo)");
                        for (name, dir) in &self.demos {
                            if ui.button(name).clicked() {
                                self.commands.push(Command::OpenResults(dir.clone()));
                            }
                        }
                    });
                }
                if let Some((name, dir)) = &self.demo_trajectory {
                    ui.horizontal_wrapped(|ui| {
                        ui.label("Bundled demo trajectory");
                        if ui
                            .button(name)
                            .on_hover_text(format!("base -> {name} at each kept checkpoint"))
                            .clicked()
                        {
                            self.commands.push(Command::OpenResults(dir.clone()));
                        }
                    });
                }
                self.own_results_ui(ui);
            });
        egui::CollapsingHeader::new("Models")
            .default_open(true)
            .show(ui, |ui| {
                super::models::models_ui(
                    ui,
                    (&mut self.models, self.settings.study.level()),
                    &mut self.settings.models,
                    &self.settings.recent_models,
                    &self.zoo_pairs,
                    &mut self.commands,
                );
            });
        egui::CollapsingHeader::new("Study")
            .default_open(true)
            .show(ui, |ui| {
                let ready = self
                    .models
                    .ready(&self.settings.models, self.settings.study.level());
                super::study::study_ui(
                    ui,
                    &mut self.settings.study,
                    self.study.as_ref(),
                    ready,
                    &mut self.commands,
                );
            });
    }

    /// The "Save figure" window: formats, the PNG's width (and the height it gives), Save.
    fn save_window_ui(&mut self, ctx: &egui::Context) {
        if !self.save_form.open {
            return;
        }
        let (view, mode) = (self.settings.view, self.settings.mode);
        let base =
            super::figure::figure_of(view, mode, &self.figure_sources()).map(|d| d.base_size());
        let default_width = self.default_figure_width(ctx);
        let mut open = self.save_form.open;
        let mut save = false;
        egui::Window::new("Save figure")
            .open(&mut open)
            .collapsible(false)
            .resizable(false)
            .default_pos([460.0, 80.0])
            .show(ctx, |ui| {
                let form = &mut self.save_form;
                let what = if view.depends_on_mode() {
                    format!("{} · {}", view.label(), views::help::mode_title(mode))
                } else {
                    view.label().to_owned()
                };
                ui.strong(what);
                let (w, h) = match &base {
                    Ok(size) => *size,
                    Err(e) => {
                        ui.colored_label(Palette::of(ui.ctx()).error(), message::chain(e));
                        return;
                    }
                };
                ui.horizontal(|ui| {
                    ui.checkbox(&mut form.formats.png, "PNG");
                    ui.checkbox(&mut form.formats.svg, "SVG")
                        .on_hover_text("vector drawing; text stays text");
                });
                ui.add_enabled_ui(form.formats.png, |ui| {
                    ui.horizontal(|ui| {
                        let mut width = form.width.unwrap_or(default_width);
                        ui.label("PNG width");
                        if ui
                            .add(
                                egui::DragValue::new(&mut width)
                                    .range(200..=16000)
                                    .suffix(" px"),
                            )
                            .changed()
                        {
                            form.width = Some(width);
                        }
                        let height = f64::from(width) * f64::from(h) / f64::from(w.max(1));
                        ui.label(format!("× {} px", height.round()));
                        if form.width.is_some() && ui.small_button("2× screen").clicked() {
                            form.width = None;
                        }
                    });
                });
                ui.label(format!("SVG: {w} × {h}"));
                let any = form.formats.png || form.formats.svg;
                save = ui.add_enabled(any, egui::Button::new("Save…")).clicked();
            });
        self.save_form.open = open && !save;
        if save {
            self.commands
                .push(Command::Choose(Pick::SaveFigure(view, mode)));
        }
    }

    /// The typed-path window, when a pick needs one.
    fn path_prompt_ui(&mut self, ctx: &egui::Context) {
        let Some(prompt) = &mut self.path_prompt else {
            return;
        };
        let mut open = true;
        let answer = egui::Window::new(prompt.pick.title())
            .open(&mut open)
            .collapsible(false)
            .default_pos([420.0, 120.0])
            // Wide enough for the longest title ("Save figure (the extension is set per
            // format)") and the path field.
            .min_width(480.0)
            .show(ctx, |ui| super::paths::prompt_ui(ui, prompt))
            .and_then(|r| r.inner.flatten());
        match answer {
            Some(Answer::Open(path)) => {
                let pick = prompt.pick;
                self.path_prompt = None;
                self.chosen(ctx, pick, path);
            }
            Some(Answer::Cancel) => self.path_prompt = None,
            None if !open => self.path_prompt = None,
            None => {}
        }
    }

    /// The views that show no results: the training curves and the trajectory.
    fn resultless_view_ui(&mut self, ui: &mut Ui, view: View) {
        let command = match view {
            View::Training => views::training::training_ui(ui, &mut self.views.training)
                .then_some(Command::Choose(Pick::Lab)),
            View::Trajectory => views::trajectory::trajectory_ui(ui, &mut self.trajectory)
                .map(Command::SelectCheckpoint),
            _ => None,
        };
        self.commands.extend(command);
    }

    fn view_ui(&mut self, ui: &mut Ui) {
        let view = self.settings.view;
        if !view.needs_results() {
            self.resultless_view_ui(ui, view);
            return;
        }
        let Some(r) = &self.results else {
            ui.centered_and_justified(|ui| {
                if self.loading.is_some() {
                    ui.spinner();
                } else {
                    ui.label(
                        "No results yet: open a results folder, pick a demo study, or run a study",
                    );
                }
            });
            return;
        };
        let mode = self.settings.mode;
        ui.horizontal(|ui| {
            ui.heading(&r.title);
            if view.depends_on_mode() {
                ui.heading(format!("· {}", views::help::mode_title(mode)));
            }
            ui.label(format!(
                "{} samples, {} edges ({:?} level)",
                r.base.scores.len(),
                r.circuit.edges.len(),
                r.base.manifest.graph.level
            ));
            span_label(ui, r);
            if self.loading.is_some() {
                ui.spinner();
            }
        });
        no_difference_ui(ui, r, view, mode);
        if self.study.is_some() {
            ui.multiply_opacity(0.4);
        }
        match view {
            View::Graph => {
                ui.horizontal_wrapped(|ui| {
                    views::graph::top_k_ui(ui, &r.circuit, mode, &mut self.settings.top_k);
                    views::graph::legend_ui(ui, mode);
                    ui.label(format!("{} edges drawn", self.views.graph.drawn));
                });
                ui.horizontal(|ui| views::graph::filter_ui(ui, &r.circuit, &mut self.views.graph));
                egui::Panel::right("node_edges")
                    .default_size(280.0)
                    .resizable(true)
                    .show(ui, |ui| {
                        views::graph::node_edges_ui(ui, &r.circuit, mode, &mut self.views.graph);
                    });
                views::graph::canvas_ui(
                    ui,
                    &r.circuit,
                    mode,
                    self.settings.top_k,
                    &mut self.views.graph,
                );
            }
            View::Heatmap => views::heatmap::heatmap_ui(
                ui,
                r,
                mode,
                &mut self.settings.heatmap_scale,
                (&mut self.views.heatmap, &mut self.views.graph),
            ),
            View::Distributions => {
                views::charts::distributions_ui(ui, r, &mut self.settings.log_y);
            }
            View::Layers => views::charts::per_layer_ui(ui, r, mode),
            View::Table => views::table::table_ui(ui, r, &mut self.views.table),
            View::Edges => views::edges::edges_ui(ui, r, &mut self.views, &mut self.commands),
            View::Faithfulness => views::faithfulness::faithfulness_ui(ui, r),
            View::Questions => {
                views::questions::questions_ui(ui, r, mode, &mut self.views.questions);
            }
            View::Training | View::Trajectory => {}
        }
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
        if self.applied_dark != Some(self.settings.dark) {
            ctx.set_theme(if self.settings.dark {
                egui::Theme::Dark
            } else {
                egui::Theme::Light
            });
            self.applied_dark = Some(self.settings.dark);
        }
        self.dropped_files(ctx);
        for cmd in std::mem::take(&mut self.commands) {
            self.apply(ctx, cmd);
        }
        self.drain_jobs(ctx);
        self.screenshot_logic(ctx);
    }

    fn ui(&mut self, ui: &mut Ui, _frame: &mut eframe::Frame) {
        egui::Panel::top("toolbar").show(ui, |ui| self.toolbar_ui(ui));
        egui::Panel::bottom("status").show(ui, |ui| {
            if let Some(r) = &self.study {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label(r.status_line());
                });
                ui.ctx().request_repaint_after(Duration::from_millis(500));
            }
            ui.horizontal(|ui| match &self.status {
                Some(s) if s.error => {
                    ui.colored_label(Palette::of(ui.ctx()).error(), &s.text);
                }
                Some(s) => {
                    ui.label(&s.text);
                }
                None => {
                    ui.label("Ready");
                }
            });
        });
        egui::Panel::left("sidebar")
            .default_size(340.0)
            .resizable(true)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| self.sidebar_ui(ui));
            });
        egui::CentralPanel::default().show(ui, |ui| {
            self.view_rect = ui.max_rect().expand(4.0);
            self.view_ui(ui);
        });
        self.path_prompt_ui(ui.ctx());
        egui::Window::new("Guide")
            .open(&mut self.views.help)
            .default_pos([380.0, 72.0])
            .default_size([640.0, 560.0])
            .show(ui.ctx(), views::help::help_ui);
        egui::Window::new("About circuitdiff")
            .open(&mut self.views.about)
            .default_pos([420.0, 96.0])
            .resizable(false)
            .show(ui.ctx(), views::help::about_ui);
        self.save_window_ui(ui.ctx());
        self.exporter.after_frame(ui.ctx(), self.view_rect);
        if !self.commands.is_empty() {
            ui.ctx().request_repaint();
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        if self.persist {
            self.settings.save(storage);
        }
    }

    fn persist_egui_memory(&self) -> bool {
        self.persist
    }
}

/// Say that tuned − base is 0 everywhere where a view of a change shows it.
fn no_difference_ui(ui: &mut Ui, results: &Results, view: View, mode: Mode) {
    if results.identical && mode.is_change() && view.depends_on_mode() {
        ui.colored_label(
            Palette::of(ui.ctx()).highlight(),
            crate::report::figures::NO_DIFFERENCE,
        );
    }
}

/// The scored span in brief beside every view's title ("K = 5 of T̄ = 23.8 answer tokens
/// scored"), in the warning colour when K is below the threshold; the whole line on hover.
fn span_label(ui: &mut Ui, results: &Results) {
    let span = results.span();
    let t_bar = match span.source {
        crate::report::span::KSource::Derived { t_bar, .. }
        | crate::report::span::KSource::Cut { t_bar } => format!(" of T̄ = {t_bar:.1}"),
        crate::report::span::KSource::Given => String::new(),
    };
    let text = format!("K = {}{t_bar} answer tokens scored", span.k);
    let label = match span.warning() {
        Some(_) => ui.colored_label(Palette::of(ui.ctx()).error(), text),
        None => ui.label(text),
    };
    label.on_hover_text(match span.warning() {
        Some(w) => format!("{}\n{w}", span.line()),
        None => span.line(),
    });
}
