//! The study form and the study running on a worker thread: the same `run_study` as
//! `circuitdiff study`, reporting per-stage progress and stopping on Cancel.

use super::commands::Command;
use super::error::{AppError, NotReady};
use super::paths::Pick;
use super::settings::{DeviceChoice, StudyForm};
use super::worker::{clock, Message, Stages, Worker};
use crate::attribution::exact::ExactOptions;
use crate::attribution::select::SelectOptions;
use crate::model::LoadOptions;
use crate::report::validation::{ExactConfig, SampleCount};
use crate::side::PerSide;
use crate::study::dir::StudyConfig;
use crate::study::job::{run_study, StudyOutcome};
use crate::study::prompt::Template;
use egui::Ui;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Templates offered by name (besides the default and a custom text).
const TEMPLATES: [&str; 5] = [
    "deepseek-math",
    "mistral",
    "qwen25-math-cot",
    "chat",
    "plain",
];

/// A study in progress.
pub struct Running {
    worker: Worker<StudyOutcome>,
    pub stages: Stages,
    pub out: PathBuf,
    started: Instant,
}

/// How the last study ended.
pub enum Ended {
    /// Finished: its results are in this directory.
    Finished(PathBuf),
    Cancelled,
    Failed(AppError),
}

/// The configuration of the form's study.
pub fn config(form: &StudyForm, models: &PerSide<String>) -> Result<StudyConfig, AppError> {
    let template = if form.template.trim().is_empty() {
        None
    } else {
        Some(Template::parse(&form.template)?)
    };
    let mut cfg = StudyConfig::new(models.base.trim(), models.tuned.trim());
    cfg.dataset = form.dataset.trim().to_owned();
    cfg.template = template;
    cfg.generation.max_new_tokens = form.max_new_tokens;
    cfg.select = SelectOptions {
        n: form.n,
        seed: form.seed,
        alpha: form.alpha,
        ..SelectOptions::default()
    };
    cfg.level = form.level();
    cfg.compare.seed = form.seed;
    cfg.exact = ExactConfig {
        samples: if form.exact_all {
            SampleCount::All
        } else {
            SampleCount::Count(form.exact_samples)
        },
        options: ExactOptions {
            top: form.exact_top,
            random: form.exact_top,
            seed: form.seed,
            ..ExactOptions::default()
        },
    };
    Ok(cfg)
}

fn device(choice: DeviceChoice) -> Result<candle_core::Device, AppError> {
    let spec = match choice {
        DeviceChoice::Cpu => "cpu",
        DeviceChoice::Cuda => "cuda",
        DeviceChoice::Metal => "metal",
    };
    Ok(crate::model::open_device(spec)?)
}

impl Running {
    /// Start the study of `cfg` into `out` on a worker thread.
    pub fn start(
        ctx: &egui::Context,
        cfg: StudyConfig,
        device_choice: DeviceChoice,
        out: PathBuf,
    ) -> Result<Self, AppError> {
        let load = LoadOptions {
            device: device(device_choice)?,
            ..LoadOptions::default()
        };
        let repaint = ctx.clone();
        let job_out = out.clone();
        let worker = Worker::spawn(
            "study",
            Box::new(move || repaint.request_repaint()),
            move |progress, cancel| Ok(run_study(&cfg, &load, &job_out, progress, cancel)?),
        )
        .map_err(|source| AppError::Spawn {
            what: "the study",
            source,
        })?;
        Ok(Self {
            worker,
            stages: Stages::default(),
            out,
            started: Instant::now(),
        })
    }

    pub fn cancel(&self) {
        self.worker.cancel();
    }

    /// The status strip's line: the stage, its counts, the time so far and the time left of
    /// the stage.
    pub fn status_line(&self) -> String {
        let elapsed = clock(self.started.elapsed());
        match self.stages.stages.last() {
            None => format!("study: loading models · {elapsed}"),
            Some(s) => {
                let eta = s.eta().map_or_else(|| "–".to_owned(), clock);
                format!(
                    "study: {} {} / {} · elapsed {elapsed} · stage ends in {eta}",
                    s.name, s.done, s.total
                )
            }
        }
    }

