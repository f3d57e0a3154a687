//! The question browser: every question with both answers, their grades and, for the scored
//! ones, the per-sample metrics and that sample's circuit.

use super::super::results::{AnswerView, Question, Results, ScoredTokens};
use super::super::theme::Palette;
use super::graph::{canvas_ui, share_line, GraphState};
use crate::attribution::metrics::Metric;
use crate::report::circuit::{Circuit, EdgeSelection, Mode};
use crate::report::table::Cell;
use egui::{Color32, RichText, Ui};

/// The edges a sample's circuit draws: the fewest, largest first, that hold 80 % of its
/// |score|, at most 60 (the circuit shares the panel with the question, so fewer than the
/// graph view's 100 keep a deep model's circuit readable).
pub const SAMPLE_EDGES: EdgeSelection = EdgeSelection {
    share: 0.8,
    max: 60,
};

/// Selection, search and filter of the browser, with the selected sample's circuit.
#[derive(Default)]
pub struct QuestionsState {
    pub selected: Option<usize>,
    pub scored_only: bool,
    /// Shown: questions whose id or text contains this (any case).
    pub search: String,
    circuit: Option<(usize, Circuit)>,
    graph: GraphState,
}

impl QuestionsState {
    /// Forget the selected sample's circuit (the results' scores changed), keeping the
    /// selection, search and framing.
    pub fn forget_circuit(&mut self) {
        self.circuit = None;
    }
}

/// How the two models did on a question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    BothRight,
    BaseOnly,
    TunedOnly,
    BothWrong,
    /// A model has no answer (a single run, or an unanswered question).
    Incomplete,
}

impl Outcome {
    pub fn of(q: &Question) -> Self {
        match (q.base.as_ref(), q.tuned.as_ref()) {
            (Some(b), Some(t)) => match (b.correct, t.correct) {
                (true, true) => Self::BothRight,
                (true, false) => Self::BaseOnly,
                (false, true) => Self::TunedOnly,
                (false, false) => Self::BothWrong,
            },
            _ => Self::Incomplete,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::BothRight => "both right",
            Self::BaseOnly => "base only",
            Self::TunedOnly => "tuned only",
            Self::BothWrong => "both wrong",
            Self::Incomplete => "—",
        }
    }

    fn color(self, palette: Palette) -> Color32 {
        match self {
            Self::BothRight => palette.correct(),
            Self::BaseOnly => palette.base(),
            Self::TunedOnly => palette.tuned(),
            Self::BothWrong => palette.error(),
            Self::Incomplete => palette.node(),
        }
    }
}

/// The questions the list shows: matching the search, and scored when `scored_only`.
pub fn shown(results: &Results, state: &QuestionsState) -> Vec<usize> {
    let needle = state.search.trim().to_lowercase();
    (0..results.questions.len())
        .filter(|&i| {
            let q = &results.questions[i];
            (!state.scored_only || q.sample.is_some())
                && (needle.is_empty()
                    || q.id.to_lowercase().contains(&needle)
                    || q.question.to_lowercase().contains(&needle))
        })
        .collect()
}

fn answer_ui(ui: &mut Ui, title: &str, a: Option<&AnswerView>) {
    ui.strong(title);
    let Some(a) = a else {
        ui.label("no answer");
        return;
    };
    let palette = Palette::of(ui.ctx());
    ui.horizontal_wrapped(|ui| {
        if a.correct {
            ui.colored_label(palette.correct(), "correct");
        } else {
            ui.colored_label(palette.error(), "wrong");
        }
        ui.label(format!(
            "— extracted {}; {} prompt + {} answer tokens",
            a.extracted.as_deref().unwrap_or("nothing"),
            a.prompt_tokens,
            a.answer_tokens
        ));
    });
    if let Some(scored) = &a.scored {
        scored_legend(ui, a, scored);
    }
    egui::ScrollArea::vertical()
        .id_salt(title)
        .max_height(110.0)
        .show(ui, |ui| {
            ui.add(egui::Label::new(answer_text(ui, a)).wrap());
        });
}

/// The answer's text in monospace, its scored tokens (when their text begins it) on the
/// highlight colour.
fn answer_text(ui: &Ui, a: &AnswerView) -> egui::text::LayoutJob {
    let palette = Palette::of(ui.ctx());
    let font = egui::TextStyle::Monospace.resolve(ui.style());
    let plain = egui::TextFormat::simple(font.clone(), ui.visuals().text_color());
    let marked = egui::TextFormat {
        background: palette.highlight().gamma_multiply(0.35),
        underline: egui::Stroke::new(1.5, palette.highlight()),
        ..plain.clone()
    };
    let mut job = egui::text::LayoutJob::default();
    let at = a.scored_prefix_len().unwrap_or(0);
    job.append(&a.text[..at], 0.0, marked);
    job.append(&a.text[at..], 0.0, plain);
    job
}

