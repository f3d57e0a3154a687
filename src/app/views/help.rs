//! The Guide window (the study in a paragraph, what each view shows, every metric with its
//! definition and what higher means, how nodes are named) and the About window.

use super::View;
use crate::attribution::metrics::Metric;
use crate::report::circuit::Mode;
use egui::Ui;

/// The study, as the Guide window opens with it.
pub const STUDY: &str = "circuitdiff compares the circuits of a base model and its fine-tuned \
    version. Both models answer the same questions; the questions both answer correctly are \
    kept. On each kept question, edge attribution patching scores every edge of the residual \
    stream graph (from the input embeddings through the attention and MLP blocks of each layer to the \
    logits) with one forward and one backward pass: the score of an edge u -> v is minus the \
    sum, over positions and dimensions, of u's output times the gradient of the loss at v's \
    input, the first-order change of the loss (on the model's own first K answer tokens) when \
    the edge is removed. The \
    metrics below summarise how strong and how spread those scores are, per question, and the \
    comparison pairs them question by question (Wilcoxon signed-rank test, bootstrap interval of \
    the mean difference).";

/// What each view shows.
pub fn describe_view(view: View) -> &'static str {
    match view {
        View::Graph => {
            "the residual-stream graph, one row a layer from input at the bottom to logits at \
             the top, each layer's attention block on the left and its MLP on the right, with \
             the edges of largest |score| drawn (the line above the graph says what share of \
             the total |score| they hold); colour gives the sign, width the magnitude, and an \
             arrow points into each edge's destination: q, k and v enter an attention block at \
             its lower left, bottom and lower right. Click a node to list its edges."
        }
        View::Heatmap => {
            "every edge's score as a cell, the study's orientation: x = source index, from \
             input at the left through a0, m0, a1, … to the last MLP at the right; y = \
             destination index, from a0<q> at the bottom up to logits at the top. Grey cells \
             are not edges of the graph. Saved figures and reports draw it the same way."
        }
        View::Distributions => {
            "the sorted |scores| and their cumulative share of the total, base against tuned, \
             and the histogram of scores"
        }
        View::Layers => "each metric computed over the edges into each layer",
        View::Table => {
            "every metric for base and tuned, the paired difference, its p-value, the p-value \
             adjusted for the comparison's family of tests, and its interval"
        }
        View::Edges => {
            "the edges whose importance |S| changed most: both models' mean scores, the signed \
             change, the change in importance, a paired test per edge over the questions \
             (Wilcoxon) with the Benjamini–Hochberg false-discovery rate across edges"
        }
        View::Faithfulness => {
            "whether EAP's scores hold for these models: each checked edge's score against the \
             exact loss change of removing it, the faithfulness of the top-k circuits, both \
             models' per-sample losses, and whether the exact effects confirm each conclusion"
        }
        View::Questions => "each question with both models' answers, grades and circuits",
        View::Training => "the training curves of the models in a lab folder",
        View::Trajectory => {
            "a training run checkpoint by checkpoint (`circuitdiff trajectory`): each metric's \
             mean over one question set with its interval, beside the trainer's reward and \
             accuracy, on one step axis. Choose a checkpoint with the slider or a click in a \
             plot: the other views then show it against the first checkpoint."
        }
    }
}

/// What each mode shows.
pub fn describe_mode(mode: Mode) -> &'static str {
    match mode {
        Mode::Base => "the base model's mean edge scores",
        Mode::Tuned => "the tuned model's mean edge scores",
        Mode::Difference => {
            "tuned − base: how each edge's mean score changed, with its sign (which way the \
             edge pushes)"
        }
        Mode::ImportanceChange => {
            "|tuned| − |base| (Δ|S|): whether each edge matters more (positive) or less \
             (negative) in the tuned model, whatever its sign"
        }
    }
}

/// What a mode shows, in a few words (the views' headers).
pub fn mode_title(mode: Mode) -> &'static str {
    match mode {
        Mode::Base => "base model",
        Mode::Tuned => "tuned model",
        Mode::Difference => "tuned − base",
        Mode::ImportanceChange => "importance change, |tuned| − |base|",
    }
}

/// How nodes are named.
pub const NODES: &str = "input: the token embeddings (the first source). a3: the attention \
    block of layer 3 (counted from 0); a3.h5: its head 5 at head level. m3: the MLP block of \
    layer 3. logits: the output (the last destination). An attention destination has three \
    inputs, a3<q>, a3<k> and a3<v>, scored separately. An edge is written source -> destination, \
    e.g. m1 -> a3<v>.";

/// A metric's tooltip: its definition and what a higher value means.
pub fn metric_tooltip(metric: Metric) -> String {
    format!(
        "{}\nhigher means {}",
        metric.definition(),
        metric.higher_means().describe()
    )
}

/// The Guide window's contents.
pub fn help_ui(ui: &mut Ui) {
    egui::ScrollArea::vertical().show(ui, |ui| {
        ui.heading("The study");
        ui.label(STUDY);
        ui.add_space(8.0);
        ui.heading("Views");
        // One wrapped paragraph a row (a grid would not wrap its long cells and would run past
        // the window's edge).
        for view in View::ALL {
            described(ui, view.label(), &[describe_view(view)]);
        }
        for mode in Mode::ALL {
            described(ui, mode.label(), &[describe_mode(mode)]);
        }
        ui.add_space(8.0);
        ui.heading("Metrics");
        for metric in Metric::ALL {
            let higher = format!("Higher means {}.", metric.higher_means().describe());
            described(ui, metric.name(), &[metric.definition(), &higher]);
        }
        ui.add_space(8.0);
        ui.heading("Node names");
        ui.label(NODES);
    });
}

/// A name in bold and what it is, wrapped to the window's width.
fn described(ui: &mut Ui, name: &str, texts: &[&str]) {
    ui.horizontal_wrapped(|ui| {
        ui.strong(format!("{name}:"));
        for text in texts {
            ui.label(*text);
        }
    });
    ui.add_space(2.0);
}

/// The About window's contents.
pub fn about_ui(ui: &mut Ui) {
    ui.heading(format!("circuitdiff {}", env!("CARGO_PKG_VERSION")));
    ui.label(env!("CARGO_PKG_DESCRIPTION"));
    ui.label(format!("License: {}", env!("CARGO_PKG_LICENSE")));
    ui.label(
        "Method: edge attribution patching on the residual-stream graph, after Zhang, Hao, Xu \
         and Li (arXiv 2509.21044).",
    );
}
