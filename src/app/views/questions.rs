//! The question browser: every question with both answers, their grades and, for the scored
//! ones, the per-sample metrics and that sample's circuit.

use super::super::results::{AnswerView, Results};
use super::graph::{canvas_ui, GraphState};
use crate::attribution::metrics::Metric;
use crate::report::circuit::{Circuit, Mode};
use egui::Ui;

/// Selection and filter of the browser, with the selected sample's circuit.
#[derive(Default)]
pub struct QuestionsState {
    pub selected: Option<usize>,
    pub scored_only: bool,
    circuit: Option<(usize, Circuit)>,
    graph: GraphState,
}

fn mark(a: Option<&AnswerView>) -> &'static str {
    match a {
        Some(a) if a.correct => "+",
        Some(_) => "-",
        None => "·",
    }
}

fn answer_ui(ui: &mut Ui, title: &str, a: Option<&AnswerView>) {
    ui.strong(title);
    let Some(a) = a else {
        ui.label("no answer");
        return;
    };
    ui.label(format!(
        "{} {} — extracted {}; {} prompt + {} answer tokens",
        mark(Some(a)),
        if a.correct { "correct" } else { "wrong" },
        a.extracted.as_deref().unwrap_or("nothing"),
        a.prompt_tokens,
        a.answer_tokens
    ));
    egui::ScrollArea::vertical()
        .id_salt(title)
        .max_height(110.0)
        .show(ui, |ui| {
            ui.add(egui::Label::new(egui::RichText::new(&a.text).monospace()).wrap());
        });
}

fn metrics_ui(ui: &mut Ui, results: &Results, sample: (usize, Option<usize>)) {
    let base = results.base.metrics.samples.get(sample.0);
    let tuned = results
        .tuned
        .as_ref()
        .zip(sample.1)
        .and_then(|(r, t)| r.metrics.samples.get(t));
    egui::Grid::new("sample_metrics")
        .striped(true)
        .show(ui, |ui| {
            ui.strong("metric");
            ui.strong("base");
            if tuned.is_some() {
                ui.strong("tuned");
            }
            ui.end_row();
            let values = |m: Option<&crate::report::run::SampleMetrics>| {
                m.map(|m| {
                    let mut v = vec![m.loss];
                    v.extend(m.metrics.overall.values());
                    v
                })
            };
            let (b, t) = (values(base), values(tuned));
            let names = Metric::ALL.iter().map(|m| m.name());
            for (i, name) in std::iter::once("loss").chain(names).enumerate() {
                ui.label(name);
                for v in [&b, &t].into_iter().flatten() {
                    ui.monospace(format!("{:.4}", v[i]));
                }
                ui.end_row();
            }
        });
}

/// The browser: a list on the left, the selected question on the right.
pub fn questions_ui(ui: &mut Ui, results: &Results, mode: Mode, state: &mut QuestionsState) {
    egui::Panel::left("question_list")
        .default_size(300.0)
        .resizable(true)
        .show(ui, |ui| {
            ui.checkbox(&mut state.scored_only, "Scored only");
            let shown: Vec<usize> = (0..results.questions.len())
                .filter(|&i| !state.scored_only || results.questions[i].sample.is_some())
                .collect();
            let row_height = ui.text_style_height(&egui::TextStyle::Body) + 4.0;
            egui::ScrollArea::vertical().show_rows(ui, row_height, shown.len(), |ui, range| {
                for &i in &shown[range] {
                    let q = &results.questions[i];
                    let preview: String = q.question.chars().take(40).collect();
                    let text = format!(
                        "{}{} {}{} {}",
                        mark(q.base.as_ref()),
                        mark(q.tuned.as_ref()),
                        q.id,
                        if q.sample.is_some() { " *" } else { "" },
                        preview.replace('\n', " ")
                    );
                    if ui
                        .selectable_label(state.selected == Some(i), text)
                        .clicked()
                    {
                        state.selected = Some(i);
                    }
                }
            });
        });
    let Some(q) = state.selected.and_then(|i| results.questions.get(i)) else {
        ui.label("Select a question (+ or -: base, then tuned, correct or wrong; *: scored)");
        return;
    };
    let selected = state.selected.unwrap_or_default();
    egui::ScrollArea::vertical().show(ui, |ui| {
        ui.heading(format!("Question {}", q.id));
        ui.label(&q.question);
        ui.label(format!("Reference: {}", q.reference));
        ui.separator();
        ui.columns(2, |cols| {
            answer_ui(&mut cols[0], "Base answer", q.base.as_ref());
            answer_ui(&mut cols[1], "Tuned answer", q.tuned.as_ref());
        });
        ui.separator();
        let Some(sample) = q.sample else {
            ui.label("Not scored (not in the study's sample)");
            return;
        };
        metrics_ui(ui, results, sample);
        if state.circuit.as_ref().is_none_or(|c| c.0 != selected) {
            state.circuit = results.sample_circuit(q).map(|c| (selected, c));
            state.graph = GraphState::default();
        }
        if let Some((_, circuit)) = &state.circuit {
            ui.strong(format!("Circuit of this sample ({})", mode.label()));
            let size = egui::vec2(ui.available_width(), 320.0);
            ui.allocate_ui(size, |ui| {
                canvas_ui(ui, circuit, mode, 400, &mut state.graph);
            });
        }
    });
}
