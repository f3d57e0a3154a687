//! The computational graph of method.md §1: nodes of the residual stream, the edges between
//! them, their stable names, and the dense source × destination layout of the study's files.

use crate::model::ModelConfig;
use crate::node::{self, Destination, Heads, Node};
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

impl Level {
    /// The level in words: "block level" or "head level".
    pub fn words(self) -> &'static str {
        match self {
            Self::Block => "block level",
            Self::Head => "head level",
        }
    }
}

/// The graph of one model at one level: its sources and destinations in the study's order
/// (the rows and columns of the dense layout).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "GraphRecord", try_from = "GraphRecord")]
pub struct Graph {
    pub level: Level,
    pub layers: usize,
    pub sources: Vec<Node>,
    pub destinations: Vec<Destination>,
}

impl Graph {
    /// The graph of a model's configuration.
    pub fn new(cfg: &ModelConfig, level: Level) -> Self {
        let heads = match level {
            Level::Block => None,
            Level::Head => Some(Heads {
                query: cfg.num_heads,
                kv: cfg.num_kv_heads,
            }),
        };
        Self {
            level,
            layers: cfg.num_layers,
            sources: node::sources(cfg.num_layers, heads),
            destinations: node::destinations(cfg.num_layers, heads),
        }
    }

    /// Shape of the dense score matrix: (sources, destinations); (1+2L) × (4L+1) at block level.
    pub fn dense_shape(&self) -> (usize, usize) {
        (self.sources.len(), self.destinations.len())
    }

    /// Whether source `s` feeds destination `d` (a real edge, not a structural zero).
    pub fn is_edge(&self, s: usize, d: usize) -> bool {
        self.sources[s].order(self.layers) < self.destinations[d].node().order(self.layers)
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
        format!("{}->{}", self.sources[s], self.destinations[d])
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
            let g = self.destinations[d].node().layer().unwrap_or(self.layers);
            groups[g].push(i);
        }
        groups
    }
}

/// A graph as the manifest stores it: each node by name, layer and residual position.
#[derive(Serialize, Deserialize)]
struct GraphRecord {
    level: Level,
    layers: usize,
    sources: Vec<NodeRecord>,
    destinations: Vec<NodeRecord>,
}

#[derive(Serialize, Deserialize)]
struct NodeRecord {
    name: String,
    layer: Option<usize>,
    order: usize,
}

impl NodeRecord {
    fn of(name: String, node: Node, layers: usize) -> Self {
        Self {
            name,
            layer: node.layer(),
            order: node.order(layers),
        }
    }

    /// The identity named, checked against the layer and position recorded beside it.
    fn parse<T: std::str::FromStr<Err = node::ParseNodeError>>(
        &self,
        node_of: impl Fn(&T) -> Node,
        layers: usize,
    ) -> Result<T, String> {
        let id: T = self
            .name
            .parse()
            .map_err(|e: node::ParseNodeError| e.to_string())?;
        let n = node_of(&id);
        if n.layer() != self.layer || n.order(layers) != self.order || n.layer() >= Some(layers) {
            return Err(format!(
                "graph node '{}' has layer {:?} and position {} in a {layers}-layer graph",
                self.name, self.layer, self.order
            ));
        }
        Ok(id)
    }
}

impl From<Graph> for GraphRecord {
    fn from(g: Graph) -> Self {
        let layers = g.layers;
        Self {
            level: g.level,
            layers,
            sources: g
                .sources
                .iter()
                .map(|&n| NodeRecord::of(n.to_string(), n, layers))
                .collect(),
            destinations: g
                .destinations
                .iter()
                .map(|&d| NodeRecord::of(d.to_string(), d.node(), layers))
                .collect(),
        }
    }
}

impl TryFrom<GraphRecord> for Graph {
    type Error = String;

    fn try_from(r: GraphRecord) -> Result<Self, String> {
        let layers = r.layers;
        Ok(Self {
            level: r.level,
            layers,
            sources: r
                .sources
                .iter()
                .map(|n| n.parse(|&n: &Node| n, layers))
                .collect::<Result<_, _>>()?,
            destinations: r
                .destinations
                .iter()
                .map(|n| n.parse(|d: &Destination| d.node(), layers))
                .collect::<Result<_, _>>()?,
        })
    }
}
