//! What the views keep between frames.

use super::{edges, graph, heatmap, questions, table, training};

/// State of the views that outlives a frame.
#[derive(Default)]
pub struct ViewState {
    pub graph: graph::GraphState,
    pub heatmap: heatmap::HeatmapState,
    pub table: table::TableState,
    pub edges: edges::EdgesState,
    pub questions: questions::QuestionsState,
    pub training: training::TrainingState,
    /// The Guide window (Help menu) is open.
    pub help: bool,
    /// The About window is open.
    pub about: bool,
}

impl ViewState {
    /// The changed-edges view's state and the graph's, whose pinned edge a click sets.
    pub fn edges_and_graph(&mut self) -> (&mut edges::EdgesState, &mut graph::GraphState) {
        (&mut self.edges, &mut self.graph)
    }

    /// Forget what depends on the previous results.
    pub fn reset_for_new_results(&mut self) {
        self.graph = graph::GraphState::default();
        self.heatmap = heatmap::HeatmapState::default();
        self.edges = edges::EdgesState::default();
        self.questions = questions::QuestionsState::default();
    }

    /// Forget what depends on the previous results' scores, keeping the graph's framing,
    /// selection and filter and the chosen question: the new results have the same graph and
    /// questions (another checkpoint of a trajectory).
    pub fn reset_for_same_graph(&mut self) {
        self.heatmap = heatmap::HeatmapState::default();
        self.questions.forget_circuit();
    }
}
