//! The computational graph of method.md §1: nodes of the residual stream, the edges between
//! them, their stable names, and the dense source × destination layout of the study's files.

use crate::model::ModelConfig;
use serde::{Deserialize, Serialize};

/// Granularity of the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// One node per attention block and MLP (the study's default).
    #[default]
    Block,
    /// Attention split into heads: per-head sources, per-query-head `<q>` destinations and
    /// per-key/value-head `<k>`/`<v>` destinations.
    Head,
}

/// A node as a source (output) or destination (input) of edges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Stable name: `input`, `a3`, `m2`, `a3.h5`, `a3<q>`, `a3.h5<q>`, `m2`, `logits`.
    pub name: String,
    /// Layer of the node (`None` for `input` and `logits`).
    pub layer: Option<usize>,
    /// Position in the residual stream: a source feeds every destination with a larger one.
    order: usize,
}

/// The graph of one model at one level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    pub level: Level,
    pub layers: usize,
    pub sources: Vec<Node>,
    pub destinations: Vec<Node>,
}

impl Graph {
    /// The graph of a model's configuration.
    pub fn new(cfg: &ModelConfig, level: Level) -> Self {
        let l_count = cfg.num_layers;
        let node = |name: String, layer: Option<usize>, order: usize| Node { name, layer, order };
        let mut sources = vec![node("input".into(), None, 0)];
        let mut destinations = Vec::new();
        for l in 0..l_count {
            let (attn, mlp) = (1 + 2 * l, 2 + 2 * l);
            match level {
                Level::Block => {
                    sources.push(node(format!("a{l}"), Some(l), attn));
                    for p in ["q", "k", "v"] {
                        destinations.push(node(format!("a{l}<{p}>"), Some(l), attn));
                    }
                }
                Level::Head => {
                    for h in 0..cfg.num_heads {
                        sources.push(node(format!("a{l}.h{h}"), Some(l), attn));
                    }
                    for (p, n) in [
                        ("q", cfg.num_heads),
                        ("k", cfg.num_kv_heads),
                        ("v", cfg.num_kv_heads),
                    ] {
                        for h in 0..n {
                            destinations.push(node(format!("a{l}.h{h}<{p}>"), Some(l), attn));
                        }
                    }
                }
            }
            sources.push(node(format!("m{l}"), Some(l), mlp));
            destinations.push(node(format!("m{l}"), Some(l), mlp));
        }
        destinations.push(node("logits".into(), None, 1 + 2 * l_count));
        Self {
            level,
            layers: l_count,
            sources,
            destinations,
        }
    }

    /// Shape of the dense score matrix: (sources, destinations); (1+2L) × (4L+1) at block level.
    pub fn dense_shape(&self) -> (usize, usize) {
        (self.sources.len(), self.destinations.len())
    }

    /// Whether source `s` feeds destination `d` (a real edge, not a structural zero).
    pub fn is_edge(&self, s: usize, d: usize) -> bool {
        self.sources[s].order < self.destinations[d].order
    }

    /// The real-edge mask, row-major over the dense layout.
    pub fn mask(&self) -> Vec<bool> {
        let (ns, nd) = self.dense_shape();
        (0..ns * nd).map(|i| self.is_edge(i / nd, i % nd)).collect()
    }

    /// Real edges as (source, destination) index pairs, in row-major dense order: edge ids.
    pub fn edges(&self) -> Vec<(usize, usize)> {
        let (ns, nd) = self.dense_shape();
        (0..ns)
            .flat_map(|s| (0..nd).map(move |d| (s, d)))
            .filter(|&(s, d)| self.is_edge(s, d))
            .collect()
    }

    /// Number of real edges (4L² + 3L + 1 at block level).
    pub fn num_edges(&self) -> usize {
        self.edges().len()
    }

    /// Name of an edge: `m0->a3<q>`.
    pub fn edge_name(&self, s: usize, d: usize) -> String {
        format!("{}->{}", self.sources[s].name, self.destinations[d].name)
    }

    /// The real-edge values of a dense matrix, in edge-id order.
    pub fn edge_values(&self, dense: &[f32]) -> Vec<f32> {
        let nd = self.destinations.len();
        self.edges()
            .iter()
            .map(|&(s, d)| dense[s * nd + d])
            .collect()
    }

    /// Edge-id indices grouped by the layer of their destination (`logits` last, as group
    /// `layers`): the per-layer sets of method.md §5.
    pub fn edges_by_layer(&self) -> Vec<Vec<usize>> {
        let mut groups = vec![Vec::new(); self.layers + 1];
        for (i, (_, d)) in self.edges().into_iter().enumerate() {
            let g = self.destinations[d].layer.unwrap_or(self.layers);
            groups[g].push(i);
        }
        groups
    }
}
