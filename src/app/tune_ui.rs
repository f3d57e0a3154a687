//! The fine-tune window, opened from the Models panel: the form, Start / Cancel, the step and
//! the time left, the reward and the held-out accuracy drawn as they come, and "Open
//! trajectory" once the run has stopped with checkpoints.

use super::commands::Command;
use super::paths::Pick;
use super::shell::App;
use super::theme::Palette;
use super::tune::{gsm8k_file, DataSource, MethodChoice, TuneEnd, TuneForm, Tuning, GSM8K};
use super::views::plot;
use crate::lab::tune::TuneEvent;
use crate::message;
use crate::model::LoraTarget;
use crate::report::figures::{LineChart, Series};
use egui::Ui;
use std::time::Duration;

impl App {
    /// The fine-tune window, while it is open.
    pub(super) fn tune_window_ui(&mut self, ctx: &egui::Context) {
        let mut open = self.tuning.open;
        let known = self.known_models();
        egui::Window::new("Fine-tune")
            .open(&mut open)
            .default_pos([420.0, 60.0])
            .default_size([620.0, 700.0])
            .vscroll(true)
            .show(ctx, |ui| {
                let form = &mut self.settings.tune;
                ui.add_enabled_ui(self.tuning.run.is_none(), |ui| {
                    form_ui(ui, form, &known, &mut self.commands);
                });
                run_ui(ui, form, &self.tuning, &mut self.commands);
            });
        self.tuning.open = open;
        if self.tuning.run.is_some() || self.tuning.trajectory.is_some() {
            ctx.request_repaint_after(Duration::from_millis(500));
        }
    }

    /// The models the app knows: the slots', the recent ones, the zoo's.
    fn known_models(&self) -> Vec<String> {
        let mut known: Vec<String> = Vec::new();
        let zoo = self
            .catalogue
            .zoo_pairs
            .iter()
            .flat_map(|(_, b, t)| [b.display().to_string(), t.display().to_string()]);
        let all = [&self.settings.models.base, &self.settings.models.tuned]
            .into_iter()
            .cloned()
            .chain(self.settings.recent_models.iter().cloned())
            .chain(zoo);
        for spec in all {
            let spec = spec.trim().to_owned();
            if !spec.is_empty() && !known.contains(&spec) {
                known.push(spec);
            }
        }
        known
    }
}

/// A labelled row of the form's grid.
/// A labelled row of the form's grid; `add` gets the label's id for the widgets without their
/// own.
fn row(ui: &mut Ui, label: &str, add: impl FnOnce(&mut Ui, egui::Id)) {
    let id = ui.label(label).id;
    ui.horizontal(|ui| add(ui, id));
    ui.end_row();
}

/// The form: model, dataset, method, weights, run length and output.
fn form_ui(ui: &mut Ui, form: &mut TuneForm, known: &[String], cmds: &mut Vec<Command>) {
    egui::Grid::new("tune_form").num_columns(2).show(ui, |ui| {
        row(ui, "Model", |ui, label| {
            ui.add(
                egui::TextEdit::singleline(&mut form.model)
                    .hint_text("folder, .gguf, adapter, or org/name")
                    .desired_width(260.0),
            );
            egui::ComboBox::from_id_salt("tune_known_model")
                .selected_text("Known")
                .show_ui(ui, |ui| {
                    for spec in known {
                        let name = super::results::short_name(spec);
                        ui.selectable_value(&mut form.model, spec.clone(), name)
                            .on_hover_text(spec);
                    }
                })
                .response
                .labelled_by(label);
            if ui.small_button("Folder…").clicked() {
                cmds.push(Command::Choose(Pick::TuneModel { folder: true }));
            }
            if ui.small_button("File…").clicked() {
                cmds.push(Command::Choose(Pick::TuneModel { folder: false }));
            }
        });
        dataset_ui(ui, form, cmds);
        method_ui(ui, form);
        lora_ui(ui, form);
        numbers_ui(ui, form);
        row(ui, "Output", |ui, _| {
            ui.add(
                egui::TextEdit::singleline(&mut form.out)
                    .hint_text("new folder")
                    .desired_width(260.0),
            );
            if ui.small_button("Folder…").clicked() {
                cmds.push(Command::Choose(Pick::TuneFolder));
            }
        });
    });
}