    pub fn is_cancelling(&self) -> bool {
        self.worker.is_cancelled()
    }

    /// Drain progress; `Some` once the study ended.
    pub fn logic(&mut self) -> Option<Ended> {
        for msg in self.worker.poll(Duration::from_millis(5)) {
            self.stages.apply(&msg);
            if let Message::Finished(r) = msg {
                return Some(match r {
                    Ok(StudyOutcome::Finished(_)) => Ended::Finished(self.out.clone()),
                    Ok(StudyOutcome::Cancelled) => Ended::Cancelled,
                    Ok(StudyOutcome::ShardAnswered { .. }) => Ended::Failed(AppError::ShardStudy),
                    Err(e) => Ended::Failed(e),
                });
            }
        }
        None
    }
}

/// The form, Run / Cancel, and the progress of a running study.
pub fn study_ui(
    ui: &mut Ui,
    form: &mut StudyForm,
    running: Option<&Running>,
    ready: Result<(), NotReady>,
    cmds: &mut Vec<Command>,
) {
    ui.add_enabled_ui(running.is_none(), |ui| {
        egui::Grid::new("study_form")
            .num_columns(2)
            .show(ui, |ui| form_ui(ui, form, cmds));
    });
    ui.horizontal(|ui| {
        let can_run = running.is_none() && ready.is_ok();
        let run = ui
            .add_enabled(can_run, egui::Button::new("Run study"))
            .on_disabled_hover_text(match (&ready, running) {
                (_, Some(_)) => "a study is running".to_owned(),
                (Err(why), None) => why.to_string(),
                (Ok(()), None) => String::new(),
            });
        if run.clicked() {
            cmds.push(Command::RunStudy);
        }
        if let Some(r) = running {
            if ui
                .add_enabled(!r.is_cancelling(), egui::Button::new("Cancel study"))
                .clicked()
            {
                cmds.push(Command::CancelStudy);
            }
        }
    });
    if let (Err(why), None) = (&ready, running) {
        ui.small(why.to_string());
    }
    if let Some(r) = running {
        progress_ui(ui, r);
    }
}

/// The form's rows: dataset and template, then [`sizes_ui`].
fn form_ui(ui: &mut Ui, form: &mut StudyForm, cmds: &mut Vec<Command>) {
    let l = ui.label("Dataset");
    ui.horizontal(|ui| {
        ui.add(egui::TextEdit::singleline(&mut form.dataset).desired_width(130.0))
            .labelled_by(l.id);
        if ui.small_button("File…").clicked() {
            cmds.push(Command::Choose(Pick::Dataset));
        }
        if ui.small_button("Built-in").clicked() {
            form.dataset = "builtin:arith".into();
        }
    });
    ui.end_row();
    let l = ui.label("Template");
    let shown = if form.template.is_empty() {
        "tokenizer default"
    } else {
        form.template.as_str()
    };
    egui::ComboBox::from_id_salt("template")
        .selected_text(shown.chars().take(24).collect::<String>())
        .show_ui(ui, |ui| {
            ui.selectable_value(&mut form.template, String::new(), "tokenizer default");
            for t in TEMPLATES {
                ui.selectable_value(&mut form.template, t.to_owned(), t);
            }
        })
        .response
        .labelled_by(l.id);
    ui.end_row();
    ui.label("Custom template");
    ui.add(
        egui::TextEdit::singleline(&mut form.template)
            .hint_text("… {question} …")
            .desired_width(170.0),
    );
    ui.end_row();
    sizes_ui(ui, form, cmds);
}

