//! Identities of the residual-stream graph (method.md §1), defined once for every floor: the
//! transformer's hook points, the graph and its dense layout, the figures and the app.
//!
//! A [`Node`] writes to the residual stream (a source) or reads from it (through a
//! [`Destination`]: attention reads through its q, k and v [`Port`]s). Their names — `input`,
//! `a3`, `a3.h5`, `m2`, `logits`, `a3<q>`, `a3.h5<k>` — are formatted and parsed here only.

use std::fmt;
use std::str::FromStr;

/// The three inputs of an attention block (or head).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Port {
    Q,
    K,
    V,
}

impl Port {
    /// In the study's destination order.
    pub const ALL: [Self; 3] = [Self::Q, Self::K, Self::V];

    /// `q`, `k` or `v`.
    pub fn letter(self) -> char {
        match self {
            Self::Q => 'q',
            Self::K => 'k',
            Self::V => 'v',
        }
    }
}

/// A node of the residual stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Node {
    /// The token embedding.
    Input,
    /// Attention block `layer`, or one of its heads.
    Attention { layer: usize, head: Option<usize> },
    /// MLP block `layer`.
    Mlp { layer: usize },
    /// The unembedding.
    Logits,
}

/// What a node is, without its layer and head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeKind {
    Input,
    Attention,
    Mlp,
    Logits,
}

impl NodeKind {
    pub const ALL: [Self; 4] = [Self::Input, Self::Attention, Self::Mlp, Self::Logits];

    /// A word for the kind.
    pub fn label(self) -> &'static str {
        match self {
            Self::Input => "input",
            Self::Attention => "attention",
            Self::Mlp => "MLP",
            Self::Logits => "logits",
        }
    }
}

/// Head counts of a head-level graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heads {
    /// Query heads (each a source and a `<q>` destination).
    pub query: usize,
    /// Key/value heads (each a `<k>` and a `<v>` destination).
    pub kv: usize,
}

impl Node {
    /// What the node is.
    pub fn kind(self) -> NodeKind {
        match self {
            Self::Input => NodeKind::Input,
            Self::Attention { .. } => NodeKind::Attention,
            Self::Mlp { .. } => NodeKind::Mlp,
            Self::Logits => NodeKind::Logits,
        }
    }

    /// Layer of the node (`None` for `input` and `logits`).
    pub fn layer(self) -> Option<usize> {
        match self {
            Self::Attention { layer, .. } | Self::Mlp { layer } => Some(layer),
            Self::Input | Self::Logits => None,
        }
    }

    /// Head of an attention node at head level.
    pub fn head(self) -> Option<usize> {
        match self {
            Self::Attention { head, .. } => head,
            _ => None,
        }
    }

    /// The block the node belongs to (an attention head's block; any other node itself).
    pub fn block(self) -> Self {
        match self {
            Self::Attention { layer, .. } => Self::Attention { layer, head: None },
            other => other,
        }
    }

    /// Position in the residual stream of a model with `layers` layers: `input` 0, attention
    /// block l 1 + 2l, MLP l 2 + 2l, `logits` 1 + 2·layers. A source feeds every destination
    /// with a larger position; a block-level source's position is also its index in
    /// [`sources`].
    pub fn order(self, layers: usize) -> usize {
        match self {
            Self::Input => 0,
            Self::Attention { layer, .. } => 1 + 2 * layer,
            Self::Mlp { layer } => 2 + 2 * layer,
            Self::Logits => 1 + 2 * layers,
        }
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Input => f.write_str("input"),
            Self::Attention { layer, head: None } => write!(f, "a{layer}"),
            Self::Attention {
                layer,
                head: Some(h),
            } => write!(f, "a{layer}.h{h}"),
            Self::Mlp { layer } => write!(f, "m{layer}"),
            Self::Logits => f.write_str("logits"),
        }
    }
}