/// The dataset's rows: the built-in arithmetic with its options, or a file (GSM8K's when the
/// shared data is found).
fn dataset_ui(ui: &mut Ui, form: &mut TuneForm, cmds: &mut Vec<Command>) {
    row(ui, "Dataset", |ui, _| {
        ui.radio_value(&mut form.source, DataSource::Arithmetic, "arithmetic");
        ui.radio_value(&mut form.source, DataSource::File, "JSONL file");
        if ui
            .small_button("GSM8K")
            .on_hover_text(format!("the GSM8K test set of the shared data ({GSM8K})"))
            .clicked()
        {
            form.source = DataSource::File;
            form.file = gsm8k_file().map_or_else(|| GSM8K.to_owned(), |p| p.display().to_string());
        }
    });
    match form.source {
        DataSource::Arithmetic => row(ui, "Questions", |ui, _| {
            let a = &mut form.arith;
            ui.add(
                egui::DragValue::new(&mut a.n)
                    .range(1..=100_000)
                    .prefix("n "),
            );
            ui.add(
                egui::DragValue::new(&mut a.max_operand)
                    .range(1..=1_000_000)
                    .prefix("max "),
            );
            ui.add(
                egui::DragValue::new(&mut a.terms)
                    .range(1..=8)
                    .prefix("terms "),
            );
            let ops = ui.label("ops").id;
            ui.add(egui::TextEdit::singleline(&mut a.ops).desired_width(36.0))
                .labelled_by(ops);
            ui.add(egui::DragValue::new(&mut a.seed).prefix("seed "));
        }),
        DataSource::File => row(ui, "File", |ui, _| {
            ui.add(
                egui::TextEdit::singleline(&mut form.file)
                    .hint_text("questions with answers (.jsonl)")
                    .desired_width(260.0),
            );
            if ui.small_button("File…").clicked() {
                cmds.push(Command::Choose(Pick::TuneDataset));
            }
        }),
    }
}

/// The method and its main settings.
fn method_ui(ui: &mut Ui, form: &mut TuneForm) {
    row(ui, "Method", |ui, _| {
        ui.radio_value(&mut form.method, MethodChoice::Grpo, "GRPO");
        ui.radio_value(&mut form.method, MethodChoice::Dpo, "DPO");
    });
    match form.method {
        MethodChoice::Grpo => row(ui, "GRPO settings", |ui, _| {
            let g = &mut form.grpo;
            ui.add(
                egui::DragValue::new(&mut g.questions)
                    .range(1..=1024)
                    .prefix("questions "),
            )
            .on_hover_text("questions per step");
            ui.add(
                egui::DragValue::new(&mut g.group)
                    .range(1..=256)
                    .prefix("group "),
            )
            .on_hover_text("answers sampled per question");
            ui.add(
                egui::DragValue::new(&mut g.beta)
                    .range(0.0..=10.0)
                    .speed(0.005)
                    .prefix("β "),
            )
            .on_hover_text("KL weight to the reference");
            ui.add(
                egui::DragValue::new(&mut g.clip)
                    .range(0.01..=10.0)
                    .speed(0.01)
                    .prefix("ε "),
            )
            .on_hover_text("clip range of the probability ratio");
            ui.checkbox(&mut g.length_unbiased, "length-unbiased");
        }),
        MethodChoice::Dpo => row(ui, "DPO settings", |ui, _| {
            let d = &mut form.dpo;
            ui.add(
                egui::DragValue::new(&mut d.batch)
                    .range(1..=1024)
                    .prefix("pairs "),
            )
            .on_hover_text("pairs per step");
            ui.add(
                egui::DragValue::new(&mut d.samples)
                    .range(2..=256)
                    .prefix("samples "),
            )
            .on_hover_text("own answers sampled per question to find pairs");
            ui.add(
                egui::DragValue::new(&mut d.beta)
                    .range(0.001..=10.0)
                    .speed(0.005)
                    .prefix("β "),
            );
        }),
    }
}

