//! The layered layout of a circuit graph, drawn as circuit-tracer and Neuronpedia draw deep
//! graphs: one row a layer from `input` at the bottom to `logits` at the top, a layer's
//! attention block on the left and its MLP on the right of the same row, and every edge running
//! upwards (or, from a layer's attention to its MLP, rightwards) into its destination's port:
//! an attention block takes q at its lower left, k from straight below and v at its lower
//! right. Nothing wraps, however deep the model.
//!
//! Layout units: one unit between the rows of consecutive layers; y grows downwards, as on
//! screen, so the upper layers have the more negative y. Edges between two nodes of one column
//! bow outwards (the further apart, the wider), so that they pass beside the nodes they skip.

use crate::node::{Destination, Node, Port};

/// A point of the layout.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Point {
    pub x: f32,
    pub y: f32,
}

impl Point {
    pub const fn new(x: f32, y: f32) -> Self {
        Self { x, y }
    }

    /// Distance to `other`.
    pub fn distance(self, other: Self) -> f32 {
        (self.x - other.x).hypot(self.y - other.y)
    }
}

/// An axis-aligned box of the layout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    pub min: Point,
    pub max: Point,
}

impl Bounds {
    /// The smallest box holding `points` (an empty box at the origin without points).
    pub fn of(points: impl IntoIterator<Item = Point>) -> Self {
        let mut it = points.into_iter();
        let first = it.next().unwrap_or_default();
        it.fold(
            Self {
                min: first,
                max: first,
            },
            |b, p| Self {
                min: Point::new(b.min.x.min(p.x), b.min.y.min(p.y)),
                max: Point::new(b.max.x.max(p.x), b.max.y.max(p.y)),
            },
        )
    }

    /// The box grown by `margin` on every side.
    pub fn expand(self, margin: f32) -> Self {
        Self {
            min: Point::new(self.min.x - margin, self.min.y - margin),
            max: Point::new(self.max.x + margin, self.max.y + margin),
        }
    }

    pub fn width(self) -> f32 {
        self.max.x - self.min.x
    }

    pub fn height(self) -> f32 {
        self.max.y - self.min.y
    }

    pub fn center(self) -> Point {
        Point::new(
            (self.min.x + self.max.x) / 2.0,
            (self.min.y + self.max.y) / 2.0,
        )
    }
}

/// Vertical distance between the rows of consecutive layers.
pub const ROW: f32 = 1.0;

/// Where a node's label sits, so that the labels of one row never meet: attention blocks left
/// of the left column, MLPs right of the right one, `input` below and `logits` above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelSide {
    Left,
    Right,
    Below,
    Above,
}

impl LabelSide {
    /// The side of `node`'s label.
    pub fn of(node: Node) -> Self {
        match node {
            Node::Input => Self::Below,
            Node::Logits => Self::Above,
            Node::Attention { .. } => Self::Left,
            Node::Mlp { .. } => Self::Right,
        }
    }
}

/// The geometry of the layered layout of a graph of `layers` layers and `heads` attention
/// nodes a layer (1 at block level).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Layout {
    pub layers: usize,
    pub heads: usize,
    /// Half the distance between the attention and the MLP column.
    pub half_width: f32,
    /// Distance between neighbouring heads of one layer (0 at block level).
    pub head_step: f32,
    /// How far an edge within one column bows out per square root of the rows it spans.
    bulge: f32,
}

impl Layout {
    /// The layout of `layers` layers: wider the deeper the model, so that the drawing keeps a
    /// shape that fills a screen (about as wide as high, edges' bows included, at 32 layers).
    pub fn new(layers: usize, heads: usize) -> Self {
        let rows = (layers + 1) as f32;
        let half_width = (0.4 * rows).clamp(1.2, 14.0);
        let head_step = if heads > 1 {
            (1.4 * half_width / heads as f32).min(0.5)
        } else {
            0.0
        };
        Self {
            layers,
            heads,
            half_width,
            head_step,
            bulge: 1.6 * half_width / rows.sqrt(),
        }
    }

    /// The row of `node`: 0 for `input`, l + 1 for layer l, layers + 1 for `logits`.
    pub fn row(&self, node: Node) -> usize {
        match node {
            Node::Input => 0,
            Node::Attention { layer, .. } | Node::Mlp { layer } => layer + 1,
            Node::Logits => self.layers + 1,
        }
    }

