//! The circuit graph as a figure: node positions (the layered layout of [`super::layout`]:
//! layers from the bottom up), edge geometry and the edge scores of base, tuned and their
//! difference, each with its edges ordered by |score| so that a top-k is a prefix. The app and
//! the headless renderer draw it; nothing here knows about windows.

pub use super::layout::{Bounds, LabelSide, Layout, Point};
use crate::attribution::{Graph, Level};
use crate::node::Node;
use std::sync::OnceLock;

/// Which edges a circuit graph draws: the fewest, largest first, that hold `share` of the total
/// |score|, and at most `max` of them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EdgeSelection {
    pub share: f64,
    pub max: usize,
}

impl Default for EdgeSelection {
    fn default() -> Self {
        Self {
            share: 0.8,
            max: 100,
        }
    }
}

impl EdgeSelection {
    /// How many of `sorted_abs` (|values|, largest first) are drawn.
    pub fn count(&self, sorted_abs: &[f64]) -> usize {
        let total: f64 = sorted_abs.iter().sum();
        let mut acc = 0.0;
        let mut n = 0;
        for v in sorted_abs.iter().take(self.max) {
            if acc >= self.share * total {
                break;
            }
            acc += v;
            n += 1;
        }
        n
    }
}

/// The point at `t` ∈ [0, 1] of the quadratic curve `from` → `ctrl` → `to`.
pub fn quadratic(from: Point, ctrl: Point, to: Point, t: f32) -> Point {
    let u = 1.0 - t;
    let (a, b, c) = (u * u, 2.0 * u * t, t * t);
    Point::new(
        a * from.x + b * ctrl.x + c * to.x,
        a * from.y + b * ctrl.y + c * to.y,
    )
}

/// Which scores the views show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Mode {
    #[default]
    Base,
    Tuned,
    /// Tuned − base: the signed change, which way an edge pushes.
    Difference,
    /// |tuned| − |base| (Δ|S|, method.md §8): whether an edge matters more or less.
    ImportanceChange,
}

impl Mode {
    pub const ALL: [Self; 4] = [
        Self::Base,
        Self::Tuned,
        Self::Difference,
        Self::ImportanceChange,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Base => "Base",
            Self::Tuned => "Tuned",
            Self::Difference => "Difference",
            Self::ImportanceChange => "Importance change",
        }
    }

    /// The mode's name in file names and on the command line: `importance_change`.
    pub fn slug(self) -> &'static str {
        match self {
            Self::Base => "base",
            Self::Tuned => "tuned",
            Self::Difference => "difference",
            Self::ImportanceChange => "importance_change",
        }
    }

    /// Whether the mode shows a change from base to tuned rather than one model's scores.
    pub fn is_change(self) -> bool {
        matches!(self, Self::Difference | Self::ImportanceChange)
    }

    /// The quantity in a few symbols: `tuned − base`, `|tuned| − |base|`.
    pub fn quantity(self) -> &'static str {
        match self {
            Self::Base => "base",
            Self::Tuned => "tuned",
            Self::Difference => "tuned − base",
            Self::ImportanceChange => "|tuned| − |base|",
        }
    }

    /// What a positive and a negative value mean in this mode (the legend's two entries).
    pub fn legend(self) -> [&'static str; 2] {
        match self {
            Self::Base | Self::Tuned => ["positive score", "negative score"],
            Self::Difference => ["tuned > base (signed score)", "tuned < base (signed score)"],
            Self::ImportanceChange => ["more important in tuned", "less important in tuned"],
        }
    }

    /// The legend's entry of `value`: the first for ≥ 0, the second below.
    pub fn describe(self, value: f32) -> &'static str {
        let [up, down] = self.legend();
        if value >= 0.0 {
            up
        } else {
            down
        }
    }

    /// The value of an edge scored `base` and `tuned` in this mode (`None` for a change
    /// without a tuned score).
    pub fn value(self, base: f32, tuned: Option<f32>) -> Option<f32> {
        match self {
            Self::Base => Some(base),
            Self::Tuned => tuned,
            Self::Difference => tuned.map(|t| t - base),
            Self::ImportanceChange => tuned.map(|t| t.abs() - base.abs()),
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::str::FromStr for Mode {
    type Err = String;

    /// `base`, `tuned`, `difference` or `importance_change` (any case; `-` or a space for
    /// `_`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().replace(['-', ' '], "_");
        Self::ALL
            .into_iter()
            .find(|m| m.slug().eq_ignore_ascii_case(&s))
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|m| m.slug()).collect();
                format!("'{s}' is not a mode ({})", names.join(", "))
            })
    }
}

