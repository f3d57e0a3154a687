//! The views of the central area: their list, labels and file names.

use crate::report::circuit::Mode;

/// The views, in tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum View {
    #[default]
    Graph,
    Heatmap,
    Distributions,
    Layers,
    Table,
    Edges,
    Faithfulness,
    Questions,
    Training,
    Trajectory,
}

impl View {
    pub const ALL: [Self; 10] = [
        Self::Graph,
        Self::Heatmap,
        Self::Distributions,
        Self::Layers,
        Self::Table,
        Self::Edges,
        Self::Faithfulness,
        Self::Questions,
        Self::Training,
        Self::Trajectory,
    ];

    /// The tab's label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Graph => "Circuit graph",
            Self::Heatmap => "Heatmap",
            Self::Distributions => "Edge distributions",
            Self::Layers => "Per layer",
            Self::Table => "Comparison table",
            Self::Edges => "Changed edges",
            Self::Faithfulness => "Faithfulness",
            Self::Questions => "Questions",
            Self::Training => "Training",
            Self::Trajectory => "Trajectory",
        }
    }

    /// File name of the view's PNG.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Graph => "graph.png",
            Self::Heatmap => "heatmap.png",
            Self::Distributions => "distributions.png",
            Self::Layers => "per_layer.png",
            Self::Table => "comparison_table.png",
            Self::Edges => "changed_edges.png",
            Self::Faithfulness => "faithfulness.png",
            Self::Questions => "questions.png",
            Self::Training => "training.png",
            Self::Trajectory => "trajectory.png",
        }
    }

    /// The view's name on the command line: the file name's stem (`per_layer`).
    pub fn slug(self) -> &'static str {
        self.file_name().trim_end_matches(".png")
    }

    /// Whether the view shows one mode (base, tuned, a change) at a time.
    pub fn depends_on_mode(self) -> bool {
        matches!(self, Self::Graph | Self::Heatmap | Self::Questions)
    }

    /// File name of the view's PNG in `mode`: `graph_difference.png`, or the plain name for a
    /// view that shows every mode at once.
    pub fn file_name_in(self, mode: Mode) -> String {
        if self.depends_on_mode() {
            format!("{}_{}.png", self.slug(), mode.slug())
        } else {
            self.file_name().to_owned()
        }
    }

    /// Whether the view shows results (all but the training curves and the trajectory).
    pub fn needs_results(self) -> bool {
        !matches!(self, Self::Training | Self::Trajectory)
    }
}

impl std::str::FromStr for View {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|v| v.slug() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|v| v.slug()).collect();
                format!("'{s}' is not a view ({})", names.join(", "))
            })
    }
}