/// A name that is not a node or destination of the graph.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{0}' is not a node of the graph (expected input, a3, a3.h5, m2, logits, a3<q>, a3.h5<k>…)"
)]
pub struct ParseNodeError(String);

impl FromStr for Node {
    type Err = ParseNodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseNodeError(s.to_owned());
        let number = |t: &str| -> Result<usize, ParseNodeError> {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            t.parse().map_err(|_| bad())
        };
        match s {
            "input" => Ok(Self::Input),
            "logits" => Ok(Self::Logits),
            _ => {
                if let Some(rest) = s.strip_prefix('m') {
                    return Ok(Self::Mlp {
                        layer: number(rest)?,
                    });
                }
                let rest = s.strip_prefix('a').ok_or_else(bad)?;
                match rest.split_once(".h") {
                    Some((l, h)) => Ok(Self::Attention {
                        layer: number(l)?,
                        head: Some(number(h)?),
                    }),
                    None => Ok(Self::Attention {
                        layer: number(rest)?,
                        head: None,
                    }),
                }
            }
        }
    }
}

/// An input of a node: an attention block or head through one of its ports, an MLP, or the
/// logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Destination {
    Attention {
        layer: usize,
        head: Option<usize>,
        port: Port,
    },
    Mlp {
        layer: usize,
    },
    Logits,
}

impl Destination {
    /// The node this destination feeds.
    pub fn node(self) -> Node {
        match self {
            Self::Attention { layer, head, .. } => Node::Attention { layer, head },
            Self::Mlp { layer } => Node::Mlp { layer },
            Self::Logits => Node::Logits,
        }
    }

    /// The attention port, if any.
    pub fn port(self) -> Option<Port> {
        match self {
            Self::Attention { port, .. } => Some(port),
            _ => None,
        }
    }

    /// Index among the block-level destinations of a model with `layers` layers (the order of
    /// [`destinations`] without heads): q, k, v and MLP of each layer, then `logits`. The
    /// transformer keeps one hook per block-level destination in this order.
    pub fn block_index(self, layers: usize) -> usize {
        match self {
            Self::Attention { layer, port, .. } => 4 * layer + port as usize,
            Self::Mlp { layer } => 4 * layer + 3,
            Self::Logits => 4 * layers,
        }
    }

    /// Number of hook copies of this block-level destination at head level: one per query head
    /// for `<q>`, per key/value head for `<k>` and `<v>`, one otherwise.
    pub fn copies(self, heads: Heads) -> usize {
        match self.port() {
            Some(Port::Q) => heads.query,
            Some(Port::K | Port::V) => heads.kv,
            None => 1,
        }
    }

    /// The head-level destinations of a block-level one, in the study's order.
    fn split(self, heads: Option<Heads>) -> Vec<Self> {
        match (self, heads) {
            (Self::Attention { layer, port, .. }, Some(h)) => (0..self.copies(h))
                .map(|i| Self::Attention {
                    layer,
                    head: Some(i),
                    port,
                })
                .collect(),
            _ => vec![self],
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port() {
            Some(p) => write!(f, "{}<{}>", self.node(), p.letter()),
            None => write!(f, "{}", self.node()),
        }
    }
}

impl FromStr for Destination {
    type Err = ParseNodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseNodeError(s.to_owned());
        let (node, port) = match s.strip_suffix('>').and_then(|r| r.rsplit_once('<')) {
            Some((node, p)) => {
                let port = Port::ALL
                    .into_iter()
                    .find(|q| p.len() == 1 && p.starts_with(q.letter()))
                    .ok_or_else(bad)?;
                (node, Some(port))
            }
            None => (s, None),
        };
        match (node.parse::<Node>()?, port) {
            (Node::Attention { layer, head }, Some(port)) => {
                Ok(Self::Attention { layer, head, port })
            }
            (Node::Mlp { layer }, None) => Ok(Self::Mlp { layer }),
            (Node::Logits, None) => Ok(Self::Logits),
            _ => Err(bad()),
        }
    }
}