/// A node of the drawing: a source, or `logits`.
#[derive(Debug, Clone)]
pub struct CircuitNode {
    pub node: Node,
    pub pos: Point,
}

/// An edge of the drawing: a quadratic curve from `from` through `ctrl` to `to`.
#[derive(Debug, Clone, Copy)]
pub struct CircuitEdge {
    /// Source and destination indices of the graph (dense layout).
    pub source: u32,
    pub destination: u32,
    /// Drawing nodes it joins.
    pub from_node: u32,
    pub to_node: u32,
    pub from: Point,
    pub ctrl: Point,
    pub to: Point,
}

impl CircuitEdge {
    /// Bounding box of the curve (it lies inside the hull of its three points).
    pub fn bounds(&self) -> Bounds {
        Bounds::of([self.from, self.ctrl, self.to])
    }

    /// The point at parameter `t` ∈ [0, 1].
    pub fn at(&self, t: f32) -> Point {
        quadratic(self.from, self.ctrl, self.to, t)
    }
}

/// Nodes, edges and scores of one circuit (the mean vectors, or one sample).
pub struct Circuit {
    pub graph: Graph,
    pub nodes: Vec<CircuitNode>,
    pub edges: Vec<CircuitEdge>,
    values: [Option<Vec<f32>>; 4],
    order: [OnceLock<Vec<u32>>; 4],
    /// Half the vertical distance between neighbouring nodes, in layout units.
    pub node_spacing: f32,
    /// Attention heads per layer drawn (1 at block level).
    pub heads: usize,
    /// Where the nodes, ports and labels go.
    pub layout: Layout,
}

/// The values of every mode in [`Mode`] order, from base's and tuned's.
fn mode_values(base: Vec<f32>, tuned: Option<Vec<f32>>) -> [Option<Vec<f32>>; 4] {
    let change = |mode: Mode| -> Option<Vec<f32>> {
        let t = tuned.as_ref()?;
        Some(
            t.iter()
                .zip(&base)
                .filter_map(|(&t, &b)| mode.value(b, Some(t)))
                .collect(),
        )
    };
    let (difference, importance) = (change(Mode::Difference), change(Mode::ImportanceChange));
    [Some(base), tuned, difference, importance]
}

impl Circuit {
    /// The circuit of `graph` with edge values (in edge-id order) of base and, when present,
    /// tuned.
    pub fn new(graph: &Graph, base: Vec<f32>, tuned: Option<Vec<f32>>) -> Self {
        let heads = match graph.level {
            Level::Block => 1,
            Level::Head => graph
                .sources
                .iter()
                .filter(|n| matches!(n, Node::Attention { layer: 0, .. }))
                .count()
                .max(1),
        };
        let layout = Layout::new(graph.layers, heads);
        let nodes: Vec<CircuitNode> = graph
            .sources
            .iter()
            .copied()
            .chain([Node::Logits])
            .map(|node| CircuitNode {
                node,
                pos: layout.position(node),
            })
            .collect();
        let index: std::collections::HashMap<Node, usize> =
            nodes.iter().enumerate().map(|(i, n)| (n.node, i)).collect();
        let edges = graph
            .edges()
            .into_iter()
            .map(|(s, d)| {
                let dest = graph.destinations[d];
                let to_node = index.get(&dest.node()).copied().unwrap_or(0);
                let from_node = s;
                let from = nodes[from_node].pos;
                let to = layout.port(dest);
                let rows = layout.row(dest.node()) - layout.row(nodes[from_node].node);
                CircuitEdge {
                    source: s as u32,
                    destination: d as u32,
                    from_node: from_node as u32,
                    to_node: to_node as u32,
                    from,
                    ctrl: layout.control(from, to, rows),
                    to,
                }
            })
            .collect();
        Self {
            graph: graph.clone(),
            nodes,
            edges,
            values: mode_values(base, tuned),
            order: Default::default(),
            node_spacing: layout.node_spacing(),
            heads,
            layout,
        }
    }

    /// The edge values of `mode`, or `None` when this circuit has no tuned run.
    pub fn values(&self, mode: Mode) -> Option<&[f32]> {
        self.values[mode.index()].as_deref()
    }

    /// The modes this circuit has values for.
    pub fn modes(&self) -> Vec<Mode> {
        Mode::ALL
            .into_iter()
            .filter(|m| self.values(*m).is_some())
            .collect()
    }