/// Full fine-tuning or LoRA, and LoRA's rank, α, scaling and target layers.
fn lora_ui(ui: &mut Ui, form: &mut TuneForm) {
    row(ui, "Weights", |ui, _| {
        ui.radio_value(&mut form.full, false, "LoRA");
        ui.radio_value(&mut form.full, true, "full");
    });
    if form.full {
        return;
    }
    let lora = &mut form.lora;
    row(ui, "LoRA settings", |ui, _| {
        ui.add(
            egui::DragValue::new(&mut lora.rank)
                .range(0..=1024)
                .prefix("rank "),
        );
        ui.add(
            egui::DragValue::new(&mut lora.alpha)
                .range(0.0..=4096.0)
                .prefix("α "),
        );
        ui.checkbox(&mut lora.rslora, "rsLoRA")
            .on_hover_text("scale α/√r instead of α/r");
    });
    row(ui, "Targets", |ui, _| {
        ui.spacing_mut().item_spacing.x = 4.0;
        for t in LoraTarget::ALL {
            let mut on = lora.targets.contains(&t);
            if ui.checkbox(&mut on, t.name()).changed() {
                lora.targets.retain(|x| *x != t);
                if on {
                    lora.targets.push(t);
                    lora.targets.sort();
                }
            }
        }
    });
}

/// Steps, checkpoints, learning rate, answer length, held-out questions and seed.
fn numbers_ui(ui: &mut Ui, form: &mut TuneForm) {
    row(ui, "Steps", |ui, label| {
        ui.add(egui::DragValue::new(&mut form.steps).range(0..=1_000_000))
            .labelled_by(label);
        let every = ui.label("save every").id;
        ui.add(egui::DragValue::new(&mut form.save_every).range(0..=1_000_000))
            .labelled_by(every);
        let lr = ui.label("learning rate").id;
        ui.add(
            egui::DragValue::new(&mut form.lr)
                .range(1e-8..=1.0)
                .speed(1e-5)
                .custom_formatter(|v, _| format!("{v:.1e}"))
                .custom_parser(|s| s.trim().parse().ok()),
        )
        .labelled_by(lr);
    });
    row(ui, "Answers", |ui, _| {
        ui.add(
            egui::DragValue::new(&mut form.max_new_tokens)
                .range(1..=65_536)
                .suffix(" new tokens"),
        );
        ui.add(
            egui::DragValue::new(&mut form.eval_questions)
                .range(0..=100_000)
                .suffix(" held out"),
        )
        .on_hover_text(
            "the dataset's first questions, held out for the accuracy at each checkpoint",
        );
        ui.add(egui::DragValue::new(&mut form.seed).prefix("seed "));
    });
}

/// Start / Cancel, the run's progress and plots, how it ended and its trajectory.
fn run_ui(ui: &mut Ui, form: &TuneForm, tuning: &Tuning, cmds: &mut Vec<Command>) {
    let palette = Palette::of(ui.ctx());
    ui.horizontal(|ui| {
        let idle = tuning.run.is_none();
        let ready = idle && !form.model.trim().is_empty();
        if ui
            .add_enabled(ready, egui::Button::new("Start fine-tune"))
            .on_disabled_hover_text(if idle {
                "choose a model"
            } else {
                "a fine-tune is running"
            })
            .clicked()
        {
            cmds.push(Command::StartTune);
        }
        if !idle
            && ui
                .add_enabled(
                    !tuning.is_cancelling(),
                    egui::Button::new("Cancel fine-tune"),
                )
                .clicked()
        {
            cmds.push(Command::CancelTune);
        }
    });
    if let Some(e) = &tuning.error {
        ui.colored_label(palette.error(), message::chain(e));
    }
    if let Some(line) = tuning.status_line() {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label(line);
        });
        if let Some(s) = tuning.run.as_ref().and_then(|r| r.stages.stages.last()) {
            ui.add(egui::ProgressBar::new(s.fraction()));
        }
    }
    if let Some((cfg, out)) = &tuning.last {
        ui.small(format!(
            "{} on {} into {}",
            cfg.model,
            cfg.dataset,
            out.display()
        ));
    }
    plots_ui(ui, &tuning.history);
    ended_ui(ui, tuning, cmds);
}