    /// The centre of `node`. Heads of one layer lie side by side around the attention column,
    /// the last head outermost.
    pub fn position(&self, node: Node) -> Point {
        let y = -ROW * self.row(node) as f32;
        let x = match node {
            Node::Input | Node::Logits => 0.0,
            Node::Attention { head, .. } => {
                let middle = (self.heads as f32 - 1.0) / 2.0;
                let h = head.unwrap_or(0) as f32;
                -self.half_width - (h - middle) * self.head_step
            }
            Node::Mlp { .. } => self.half_width,
        };
        Point::new(x, y)
    }

    /// Half the distance between neighbouring nodes: the room a node and its ports have.
    pub fn node_spacing(&self) -> f32 {
        if self.heads > 1 {
            (self.head_step / 2.0).min(ROW / 2.0)
        } else {
            ROW / 2.0
        }
    }

    /// Distance of an attention node's ports from its centre.
    pub fn port_radius(&self) -> f32 {
        0.2 * self.node_spacing()
    }

    /// Where an edge into `dest` ends: the port of q, k or v on the lower half of its
    /// attention node, the centre of any other node.
    pub fn port(&self, dest: Destination) -> Point {
        let c = self.position(dest.node());
        let r = self.port_radius();
        // 30° below the horizontal on either side, and straight below.
        let side = 3f32.sqrt() / 2.0;
        let (dx, dy) = match dest.port() {
            Some(Port::Q) => (-side, 0.5),
            Some(Port::K) => (0.0, 1.0),
            Some(Port::V) => (side, 0.5),
            None => (0.0, 0.0),
        };
        Point::new(c.x + dx * r, c.y + dy * r)
    }

    /// The control point of the quadratic curve of an edge from `from` to `to` spanning
    /// `rows` rows: bowed outwards when both ends lie in one column, else the straight line's
    /// middle.
    pub fn control(&self, from: Point, to: Point, rows: usize) -> Point {
        let middle = Point::new((from.x + to.x) / 2.0, (from.y + to.y) / 2.0);
        let side = |x: f32| {
            if x.abs() < 1e-3 {
                0.0
            } else {
                x.signum()
            }
        };
        let column = side(from.x);
        if column == 0.0 || column != side(to.x) || rows == 0 {
            return middle;
        }
        let outer = if column < 0.0 {
            from.x.min(to.x)
        } else {
            from.x.max(to.x)
        };
        Point::new(outer + column * self.bulge * (rows as f32).sqrt(), middle.y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_run_from_input_to_logits_with_attention_left_of_its_mlp() {
        let l = Layout::new(32, 1);
        let pos = |s: &str| l.position(s.parse().unwrap());
        assert_eq!(pos("input").y, 0.0);
        assert_eq!(pos("a0").y, -ROW);
        assert_eq!(pos("a0").y, pos("m0").y);
        assert!(pos("a0").x < 0.0 && pos("m0").x > 0.0);
        assert_eq!(pos("logits").y, -33.0 * ROW);
        assert_eq!(pos("a31").x, pos("a0").x);
        // Heads side by side, the last one outermost.
        let h = Layout::new(4, 4);
        let head = |s: &str| h.position(s.parse().unwrap());
        assert!(head("a1.h3").x < head("a1.h0").x);
        assert_eq!(head("a1.h3").y, head("a1.h0").y);
    }

    #[test]
    fn ports_lie_below_their_node_and_apart() {
        let l = Layout::new(8, 1);
        let port = |s: &str| l.port(s.parse().unwrap());
        let a2 = l.position("a2".parse().unwrap());
        let (q, k, v) = (port("a2<q>"), port("a2<k>"), port("a2<v>"));
        assert!(q.x < k.x && k.x < v.x, "q left of k left of v");
        for p in [q, k, v] {
            assert!(p.y > a2.y, "ports on the lower side");
            assert!((p.distance(a2) - l.port_radius()).abs() < 1e-5);
        }
        assert_eq!(port("m2"), l.position("m2".parse().unwrap()));
    }

    #[test]
    fn edges_within_a_column_bow_out_more_the_further_they_reach() {
        let l = Layout::new(32, 1);
        let p = |s: &str| l.position(s.parse().unwrap());
        let near = l.control(p("a0"), p("a1"), 1);
        let far = l.control(p("a0"), p("a30"), 30);
        assert!(
            far.x < near.x && near.x < p("a0").x,
            "left column bows left"
        );
        let right = l.control(p("m0"), p("m5"), 5);
        assert!(right.x > p("m0").x, "right column bows right");
        // Across the columns: straight.
        let across = l.control(p("a0"), p("m3"), 3);
        assert_eq!(across, Point::new(0.0, (p("a0").y + p("m3").y) / 2.0));
    }
}