    /// Edge ids by |value| of `mode`, largest first (empty without values).
    pub fn order(&self, mode: Mode) -> &[u32] {
        self.order[mode.index()].get_or_init(|| {
            let Some(v) = self.values(mode) else {
                return Vec::new();
            };
            let mut ids: Vec<u32> = (0..v.len() as u32).collect();
            ids.sort_by(|&a, &b| v[b as usize].abs().total_cmp(&v[a as usize].abs()));
            ids
        })
    }

    /// The name of edge `e`: `m0->a3<q>`.
    pub fn edge_name(&self, e: u32) -> String {
        let edge = &self.edges[e as usize];
        self.graph
            .edge_name(edge.source as usize, edge.destination as usize)
    }

    /// Edges into and out of drawing node `node`, each sorted by value of `mode`, largest first.
    pub fn edges_of(&self, node: usize, mode: Mode) -> (Vec<u32>, Vec<u32>) {
        let Some(v) = self.values(mode) else {
            return (Vec::new(), Vec::new());
        };
        let (mut incoming, mut outgoing) = (Vec::new(), Vec::new());
        for (i, e) in self.edges.iter().enumerate() {
            if e.to_node as usize == node {
                incoming.push(i as u32);
            }
            if e.from_node as usize == node {
                outgoing.push(i as u32);
            }
        }
        let by_value = |a: &u32, b: &u32| v[*b as usize].total_cmp(&v[*a as usize]);
        incoming.sort_by(by_value);
        outgoing.sort_by(by_value);
        (incoming, outgoing)
    }

    /// How many edges of `mode`, largest first, `select` draws.
    pub fn selected(&self, mode: Mode, select: EdgeSelection) -> usize {
        let Some(v) = self.values(mode) else {
            return 0;
        };
        let sorted: Vec<f64> = self
            .order(mode)
            .iter()
            .map(|&e| f64::from(v[e as usize].abs()))
            .collect();
        select.count(&sorted)
    }

    /// The share of the total |score| of `mode` that its `k` largest edges hold (0 without
    /// values or scores).
    pub fn share(&self, mode: Mode, k: usize) -> f64 {
        let Some(v) = self.values(mode) else {
            return 0.0;
        };
        let abs = |e: &u32| f64::from(v[*e as usize].abs());
        let total: f64 = v.iter().map(|x| f64::from(x.abs())).sum();
        let held: f64 = self.order(mode).iter().take(k).map(abs).sum();
        if total > 0.0 {
            held / total
        } else {
            0.0
        }
    }

    /// How many of the largest edges of `mode` it takes to hold `share` of the total |score|,
    /// with no cap.
    pub fn edges_for_share(&self, mode: Mode, share: f64) -> usize {
        self.selected(
            mode,
            EdgeSelection {
                share,
                max: usize::MAX,
            },
        )
    }

    /// The label a node keeps when the drawing is too small for one per node: its own name at
    /// block level; at head level the block's name (`a3`) on the outermost head of each
    /// attention block and nothing on the other heads.
    pub fn block_label(&self, node: usize) -> Option<String> {
        let n = self.nodes.get(node)?.node;
        match n.head() {
            None => Some(n.to_string()),
            Some(h) if h + 1 == self.heads => Some(n.block().to_string()),
            Some(_) => None,
        }
    }