/// The legend of the marks: how many tokens were scored, and their text when it could not be
/// marked in the answer.
fn scored_legend(ui: &mut Ui, a: &AnswerView, scored: &ScoredTokens) {
    let palette = Palette::of(ui.ctx());
    ui.horizontal_wrapped(|ui| {
        let swatch = RichText::new(" scored tokens ")
            .monospace()
            .background_color(palette.highlight().gamma_multiply(0.35));
        ui.label(swatch).on_hover_text(
            "The loss, and with it every edge score of this sample, covers only these first K \
             answer tokens (method.md section 3)",
        );
        let of = format!(
            "(K = {}: the first {} of {} answer tokens)",
            scored.k, scored.k, a.answer_tokens
        );
        match (&scored.text, a.scored_prefix_len()) {
            (_, Some(_)) => ui.label(of),
            (Some(text), None) => ui.label(format!("{of}: {text:?}")),
            (None, None) => ui.label(format!("{of}; the tokenizer was not found to mark them")),
        };
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
                    ui.monospace(Cell::Value(v[i]).text());
                }
                ui.end_row();
            }
        });
}

/// Move the selection with the up and down keys through the shown questions (when no text field has the
/// keyboard).
fn navigate(ui: &Ui, shown: &[usize], state: &mut QuestionsState) -> bool {
    if ui.ctx().memory(|m| m.focused().is_some()) || shown.is_empty() {
        return false;
    }
    let (up, down) = ui.input(|i| {
        (
            i.key_pressed(egui::Key::ArrowUp),
            i.key_pressed(egui::Key::ArrowDown),
        )
    });
    if !up && !down {
        return false;
    }
    let at = state
        .selected
        .and_then(|s| shown.iter().position(|&i| i == s));
    let next = match (at, down) {
        (None, _) => 0,
        (Some(p), true) => (p + 1).min(shown.len() - 1),
        (Some(p), false) => p.saturating_sub(1),
    };
    state.selected = Some(shown[next]);
    true
}

/// The list: search, filter and one row a question with its outcome in words.
fn list_ui(ui: &mut Ui, results: &Results, state: &mut QuestionsState) {
    ui.add(
        egui::TextEdit::singleline(&mut state.search)
            .hint_text("search id or text")
            .desired_width(f32::INFINITY),
    );
    ui.checkbox(&mut state.scored_only, "Scored only")
        .on_hover_text("only the questions the study scored (both models right, then sampled)");
    let shown = shown(results, state);
    let moved = navigate(ui, &shown, state);
    ui.small(format!(
        "{} of {} questions; the up and down keys move",
        shown.len(),
        results.questions.len()
    ));
    let palette = Palette::of(ui.ctx());
    egui::ScrollArea::vertical().show(ui, |ui| {
        for &i in &shown {
            let q = &results.questions[i];
            let outcome = Outcome::of(q);
            let preview: String = q.question.chars().take(40).collect();
            let row = ui.horizontal(|ui| {
                ui.label(
                    RichText::new(format!("{:<10}", outcome.label()))
                        .monospace()
                        .color(outcome.color(palette)),
                );
                let text = format!(
                    "{}{} {}",
                    q.id,
                    if q.sample.is_some() { " (scored)" } else { "" },
                    preview.replace('\n', " ")
                );
                ui.selectable_label(state.selected == Some(i), text)
            });
            if row.inner.clicked() {
                state.selected = Some(i);
            }
            if moved && state.selected == Some(i) {
                row.response.scroll_to_me(None);
            }
        }
    });
}

/// The browser: a list on the left, the selected question on the right.
pub fn questions_ui(ui: &mut Ui, results: &Results, mode: Mode, state: &mut QuestionsState) {
    egui::Panel::left("question_list")
        .default_size(340.0)
        .resizable(true)
        .show(ui, |ui| list_ui(ui, results, state));
    let Some(q) = state.selected.and_then(|i| results.questions.get(i)) else {
        ui.label("Select a question on the left (the up and down keys move through the list)");
        return;
    };
    let selected = state.selected.unwrap_or_default();
    // The question, answers and metrics scroll in the upper part; the sample's circuit fills
    // the rest of the panel.
    let scored = q.sample.is_some();
    let upper = if scored {
        (ui.available_height() * 0.42).max(200.0)
    } else {
        f32::INFINITY
    };
    egui::ScrollArea::vertical()
        .max_height(upper)
        .show(ui, |ui| question_ui(ui, results, q));
    if !scored {
        return;
    }
    if state.circuit.as_ref().is_none_or(|c| c.0 != selected) {
        state.circuit = results.sample_circuit(q).map(|c| (selected, c));
        state.graph = GraphState::default();
    }
    if let Some((_, circuit)) = &state.circuit {
        ui.separator();
        let k = circuit.selected(mode, SAMPLE_EDGES).max(1);
        ui.horizontal_wrapped(|ui| {
            ui.strong(format!("Circuit of this sample ({})", mode.label()));
            ui.label(share_line(circuit, mode, k, false));
        });
        canvas_ui(ui, circuit, mode, k, &mut state.graph);
    }
}

/// The question, both answers and, when scored, the sample's metrics.
fn question_ui(ui: &mut Ui, results: &Results, q: &Question) {
    ui.heading(format!("Question {}", q.id));
    ui.label(&q.question);
    ui.label(format!("Reference: {}", q.reference));
    ui.separator();
    ui.columns(2, |cols| {
        answer_ui(&mut cols[0], "Base answer", q.base.as_ref());
        answer_ui(&mut cols[1], "Tuned answer", q.tuned.as_ref());
    });
    ui.separator();
    match q.sample {
        Some(sample) => metrics_ui(ui, results, sample),
        None => {
            ui.label("Not scored (not in the study's sample)");
        }
    }
}