/// The charts of the reward (DPO: the reward margin) and of the held-out accuracy over the
/// steps so far.
pub fn charts(history: &[TuneEvent]) -> [LineChart; 2] {
    let points = |f: fn(&TuneEvent) -> Option<f64>| -> Vec<(f64, f64)> {
        history
            .iter()
            .filter_map(|e| f(e).map(|y| (e.step as f64, y)))
            .collect()
    };
    let reward = points(|e| e.reward);
    let (title, name, series) = if reward.is_empty() && history.iter().any(|e| e.margin.is_some()) {
        (
            "Fine-tune reward margin",
            "chosen − rejected",
            points(|e| e.margin),
        )
    } else {
        ("Fine-tune reward", "mean reward", reward)
    };
    let chart = |title: &str, name: &str, points: Vec<(f64, f64)>| LineChart {
        title: title.to_owned(),
        x_label: "step".to_owned(),
        y_label: name.to_owned(),
        log_y: false,
        series: vec![Series::named(name, None, points)],
    };
    [
        chart(title, name, series),
        chart(
            "Fine-tune held-out accuracy",
            "accuracy",
            points(|e| e.accuracy),
        ),
    ]
}

fn plots_ui(ui: &mut Ui, history: &[TuneEvent]) {
    if history.is_empty() {
        return;
    }
    let [reward, accuracy] = charts(history);
    ui.columns(2, |cols| {
        chart_ui(&mut cols[0], &reward);
        chart_ui(&mut cols[1], &accuracy);
    });
}

/// A chart's line with a marker at each point (the first checkpoint's accuracy is one point).
fn chart_ui(ui: &mut Ui, chart: &LineChart) {
    plot::chart_header_ui(ui, chart);
    let color = plot::series_color(Palette::of(ui.ctx()), None, 0);
    let plot = egui_plot::Plot::new(&chart.title)
        .height(150.0)
        .x_axis_label(chart.x_label.as_str())
        .y_axis_label(chart.y_label.as_str())
        .allow_scroll(false);
    plot::readable_y_axis(plot).show(ui, |p| {
        for s in &chart.series {
            let points: Vec<[f64; 2]> = s.points.iter().map(|&(x, y)| [x, y]).collect();
            p.line(egui_plot::Line::new(&s.name, points.clone()).color(color));
            p.points(
                egui_plot::Points::new(&s.name, points)
                    .radius(3.0)
                    .color(color),
            );
        }
    });
}

/// How the run ended, and "Open trajectory" (or its progress) when it left checkpoints.
fn ended_ui(ui: &mut Ui, tuning: &Tuning, cmds: &mut Vec<Command>) {
    match &tuning.ended {
        Some(TuneEnd::Stopped(report)) => {
            let last = tuning.last.as_ref().map_or(0, |(cfg, _)| cfg.steps);
            let acc = report.accuracy.map_or_else(String::new, |a| {
                format!("; held-out accuracy {:.0} %", 100.0 * a)
            });
            let how = if report.steps < last {
                "stopped"
            } else {
                "finished"
            };
            ui.label(format!(
                "{how} after step {}: {} checkpoints{acc}",
                report.steps,
                report.checkpoints.len()
            ));
        }
        Some(TuneEnd::Failed(e)) => {
            let text = format!("fine-tune failed: {}", message::chain(e));
            ui.colored_label(Palette::of(ui.ctx()).error(), text);
        }
        None => {}
    }
    if let Some(t) = &tuning.trajectory {
        ui.horizontal(|ui| {
            ui.spinner();
            match t.stages.stages.last() {
                Some(s) => ui.label(format!("trajectory: {} {} / {}", s.name, s.done, s.total)),
                None => ui.label("trajectory: loading the checkpoints"),
            };
        });
    } else if tuning.checkpoints() > 0
        && ui
            .button("Open trajectory")
            .on_hover_text("the study's metrics at every checkpoint (circuitdiff trajectory)")
            .clicked()
    {
        cmds.push(Command::TuneTrajectory);
    }
}
