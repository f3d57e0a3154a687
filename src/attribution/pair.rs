//! Whether two checkpoints can be compared edge by edge (method.md §4): one tokenizer (the same
//! vocabulary, token for token) and one graph (the same layers and, at head level, heads). The
//! study, the trajectory, the app and the pairing of two scored runs all ask this here, and each
//! failure has one wording, rendered from the typed result.

use super::graph::{Graph, Level};
use crate::model::ModelConfig;
use crate::node::{Destination, Heads, Node, Port};
use std::fmt;

/// What a pair check reads of one checkpoint.
pub struct Checkpoint<'a> {
    /// How messages name it: `base MODEL`, `step 40 (PATH)`.
    pub name: String,
    pub config: &'a ModelConfig,
    /// The tokenizer's vocabulary, ordered by id.
    pub vocabulary: &'a [(String, u32)],
}

/// Two checkpoints that cannot be compared, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} and {} cannot be compared: {difference}", names[0], names[1])]
pub struct Unpairable {
    /// The two checkpoints, as [`Checkpoint::name`] gives them.
    pub names: [String; 2],
    /// Boxed: an error stays small.
    pub difference: Box<Difference>,
}

/// How two checkpoints differ.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Difference {
    #[error("{0}; circuits can only be compared between checkpoints of one tokenizer")]
    Vocabulary(VocabularyDifference),
    #[error("{0}; circuits can only be compared between checkpoints of one architecture, whose graphs have the same edges")]
    Graph(GraphDifference),
}

/// Two vocabularies that differ: their sizes and the first id where they disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VocabularyDifference {
    /// Tokens in each vocabulary.
    pub sizes: [usize; 2],
    /// The first id whose token differs (`None` past the end of the shorter vocabulary).
    pub first: Option<(u32, [Option<String>; 2])>,
}

impl fmt::Display for VocabularyDifference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b] = self.sizes;
        write!(f, "their vocabularies differ ({a} vs {b} tokens")?;
        if let Some((id, tokens)) = &self.first {
            let token =
                |t: &Option<String>| t.as_ref().map_or("none".to_owned(), |t| format!("{t:?}"));
            let [x, y] = tokens;
            write!(
                f,
                "; first difference at id {id}: {} vs {}",
                token(x),
                token(y)
            )?;
        }
        f.write_str(")")
    }
}

/// Two graphs that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphDifference {
    pub shapes: [GraphShape; 2],
}

impl fmt::Display for GraphDifference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b] = &self.shapes;
        write!(f, "their graphs differ ({a} vs {b})")
    }
}

/// What a graph's edges are determined by: its level, layers and, at head level, heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphShape {
    pub level: Level,
    pub layers: usize,
    /// Query and key/value heads, at head level.
    pub heads: Option<Heads>,
}

impl GraphShape {
    /// The shape of a model's graph at `level`.
    pub fn of_model(config: &ModelConfig, level: Level) -> Self {
        Self {
            level,
            layers: config.num_layers,
            heads: (level == Level::Head).then_some(Heads {
                query: config.num_heads,
                kv: config.num_kv_heads,
            }),
        }
    }

    /// The shape of a graph (as a run's manifest records it).
    pub fn of_graph(graph: &Graph) -> Self {
        let heads = (graph.level == Level::Head).then(|| Heads {
            query: graph
                .sources
                .iter()
                .filter(|n| matches!(n, Node::Attention { layer: 0, .. }))
                .count(),
            kv: graph
                .destinations
                .iter()
                .filter(|d| {
                    matches!(
                        d,
                        Destination::Attention {
                            layer: 0,
                            port: Port::K,
                            ..
                        }
                    )
                })
                .count(),
        });
        Self {
            level: graph.level,
            layers: graph.layers,
            heads,
        }
    }
}

impl fmt::Display for GraphShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} layers", self.layers)?;
        if let Some(h) = self.heads {
            write!(f, " × {} heads ({} key/value)", h.query, h.kv)?;
        }
        write!(f, " at {}", self.level.words())
    }
}

/// How two vocabularies differ; `None` when they are the same.
pub fn vocabulary_difference(
    a: &[(String, u32)],
    b: &[(String, u32)],
) -> Option<VocabularyDifference> {
    if a == b {
        return None;
    }
    let token = |v: &[(String, u32)], i: usize| v.get(i).map(|(t, _)| t.clone());
    let first = (0..a.len().max(b.len()))
        .find(|&i| a.get(i) != b.get(i))
        .map(|i| {
            let id = a.get(i).or(b.get(i)).map_or(0, |(_, id)| *id);
            (id, [token(a, i), token(b, i)])
        });
    Some(VocabularyDifference {
        sizes: [a.len(), b.len()],
        first,
    })
}

/// How two graphs differ; `None` when they have the same shape.
pub fn graph_difference(a: GraphShape, b: GraphShape) -> Option<GraphDifference> {
    (a != b).then_some(GraphDifference { shapes: [a, b] })
}

