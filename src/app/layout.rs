//! The app's drawing: the toolbar, the side panel, the view, the status line and the windows.
//! What a click asks for is queued as a [`Command`] for the shell's logic (`shell.rs`).

use super::commands::Command;
use super::paths::{Answer, Pick};
use super::results::Results;
use super::shell::App;
use super::theme::Palette;
use super::views::graph::GraphState;
use super::views::{self, View};
use crate::message;
use crate::report::circuit::Mode;
use egui::Ui;
use std::path::PathBuf;
use std::time::Duration;

impl App {
    /// The frame: toolbar, status line, side panel, view, and the windows.
    pub(super) fn frame_ui(&mut self, ui: &mut Ui) {
        egui::Panel::top("toolbar").show(ui, |ui| self.toolbar_ui(ui));
        egui::Panel::bottom("status").show(ui, |ui| {
            if let Some(r) = &self.study.running {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label(r.status_line());
                });
                ui.ctx().request_repaint_after(Duration::from_millis(500));
            }
            if let Some(line) = self.tuning.status_line() {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label(line);
                });
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
            self.window.view_rect = ui.max_rect().expand(4.0);
            self.view_ui(ui);
        });
        self.tune_window_ui(ui.ctx());
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
        self.saving
            .exporter
            .after_frame(ui.ctx(), self.window.view_rect);
        if !self.commands.is_empty() {
            ui.ctx().request_repaint();
        }
    }

    fn toolbar_ui(&mut self, ui: &mut Ui) {
        ui.horizontal_wrapped(|ui| {
            for view in View::ALL {
                ui.selectable_value(&mut self.settings.view, view, view.label())
                    .on_hover_text(views::help::describe_view(view));
            }
            ui.separator();
            if let Some(r) = &self.shown.results {
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
                self.saving.form.open = true;
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
        if let Some((run, entries)) = &self.shown.demo_run {
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
                if !self.catalogue.demos.is_empty() {
                    ui.horizontal_wrapped(|ui| {
                        ui.label("Bundled demo studies")
                            .on_hover_text("the copies shipped with circuitdiff (assets/demo)");
                        for (name, dir) in &self.catalogue.demos {
                            if ui.button(name).clicked() {
                                self.commands.push(Command::OpenResults(dir.clone()));
                            }
                        }
                    });
                }
                if !self.catalogue.demo_trajectories.is_empty() {
                    ui.horizontal_wrapped(|ui| {
                        ui.label("Bundled demo trajectories");
                        for (name, dir) in &self.catalogue.demo_trajectories {
                            if ui
                                .button(name)
                                .on_hover_text(format!("base -> {name} at each kept checkpoint"))
                                .clicked()
                            {
                                self.commands.push(Command::OpenResults(dir.clone()));
                            }
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
                    (&mut self.study.models, self.settings.study.level()),
                    &mut self.settings.models,
                    &self.settings.recent_models,
                    &self.catalogue.zoo_pairs,
                    &mut self.commands,
                );
                let label = if self.tuning.run.is_some() {
                    "Fine-tune (running)…"
                } else {
                    "Fine-tune a model…"
                };
                if ui
                    .button(label)
                    .on_hover_text("GRPO or DPO, LoRA or full, with the reward and accuracy live")
                    .clicked()
                {
                    self.tuning.open = true;
                }
            });
        egui::CollapsingHeader::new("Study")
            .default_open(true)
            .show(ui, |ui| {
                let ready =
                    (self.study.models).ready(&self.settings.models, self.settings.study.level());
                super::study::study_ui(
                    ui,
                    &mut self.settings.study,
                    self.study.running.as_ref(),
                    ready,
                    &mut self.commands,
                );
            });
    }

    /// The "Save figure" window: formats, the PNG's width (and the height it gives), Save.
    fn save_window_ui(&mut self, ctx: &egui::Context) {
        if !self.saving.form.open {
            return;
        }
        let (view, mode) = (self.settings.view, self.settings.mode);
        let base =
            super::figure::figure_of(view, mode, &self.figure_sources()).map(|d| d.base_size());
        let default_width = self.default_figure_width(ctx);
        let mut open = self.saving.form.open;
        let mut save = false;
        egui::Window::new("Save figure")
            .open(&mut open)
            .collapsible(false)
            .resizable(false)
            .default_pos([460.0, 80.0])
            .show(ctx, |ui| {
                let form = &mut self.saving.form;
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
        self.saving.form.open = open && !save;
        if save {
            self.commands
                .push(Command::Choose(Pick::SaveFigure(view, mode)));
        }
    }

    /// The typed-path window, when a pick needs one.
    fn path_prompt_ui(&mut self, ctx: &egui::Context) {
        let Some(prompt) = &mut self.window.path_prompt else {
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
                self.window.path_prompt = None;
                self.chosen(ctx, pick, path);
            }
            Some(Answer::Cancel) => self.window.path_prompt = None,
            None if !open => self.window.path_prompt = None,
            None => {}
        }
    }

    /// The views that show no results: the training curves and the trajectory.
    fn resultless_view_ui(&mut self, ui: &mut Ui, view: View) {
        let command = match view {
            View::Training => views::training::training_ui(ui, &mut self.views.training)
                .then_some(Command::Choose(Pick::Lab)),
            View::Trajectory => views::trajectory::trajectory_ui(ui, &mut self.shown.trajectory)
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
        let Some(r) = &self.shown.results else {
            ui.centered_and_justified(|ui| {
                if self.shown.loading.is_some() {
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
                "{} samples, {} edges ({})",
                r.base.scores.len(),
                r.circuit.edges.len(),
                r.base.manifest.graph.level.words()
            ));
            span_label(ui, r);
            if self.shown.loading.is_some() {
                ui.spinner();
            }
        });
        no_difference_ui(ui, r, view, mode);
        if self.study.running.is_some() {
            ui.multiply_opacity(0.4);
        }
        match view {
            View::Graph => graph_view_ui(
                ui,
                r,
                mode,
                (&mut self.settings.top_k, &mut self.views.graph),
            ),
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
            View::Edges => {
                views::edges::edges_ui(ui, r, self.views.edges_and_graph(), &mut self.commands)
            }
            View::Faithfulness => views::faithfulness::faithfulness_ui(ui, r),
            View::Questions => {
                views::questions::questions_ui(ui, r, mode, &mut self.views.questions);
            }
            View::Training | View::Trajectory => {}
        }
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

/// The circuit graph with its controls and the chosen node's edges.
fn graph_view_ui(
    ui: &mut Ui,
    r: &Results,
    mode: Mode,
    (top_k, graph): (&mut usize, &mut GraphState),
) {
    ui.horizontal_wrapped(|ui| {
        views::graph::top_k_ui(ui, &r.circuit, mode, top_k);
        views::graph::legend_ui(ui, mode);
        ui.label(format!("{} edges drawn", graph.drawn));
    });
    ui.horizontal(|ui| views::graph::filter_ui(ui, &r.circuit, graph));
    egui::Panel::right("node_edges")
        .default_size(280.0)
        .resizable(true)
        .show(ui, |ui| {
            views::graph::node_edges_ui(ui, &r.circuit, mode, graph);
        });
    views::graph::canvas_ui(ui, &r.circuit, mode, *top_k, graph);
}