/// The form's rows from N on: sizes, seed, graph level, device and output folder.
fn sizes_ui(ui: &mut Ui, form: &mut StudyForm, cmds: &mut Vec<Command>) {
    let l = ui.label("N");
    ui.add(egui::DragValue::new(&mut form.n).range(1..=100_000))
        .labelled_by(l.id);
    ui.end_row();
    let l = ui.label("α");
    ui.add(
        egui::DragValue::new(&mut form.alpha)
            .range(0.001..=1.0)
            .speed(0.005),
    )
    .labelled_by(l.id);
    ui.end_row();
    let l = ui.label("Seed");
    ui.add(egui::DragValue::new(&mut form.seed))
        .labelled_by(l.id);
    ui.end_row();
    let l = ui.label("Max new tokens");
    ui.add(egui::DragValue::new(&mut form.max_new_tokens).range(1..=65_536))
        .labelled_by(l.id);
    ui.end_row();
    ui.label("Graph");
    ui.horizontal(|ui| {
        ui.radio_value(&mut form.heads, false, "block");
        ui.radio_value(&mut form.heads, true, "head");
    });
    ui.end_row();
    exact_ui(ui, form);
    ui.label("Device");
    ui.horizontal(|ui| {
        for &d in DeviceChoice::available() {
            ui.radio_value(&mut form.device, d, d.label());
        }
    });
    ui.end_row();
    ui.label("Output");
    ui.horizontal(|ui| {
        ui.add(
            egui::TextEdit::singleline(&mut form.out)
                .hint_text("new folder")
                .desired_width(130.0),
        );
        if ui.small_button("Folder…").clicked() {
            cmds.push(Command::Choose(Pick::StudyFolder));
        }
    });
    ui.end_row();
}

/// The rows of the check of EAP against exact effects.
fn exact_ui(ui: &mut Ui, form: &mut StudyForm) {
    let l = ui.label("Exact effects")
        .on_hover_text("pairs whose top and random edges get exact effects and a faithfulness curve (method.md §7); 0: none");
    ui.horizontal(|ui| {
        ui.add_enabled(
            !form.exact_all,
            egui::DragValue::new(&mut form.exact_samples).range(0..=100_000),
        )
        .labelled_by(l.id);
        ui.checkbox(&mut form.exact_all, "all");
    });
    ui.end_row();
    let l = ui
        .label("Exact top k")
        .on_hover_text("top edges by |S| per pair, and as many random other edges");
    ui.add(egui::DragValue::new(&mut form.exact_top).range(1..=4096))
        .labelled_by(l.id);
    ui.end_row();
}

/// The stages of a running study.
fn progress_ui(ui: &mut Ui, r: &Running) {
    ui.label(if r.is_cancelling() {
        "stopping after the current unit…"
    } else {
        "running; results below stay dimmed until it ends"
    });
    if r.stages.stages.is_empty() {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label("loading models…");
        });
    }
    for s in &r.stages.stages {
        ui.add(
            egui::ProgressBar::new(s.fraction())
                .text(format!("{}: {} / {}", s.name, s.done, s.total)),
        );
    }
    for note in &r.stages.notes {
        ui.small(note);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::Level;

    #[test]
    fn the_form_becomes_the_cli_configuration() {
        let form = StudyForm {
            template: "plain".into(),
            n: 5,
            heads: true,
            ..StudyForm::default()
        };
        let cfg = config(
            &form,
            &PerSide {
                base: "a".into(),
                tuned: " b ".into(),
            },
        )
        .unwrap();
        assert_eq!((cfg.base.as_str(), cfg.tuned.as_str()), ("a", "b"));
        assert_eq!(cfg.template, Some(Template::Plain));
        assert_eq!(cfg.select.n, 5);
        assert_eq!(cfg.level, Level::Head);
        let bad = StudyForm {
            template: "no placeholder".into(),
            ..StudyForm::default()
        };
        assert!(config(
            &bad,
            &PerSide {
                base: "a".into(),
                tuned: "b".into(),
            }
        )
        .is_err());
    }

    #[test]
    fn the_default_form_is_the_cli_default_study() {
        let models = PerSide {
            base: "a".into(),
            tuned: "b".into(),
        };
        let cfg = config(&StudyForm::default(), &models).unwrap();
        assert_eq!(cfg, StudyConfig::new("a", "b"));
    }
}