/// Refuse a pair whose vocabularies or graphs at `level` differ (the vocabulary first).
pub fn check(a: &Checkpoint, b: &Checkpoint, level: Level) -> Result<(), Unpairable> {
    let difference = vocabulary_difference(a.vocabulary, b.vocabulary)
        .map(Difference::Vocabulary)
        .or_else(|| {
            graph_difference(
                GraphShape::of_model(a.config, level),
                GraphShape::of_model(b.config, level),
            )
            .map(Difference::Graph)
        });
    match difference {
        None => Ok(()),
        Some(difference) => Err(Unpairable {
            names: [a.name.clone(), b.name.clone()],
            difference: Box::new(difference),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(layers: usize, heads: usize, kv: usize) -> ModelConfig {
        let json = serde_json::json!({
            "model_type": "llama", "vocab_size": 32, "hidden_size": 8 * heads,
            "intermediate_size": 16, "num_hidden_layers": layers,
            "num_attention_heads": heads, "num_key_value_heads": kv,
        });
        ModelConfig::from_hf_json(&json, std::path::Path::new("config.json")).unwrap()
    }

    fn vocab(tokens: &[&str]) -> Vec<(String, u32)> {
        (0u32..)
            .zip(tokens)
            .map(|(i, t)| ((*t).to_owned(), i))
            .collect()
    }

    #[test]
    fn a_vocabulary_difference_has_the_sizes_and_the_first_differing_token() {
        let d = vocabulary_difference(&vocab(&["a", "b"]), &vocab(&["a", "c", "d"])).unwrap();
        assert_eq!(d.sizes, [2, 3]);
        assert_eq!(d.first, Some((1, [Some("b".into()), Some("c".into())])));
        // One vocabulary extends the other: the first id past the shorter one.
        let d = vocabulary_difference(&vocab(&["a", "b"]), &vocab(&["a", "b", "c"])).unwrap();
        assert_eq!(d.first, Some((2, [None, Some("c".into())])));
        assert_eq!(
            d.to_string(),
            "their vocabularies differ (2 vs 3 tokens; first difference at id 2: none vs \"c\")"
        );
        assert_eq!(vocabulary_difference(&vocab(&["a"]), &vocab(&["a"])), None);
    }

    #[test]
    fn a_graph_shape_is_the_same_from_a_model_and_from_its_graph() {
        for level in [Level::Block, Level::Head] {
            let c = config(3, 4, 2);
            let shape = GraphShape::of_model(&c, level);
            assert_eq!(GraphShape::of_graph(&Graph::new(&c, level)), shape);
        }
        let head = GraphShape::of_model(&config(3, 4, 2), Level::Head);
        assert_eq!(head.heads, Some(Heads { query: 4, kv: 2 }));
        assert_eq!(
            head.to_string(),
            "3 layers × 4 heads (2 key/value) at head level"
        );
    }

    #[test]
    fn heads_differ_only_at_head_level() {
        let (a, b) = (config(2, 4, 2), config(2, 4, 4));
        let (va, vb) = (vocab(&["x"]), vocab(&["x"]));
        let at = |c| Checkpoint {
            name: "m".into(),
            config: c,
            vocabulary: &va,
        };
        let other = Checkpoint {
            name: "n".into(),
            config: &b,
            vocabulary: &vb,
        };
        assert_eq!(check(&at(&a), &other, Level::Block), Ok(()));
        let e = check(&at(&a), &other, Level::Head).unwrap_err();
        assert_eq!(
            *e.difference,
            Difference::Graph(GraphDifference {
                shapes: [
                    GraphShape::of_model(&a, Level::Head),
                    GraphShape::of_model(&b, Level::Head)
                ]
            })
        );
    }

    #[test]
    fn each_failure_has_one_wording() {
        let (a, b) = (config(4, 2, 2), config(2, 2, 2));
        let (va, vb) = (vocab(&["x", "y"]), vocab(&["x", "z"]));
        let side = |name: &str, config, vocabulary| Checkpoint {
            name: name.into(),
            config,
            vocabulary,
        };
        // The vocabulary is checked first.
        let e = check(
            &side("base A", &a, &va),
            &side("tuned B", &b, &vb),
            Level::Block,
        );
        assert_eq!(
            e.unwrap_err().to_string(),
            "base A and tuned B cannot be compared: their vocabularies differ (2 vs 2 tokens; \
             first difference at id 1: \"y\" vs \"z\"); circuits can only be compared between \
             checkpoints of one tokenizer"
        );
        let e = check(
            &side("base A", &a, &va),
            &side("tuned B", &b, &va),
            Level::Block,
        );
        assert_eq!(
            e.unwrap_err().to_string(),
            "base A and tuned B cannot be compared: their graphs differ (4 layers at block level \
             vs 2 layers at block level); circuits can only be compared between checkpoints of \
             one architecture, whose graphs have the same edges"
        );
    }
}