/// The sources of a model with `layers` layers in the study's order: `input`, then per layer
/// its attention block (or each head) and its MLP.
pub fn sources(layers: usize, heads: Option<Heads>) -> Vec<Node> {
    let mut out = vec![Node::Input];
    for layer in 0..layers {
        match heads {
            None => out.push(Node::Attention { layer, head: None }),
            Some(h) => out.extend((0..h.query).map(|i| Node::Attention {
                layer,
                head: Some(i),
            })),
        }
        out.push(Node::Mlp { layer });
    }
    out
}

/// The block-level destinations in the order of [`Destination::block_index`].
pub fn block_destinations(layers: usize) -> Vec<Destination> {
    let mut out = Vec::with_capacity(4 * layers + 1);
    for layer in 0..layers {
        out.extend(Port::ALL.map(|port| Destination::Attention {
            layer,
            head: None,
            port,
        }));
        out.push(Destination::Mlp { layer });
    }
    out.push(Destination::Logits);
    out
}

/// The destinations of a model in the study's order: the block-level destinations, each
/// attention port split into its heads at head level (`a0.h0<q>` … `a0.h{H−1}<q>`, `a0.h0<k>`
/// …, `a0.h0<v>` …, `m0`, …, `logits`).
pub fn destinations(layers: usize, heads: Option<Heads>) -> Vec<Destination> {
    block_destinations(layers)
        .into_iter()
        .flat_map(|d| d.split(heads))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADS: Heads = Heads { query: 4, kv: 2 };

    #[test]
    fn names_round_trip() {
        for heads in [None, Some(HEADS)] {
            for n in sources(3, heads).into_iter().chain([Node::Logits]) {
                assert_eq!(n.to_string().parse::<Node>(), Ok(n));
            }
            for d in destinations(3, heads) {
                assert_eq!(d.to_string().parse::<Destination>(), Ok(d));
            }
        }
        let names: Vec<String> = destinations(1, Some(HEADS))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            names.join(" "),
            "a0.h0<q> a0.h1<q> a0.h2<q> a0.h3<q> a0.h0<k> a0.h1<k> a0.h0<v> a0.h1<v> m0 logits"
        );
    }

    #[test]
    fn malformed_names_are_refused() {
        for s in [
            "",
            "a",
            "m",
            "ax",
            "a1.h",
            "a1.hx",
            "a-1",
            "m1<q>",
            "a1<x>",
            "a1<qq>",
            "logits<q>",
            "input<k>",
            "a1<q",
            "b2",
            "a+1",
            "m 1",
        ] {
            assert!(s.parse::<Destination>().is_err(), "{s}");
        }
        for s in ["a1<q>", "m1.h2", "a1.h2.h3", "x"] {
            assert!(s.parse::<Node>().is_err(), "{s}");
        }
    }

    #[test]
    fn block_index_is_the_position_in_block_order() {
        let layers = 5;
        for (i, d) in block_destinations(layers).into_iter().enumerate() {
            assert_eq!(d.block_index(layers), i, "{d}");
        }
        for (i, n) in sources(layers, None).into_iter().enumerate() {
            assert_eq!(n.order(layers), i, "{n}");
        }
    }

    #[test]
    fn head_level_counts() {
        let (layers, h) = (3, HEADS);
        assert_eq!(sources(layers, Some(h)).len(), 1 + layers * (h.query + 1));
        assert_eq!(
            destinations(layers, Some(h)).len(),
            1 + layers * (h.query + 2 * h.kv + 1)
        );
        let heads_of_a1 = destinations(layers, Some(h))
            .into_iter()
            .filter(|d| {
                d.node().block()
                    == Node::Attention {
                        layer: 1,
                        head: None,
                    }
            })
            .count();
        assert_eq!(heads_of_a1, h.query + 2 * h.kv);
    }
}