    /// Bounding box of the nodes, in layout units.
    pub fn bounds(&self) -> Bounds {
        Bounds::of(self.nodes.iter().map(|n| n.pos)).expand(0.6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelConfig;
    use crate::node::Destination;

    fn config(layers: usize, heads: usize, kv: usize) -> ModelConfig {
        let json = serde_json::json!({
            "model_type": "llama", "vocab_size": 32, "hidden_size": 8 * heads,
            "intermediate_size": 16, "num_hidden_layers": layers,
            "num_attention_heads": heads, "num_key_value_heads": kv,
        });
        ModelConfig::from_hf_json(&json, std::path::Path::new("config.json")).unwrap()
    }

    #[test]
    fn a_head_graph_labels_each_block_once_on_its_top_head() {
        let graph = Graph::new(&config(3, 4, 2), Level::Head);
        let c = Circuit::new(&graph, vec![0.0; graph.num_edges()], None);
        assert_eq!(c.heads, 4);
        let labels: Vec<String> = (0..c.nodes.len())
            .filter_map(|i| c.block_label(i))
            .collect();
        let expect = ["input", "a0", "m0", "a1", "m1", "a2", "m2", "logits"];
        assert_eq!(labels, expect);
        for (i, n) in c.nodes.iter().enumerate() {
            if c.block_label(i).is_some() && n.node.head().is_some() {
                // The labelled head is the outermost one, its label outside the column.
                let block = n.node.block();
                let heads = c.nodes.iter().filter(|m| m.node.block() == block);
                assert!(heads.clone().all(|m| m.pos.x >= n.pos.x), "{}", n.node);
            }
        }
        let block = Graph::new(&config(3, 4, 2), Level::Block);
        let c = Circuit::new(&block, vec![0.0; block.num_edges()], None);
        assert_eq!(c.block_label(1).as_deref(), Some("a0"));
    }

    #[test]
    fn every_edge_joins_its_nodes_and_orders_by_magnitude() {
        let graph = Graph::new(&config(3, 4, 2), Level::Block);
        let n = graph.num_edges();
        let base: Vec<f32> = (0..n).map(|i| (i as f32 - 20.0) / 7.0).collect();
        let tuned: Vec<f32> = base.iter().map(|v| v * 2.0).collect();
        let c = Circuit::new(&graph, base.clone(), Some(tuned));
        assert_eq!(c.nodes.len(), graph.sources.len() + 1);
        assert_eq!(c.edges.len(), n);
        for (i, e) in c.edges.iter().enumerate() {
            let name = c.edge_name(i as u32);
            let (src, dst) = name.split_once("->").unwrap();
            assert_eq!(c.nodes[e.from_node as usize].node.to_string(), src);
            let dst: Destination = dst.parse().unwrap();
            assert_eq!(c.nodes[e.to_node as usize].node, dst.node());
            let (from, to) = (&c.nodes[e.from_node as usize], &c.nodes[e.to_node as usize]);
            assert!(
                from.node.order(3) < to.node.order(3),
                "{name} goes backwards"
            );
            // Upwards, or along a row from attention to MLP: never down.
            assert!(e.to.y <= e.from.y + 0.5, "{name} goes down");
            if from.node.layer().is_some() && from.node.layer() == to.node.layer() {
                assert!(e.from.x < e.to.x, "{name} goes backwards within its row");
            }
        }
        let order = c.order(Mode::Difference);
        let diff = c.values(Mode::Difference).unwrap();
        assert!(order
            .windows(2)
            .all(|w| diff[w[0] as usize].abs() >= diff[w[1] as usize].abs()));
        assert_eq!(diff[5], base[5]);

        let logits = c.nodes.len() - 1;
        let (incoming, outgoing) = c.edges_of(logits, Mode::Base);
        assert_eq!(incoming.len(), 1 + 2 * 3);
        assert!(outgoing.is_empty());
        assert!(incoming
            .windows(2)
            .all(|w| base[w[0] as usize] >= base[w[1] as usize]));
    }

    #[test]
    fn an_edge_whose_negative_score_halves_is_less_important_not_tuned_greater() {
        let graph = Graph::new(&config(2, 4, 2), Level::Block);
        let n = graph.num_edges();
        let (mut base, mut tuned) = (vec![0.0_f32; n], vec![0.0_f32; n]);
        (base[0], tuned[0]) = (-3.1e-3, -1.4e-3);
        (base[1], tuned[1]) = (1.0e-3, -2.0e-3);
        let c = Circuit::new(&graph, base, Some(tuned));
        assert_eq!(c.modes(), Mode::ALL);
        let value = |mode: Mode, e: usize| c.values(mode).unwrap()[e];
        // Signed: tuned > base. Importance: 1.4e-3 − 3.1e-3 < 0, less important.
        assert!((value(Mode::Difference, 0) - 1.7e-3).abs() < 1e-9);
        assert!((value(Mode::ImportanceChange, 0) + 1.7e-3).abs() < 1e-9);
        let describe = |mode: Mode, e: usize| mode.describe(value(mode, e));
        assert_eq!(describe(Mode::Difference, 0), "tuned > base (signed score)");
        assert_eq!(
            describe(Mode::ImportanceChange, 0),
            "less important in tuned"
        );
        // A sign flip to a larger magnitude: tuned < base, yet more important.
        assert_eq!(describe(Mode::Difference, 1), "tuned < base (signed score)");
        assert_eq!(
            describe(Mode::ImportanceChange, 1),
            "more important in tuned"
        );
        // Ordered by |Δ|S||: the two changed edges first.
        assert_eq!(&c.order(Mode::ImportanceChange)[..2], [0, 1]);
        for m in Mode::ALL {
            assert_eq!(m.slug().parse::<Mode>(), Ok(m));
            assert_eq!(m.label().parse::<Mode>(), Ok(m));
        }
        assert!("importance-change".parse::<Mode>() == Ok(Mode::ImportanceChange));
    }

    #[test]
    fn heads_lie_side_by_side_and_keys_join_their_head() {
        let graph = Graph::new(&config(2, 4, 2), Level::Head);
        let c = Circuit::new(&graph, vec![1.0; graph.num_edges()], None);
        assert_eq!(c.modes(), [Mode::Base]);
        let pos = |name: &str| {
            let node: Node = name.parse().unwrap();
            c.nodes.iter().find(|n| n.node == node).unwrap().pos
        };
        assert!(pos("a1.h3").x < pos("a1.h0").x);
        assert_eq!(pos("a1.h3").y, pos("a1.h0").y);
        let e = (0..c.edges.len() as u32)
            .find(|&e| c.edge_name(e) == "input->a1.h1<k>")
            .unwrap();
        assert_eq!(
            c.nodes[c.edges[e as usize].to_node as usize]
                .node
                .to_string(),
            "a1.h1"
        );
    }

    #[test]
    fn the_default_view_holds_most_of_the_mass_in_few_edges() {
        let graph = Graph::new(&config(3, 4, 2), Level::Block);
        let n = graph.num_edges();
        // One edge holds 90 % of the mass: it alone is drawn.
        let mut one = vec![0.01; n];
        one[3] = 0.09 * n as f32;
        let select = EdgeSelection::default();
        assert_eq!(
            Circuit::new(&graph, one, None).selected(Mode::Base, select),
            1
        );
        // Equal scores: 80 % of the edges, at most the cap.
        let flat = Circuit::new(&graph, vec![1.0; n], None);
        let k = flat.selected(Mode::Base, select);
        assert_eq!(
            k,
            ((select.share * n as f64).ceil() as usize).min(select.max)
        );
        let big = Graph::new(&config(12, 4, 2), Level::Block);
        let wide = Circuit::new(&big, vec![1.0; big.num_edges()], None);
        assert_eq!(wide.selected(Mode::Base, select), select.max);
    }

    #[test]
    fn the_share_shown_is_the_mass_of_the_largest_edges() {
        let graph = Graph::new(&config(3, 4, 2), Level::Block);
        let n = graph.num_edges();
        // Values 1..=n: the top two hold (n + n - 1) / (n (n + 1) / 2).
        let values: Vec<f32> = (1..=n).map(|i| i as f32).collect();
        let c = Circuit::new(&graph, values, None);
        let total = (n * (n + 1) / 2) as f64;
        let want = (2 * n - 1) as f64 / total;
        assert!((c.share(Mode::Base, 2) - want).abs() < 1e-12);
        assert!((c.share(Mode::Base, n) - 1.0).abs() < 1e-12);
        assert_eq!(c.share(Mode::Tuned, 2), 0.0);
        // 80 % of the mass: the fewest largest edges whose sum reaches 0.8 · total.
        let mut acc = 0.0;
        let need = (1..=n)
            .rev()
            .position(|v| {
                acc += v as f64;
                acc >= 0.8 * total
            })
            .unwrap()
            + 1;
        assert_eq!(c.edges_for_share(Mode::Base, 0.8), need);
    }

    #[test]
    fn deep_models_keep_one_layer_a_row_from_input_up_to_logits() {
        let graph = Graph::new(&config(32, 4, 2), Level::Block);
        let c = Circuit::new(&graph, vec![1.0; graph.num_edges()], None);
        let pos = |name: &str| {
            let node: Node = name.parse().unwrap();
            c.nodes.iter().find(|n| n.node == node).unwrap().pos
        };
        // No wrapping: every layer above the one before, attention left of its MLP.
        for l in 1..32 {
            let (a, below) = (pos(&format!("a{l}")), pos(&format!("a{}", l - 1)));
            assert!(a.y < below.y, "a{l}");
            assert_eq!(a.x, below.x);
            assert!(a.x < pos(&format!("m{l}")).x);
        }
        assert!(pos("input").y > pos("a0").y && pos("logits").y < pos("m31").y);
        // A screen-filling shape once the edges' bows are counted.
        let b = Bounds::of(
            c.nodes
                .iter()
                .map(|n| n.pos)
                .chain(c.edges.iter().map(|e| e.at(0.5))),
        );
        let aspect = b.width() / b.height();
        assert!((0.6..1.6).contains(&aspect), "{aspect}");
        // No two nodes share a place.
        for (i, a) in c.nodes.iter().enumerate() {
            for b in &c.nodes[i + 1..] {
                assert!(a.pos.distance(b.pos) > 0.9, "{} and {}", a.node, b.node);
            }
        }
    }
}
