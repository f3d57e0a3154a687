//! The circuit graph: a canvas with pan (drag), zoom (scroll or pinch, around the pointer) and
//! fit (double click); edges coloured by sign and sized by |score|; hover names an edge and its
//! scores in both models; a click selects a node and lists its edges.
//!
//! Level of detail: only the top-k edges are considered, edges outside the visible area are
//! culled, at most [`MAX_DRAWN`] are drawn (largest first), more than [`FINE_LIMIT`] are drawn
//! as one plain mesh, curves get fewer segments when they are short on screen, and node labels
//! appear only when there is room for them.

use super::super::theme::Palette;
use crate::node::{Node, NodeKind};
use crate::report::circuit::{Bounds, Circuit, CircuitEdge, EdgeSelection, LabelSide, Mode, Point};
use crate::report::layout::ROW;
use egui::{pos2, vec2, Color32, Mesh, Pos2, Rect, Sense, Shape, Stroke, Ui, Vec2};

/// Most edges drawn in one frame; the largest visible ones are kept.
pub const MAX_DRAWN: usize = 6000;

/// Up to this many edges are drawn as anti-aliased strokes; more as one mesh of plain quads
/// with fewer segments per curve (the software renderer's cost is in the triangles).
pub const FINE_LIMIT: usize = 1500;

/// Screen room kept free around the fitted drawing for the labels of its outermost nodes.
const LABEL_ROOM: Vec2 = vec2(30.0, 14.0);

/// Height a node label needs between rows, in points (11-point text and a gap).
const LABEL_HEIGHT: f32 = 15.0;

/// Pan, zoom and selection of one graph canvas.
#[derive(Debug, Clone, Default)]
pub struct GraphState {
    /// Screen pixels per layout unit; 0 until the first fit.
    pub zoom: f32,
    /// Screen position of the layout origin, relative to the canvas' top-left corner.
    pub offset: Vec2,
    /// The selected drawing node.
    pub selected: Option<usize>,
    /// Screen positions of the nodes in the last frame (for hit tests and UI tests).
    pub node_screen: Vec<Pos2>,
    /// Edges drawn in the last frame.
    pub drawn: usize,
    /// The edge under the pointer in the last frame.
    pub hovered: Option<u32>,
    /// The edge whose entry in the edge list is under the pointer (set by the list, drawn
    /// highlighted by the canvas in the same frame).
    pub list_hovered: Option<u32>,
    /// The edge drawn highlighted in the last frame (hovered on the canvas or in the list, or
    /// else the pinned one).
    pub highlighted: Option<u32>,
    /// The edge chosen in the heatmap or the edge list, highlighted until another choice.
    pub pinned: Option<u32>,
    /// Which nodes are drawn, and which are found by name.
    pub filter: NodeFilter,
    /// The node labels drawn in the last frame: drawing node and screen rectangle.
    pub labels: Vec<(usize, Rect)>,
    /// The arrowheads drawn in the last frame: edge and the screen point of its tip.
    pub arrows: Vec<(u32, Pos2)>,
    canvas: Option<Rect>,
}

/// Which nodes the graph draws (by layer range and kind; an edge is drawn when both its ends
/// are) and which it marks as found (by name).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeFilter {
    /// Text to find in node names (case-insensitive); empty finds nothing.
    pub query: String,
    /// First and last layer drawn (`input` and `logits` have no layer and pass).
    pub layers: [usize; 2],
    /// Kinds drawn, in [`NodeKind::ALL`] order.
    pub kinds: [bool; 4],
}

impl Default for NodeFilter {
    fn default() -> Self {
        Self {
            query: String::new(),
            layers: [0, usize::MAX],
            kinds: [true; 4],
        }
    }
}

impl NodeFilter {
    /// Whether `node` is drawn.
    pub fn passes(&self, node: Node) -> bool {
        let kind = NodeKind::ALL.iter().position(|&k| k == node.kind());
        kind.is_some_and(|k| self.kinds[k])
            && node
                .layer()
                .is_none_or(|l| (self.layers[0]..=self.layers[1]).contains(&l))
    }

    /// Whether `node`'s name contains the query.
    pub fn finds(&self, node: Node) -> bool {
        let query = self.query.trim().to_lowercase();
        !query.is_empty() && node.to_string().to_lowercase().contains(&query)
    }

    /// Whether anything is hidden.
    pub fn hides(&self, layers: usize) -> bool {
        self.kinds.contains(&false) || self.layers[0] > 0 || self.layers[1] + 1 < layers
    }

    /// The drawing node the query names: the exact name, else the first node found.
    pub fn first_found(&self, circuit: &Circuit) -> Option<usize> {
        let query = self.query.trim().to_lowercase();
        circuit
            .nodes
            .iter()
            .position(|n| n.node.to_string().to_lowercase() == query)
            .or_else(|| circuit.nodes.iter().position(|n| self.finds(n.node)))
    }
}

impl GraphState {
    /// Fit the nodes and the middle of the curves of `shown` (edges drawn) into `canvas`.
    fn fit(&mut self, circuit: &Circuit, shown: &[u32], canvas: Rect) {
        let middles = shown
            .iter()
            .take(FINE_LIMIT)
            .map(|&e| circuit.edges[e as usize].at(0.5));
        let b = Bounds::of(
            [circuit.bounds().min, circuit.bounds().max]
                .into_iter()
                .chain(middles),
        )
        .expand(0.2);
        // Room for the labels beside the outermost nodes and above and below the ends.
        let inner = canvas.shrink2(LABEL_ROOM);
        let zoom = (inner.width() / b.width()).min(inner.height() / b.height());
        self.zoom = zoom.max(1e-3);
        self.offset = canvas.size() / 2.0 - vec2(b.center().x, b.center().y) * self.zoom;
        self.canvas = Some(canvas);
    }

    /// The canvas' screen rectangle in the last frame.
    pub fn canvas(&self) -> Option<Rect> {
        self.canvas
    }

    fn origin(&self) -> Pos2 {
        self.canvas.map_or(Pos2::ZERO, |c| c.min)
    }

    /// The screen position of a layout position.
    pub fn to_screen(&self, p: Point) -> Pos2 {
        self.origin() + self.offset + vec2(p.x, p.y) * self.zoom
    }

    fn to_layout(&self, p: Pos2) -> Pos2 {
        ((p - self.origin() - self.offset) / self.zoom).to_pos2()
    }

    /// Select drawing node `node` and move it to the middle of the canvas.
    pub fn select_and_centre(&mut self, circuit: &Circuit, node: usize) {
        self.selected = Some(node);
        self.pinned = None;
        if let (Some(canvas), Some(n)) = (self.canvas, circuit.nodes.get(node)) {
            self.offset = canvas.size() / 2.0 - vec2(n.pos.x, n.pos.y) * self.zoom;
        }
    }
}

fn rect(b: Bounds) -> Rect {
    Rect::from_min_max(pos2(b.min.x, b.min.y), pos2(b.max.x, b.max.y))
}

fn segment_distance(p: Pos2, a: Pos2, b: Pos2) -> f32 {
    let ab = b - a;
    let t = ((p - a).dot(ab) / ab.length_sq().max(1e-6)).clamp(0.0, 1.0);
    p.distance(a + ab * t)
}

/// Append a polyline as one quad per segment (no joins, no anti-aliasing).
fn add_quads(mesh: &mut Mesh, points: &[Pos2], width: f32, color: egui::Color32) {
    for w in points.windows(2) {
        let n = (w[1] - w[0]).normalized().rot90() * (width / 2.0);
        let i = mesh.vertices.len() as u32;
        for p in [w[0] + n, w[0] - n, w[1] + n, w[1] - n] {
            mesh.colored_vertex(p, color);
        }
        mesh.add_triangle(i, i + 1, i + 2);
        mesh.add_triangle(i + 1, i + 3, i + 2);
    }
}

/// The top-k slider; `k` is clamped to the number of edges. Beside it, what the drawn edges
/// hold: their share of the total |score|, and how many edges the default share (80 %) takes
/// when fewer are drawn.
pub fn top_k_ui(ui: &mut Ui, circuit: &Circuit, mode: Mode, k: &mut usize) {
    let n = circuit.edges.len().max(1);
    *k = (*k).clamp(1, n);
    let slider = ui.add(
        egui::Slider::new(k, 1..=n)
            .logarithmic(true)
            .text("top-k edges"),
    );
    if let (Some(v), Some(&e)) = (
        circuit.values(mode),
        circuit.order(mode).get(k.saturating_sub(1)),
    ) {
        slider.on_hover_text(format!(
            "the edges of largest |score| are drawn, down to |score| = {:.3e}",
            v[e as usize].abs()
        ));
    }
    ui.label(share_line(circuit, mode, *k, true));
}

/// "showing 100 of 4193 edges, 26 % of the |score| mass; 80 % takes 1460 edges", and ": slide
/// for more" beside a `slider`.
pub fn share_line(circuit: &Circuit, mode: Mode, k: usize, slider: bool) -> String {
    let n = circuit.edges.len();
    if circuit.share(mode, n) == 0.0 {
        return format!("showing {} of {n} edges; every score is 0", k.min(n));
    }
    let share = circuit.share(mode, k);
    let mut line = format!(
        "showing {} of {n} edges, {:.0} % of |score| mass",
        k.min(n),
        100.0 * share
    );
    let target = EdgeSelection::default().share;
    if share < target {
        let need = circuit.edges_for_share(mode, target);
        line += &format!("; {:.0} % takes {need} edges", 100.0 * target);
        if slider {
            line += ": slide for more";
        }
    }
    line
}

/// Find a node by name (Enter selects it and moves it to the middle), and filter the drawn
/// nodes by layer range and kind.
pub fn filter_ui(ui: &mut Ui, circuit: &Circuit, state: &mut GraphState) {
    let layers = circuit.graph.layers;
    let last = layers.saturating_sub(1);
    let filter = &mut state.filter;
    filter.layers[1] = filter.layers[1].min(last);
    filter.layers[0] = filter.layers[0].min(filter.layers[1]);
    let label = ui.label("Find");
    let find = ui
        .add(
            egui::TextEdit::singleline(&mut filter.query)
                .hint_text("a3, m12, a3.h5")
                .desired_width(110.0),
        )
        .labelled_by(label.id)
        .on_hover_text("type part of a node's name; Enter selects the first match");
    let entered = find.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
    let found = circuit
        .nodes
        .iter()
        .filter(|n| filter.finds(n.node))
        .count();
    if !filter.query.trim().is_empty() {
        ui.label(format!("{found} found"));
    }
    ui.label("layer range");
    let [from, to] = &mut filter.layers;
    ui.add(egui::DragValue::new(from).range(0..=*to))
        .on_hover_text("first layer drawn");
    ui.add(egui::DragValue::new(to).range(*from..=last))
        .on_hover_text("last layer drawn");
    for (kind, shown) in NodeKind::ALL.iter().zip(&mut filter.kinds) {
        ui.checkbox(shown, kind.label())
            .on_hover_text(format!("draw {} nodes and their edges", kind.label()));
    }
    if filter.hides(layers) && ui.small_button("Show all").clicked() {
        let query = std::mem::take(&mut filter.query);
        *filter = NodeFilter {
            query,
            ..NodeFilter::default()
        };
    }
    if entered {
        if let Some(n) = state.filter.first_found(circuit) {
            state.select_and_centre(circuit, n);
        }
    }
}

/// Draw the canvas filling the available space. Returns the hovered edge.
pub fn canvas_ui(
    ui: &mut Ui,
    circuit: &Circuit,
    mode: Mode,
    top_k: usize,
    state: &mut GraphState,
) -> Option<u32> {
    let palette = Palette::of(ui.ctx());
    let (response, painter) = ui.allocate_painter(ui.available_size(), Sense::click_and_drag());
    let canvas = response.rect;
    let order = circuit.order(mode);
    let shown = &order[..top_k.min(order.len())];
    if state.zoom <= 0.0 || state.canvas.map(|c| c.size()) != Some(canvas.size()) {
        state.fit(circuit, shown, canvas);
    }
    state.canvas = Some(canvas);
    navigate(ui, &response, (circuit, shown), state);

    let Some(values) = circuit.values(mode) else {
        painter.text(
            canvas.center(),
            egui::Align2::CENTER_CENTER,
            "no scores for this mode",
            egui::FontId::proportional(14.0),
            palette.node(),
        );
        return None;
    };
    let pointer = response.hover_pos();
    let hovered = draw_edges(
        &painter,
        palette,
        circuit,
        (values, circuit.order(mode)),
        top_k,
        state,
        pointer,
    );
    let drawn = state.drawn;

    let hovered_node = draw_nodes(&painter, palette, circuit, state, pointer);
    if response.clicked() {
        state.selected = hovered_node;
        state.pinned = None;
    }
    let hovered_edge = if hovered_node.is_some() {
        None
    } else {
        hovered.map(|h| h.0)
    };
    state.highlighted = state.list_hovered.take().or(hovered_edge).or(state.pinned);
    if let Some(e) = state.highlighted {
        let edge = &circuit.edges[e as usize];
        let mut pts: Vec<Pos2> = (0..=16)
            .map(|i| state.to_screen(edge.at(i as f32 / 16.0)))
            .collect();
        let (tip, dir) = arrow(circuit, edge, state, node_radius(circuit, state.zoom));
        if let Some(end) = pts.last_mut() {
            *end = tip;
        }
        painter.add(Shape::line(pts, Stroke::new(2.5, palette.highlight())));
        let head = arrowhead(tip, dir, 2.5).to_vec();
        painter.add(Shape::convex_polygon(
            head,
            palette.highlight(),
            Stroke::NONE,
        ));
    }
    if drawn == MAX_DRAWN {
        painter.text(
            canvas.left_bottom() + vec2(6.0, -6.0),
            egui::Align2::LEFT_BOTTOM,
            format!("drawing the {MAX_DRAWN} largest visible edges; zoom in for more"),
            egui::FontId::proportional(12.0),
            palette.node(),
        );
    }
    state.hovered = hovered_edge;
    if let Some(i) = hovered_node {
        let name = circuit.nodes[i].node;
        response.on_hover_text_at_pointer(format!("{name} (click to list its edges)"));
    } else if let Some(e) = hovered_edge {
        response.on_hover_ui_at_pointer(|ui| edge_tooltip_ui(ui, circuit, e));
    }
    hovered_edge
}

/// Pan (drag), zoom around the pointer (scroll or pinch) and fit (double click).
fn navigate(
    ui: &Ui,
    response: &egui::Response,
    (circuit, shown): (&Circuit, &[u32]),
    state: &mut GraphState,
) {
    let canvas = response.rect;
    if response.dragged() {
        state.offset += response.drag_delta();
    }
    if response.hovered() {
        let (pinch, scroll) = ui.input(|i| (i.zoom_delta(), i.smooth_scroll_delta.y));
        let factor = pinch * (scroll * 0.003).exp();
        if (factor - 1.0).abs() > 1e-4 {
            if let Some(p) = response.hover_pos() {
                let anchor = state.to_layout(p);
                state.zoom = (state.zoom * factor).clamp(1e-2, 1e5);
                state.offset = p - canvas.min - anchor.to_vec2() * state.zoom;
            }
        }
    }
    if response.double_clicked() {
        state.fit(circuit, shown, canvas);
    }
}

/// Fill `points` with the screen polyline of `edge` ending at its arrowhead's tip (fewer
/// segments when `coarse`); returns the tip and the direction the arrowhead points.
fn polyline(
    circuit: &Circuit,
    edge: &CircuitEdge,
    (state, radius, coarse): (&GraphState, f32, bool),
    points: &mut Vec<Pos2>,
) -> (Pos2, Vec2) {
    let length = (edge.ctrl.distance(edge.from) + edge.to.distance(edge.ctrl)) * state.zoom;
    // A straight edge needs one segment, a bowed one more the longer it is.
    let segments = if edge.ctrl.distance(edge.at(0.5)) < 1e-3 {
        1.0
    } else if coarse {
        (length / 40.0).clamp(2.0, 8.0)
    } else {
        (length / 16.0).clamp(2.0, 24.0)
    } as usize;
    points.clear();
    points.extend((0..=segments).map(|i| state.to_screen(edge.at(i as f32 / segments as f32))));
    let (tip, dir) = arrow(circuit, edge, state, radius);
    if let Some(end) = points.last_mut() {
        *end = tip;
    }
    (tip, dir)
}

/// Draw the top-k visible edges, largest on top; returns the edge under the pointer with its
/// distance.
fn draw_edges(
    painter: &egui::Painter,
    palette: Palette,
    circuit: &Circuit,
    (values, order): (&[f32], &[u32]),
    top_k: usize,
    state: &mut GraphState,
    pointer: Option<Pos2>,
) -> Option<(u32, f32)> {
    let max = order
        .first()
        .map_or(1.0, |&e| values[e as usize].abs())
        .max(f32::MIN_POSITIVE);
    let canvas = state.canvas.unwrap_or(Rect::ZERO);
    let visible =
        Rect::from_min_max(state.to_layout(canvas.min), state.to_layout(canvas.max)).expand(0.5);
    let mut ids = Vec::new();
    for &e in order.iter().take(top_k) {
        if ids.len() >= MAX_DRAWN {
            break;
        }
        let edge = &circuit.edges[e as usize];
        let shown = |n: u32| state.filter.passes(circuit.nodes[n as usize].node);
        if shown(edge.from_node) && shown(edge.to_node) && visible.intersects(rect(edge.bounds())) {
            ids.push(e);
        }
    }
    let coarse = ids.len() > FINE_LIMIT;
    let radius = node_radius(circuit, state.zoom);
    state.arrows.clear();
    let mut hovered: Option<(u32, f32)> = None;
    let mut shapes = Vec::new();
    let mut mesh = Mesh::default();
    let mut points = Vec::with_capacity(16);
    // Smallest first, so that the largest edges lie on top; with a node selected, its edges
    // come forward and the others fade.
    let touches = |e: u32| {
        let edge = &circuit.edges[e as usize];
        state
            .selected
            .is_none_or(|n| edge.from_node as usize == n || edge.to_node as usize == n)
    };
    ids.reverse();
    ids.sort_by_key(|&e| touches(e));
    for &e in &ids {
        let edge = &circuit.edges[e as usize];
        let v = values[e as usize];
        let t = v.abs() / max;
        let width = 0.4 + 3.6 * t;
        let base = if v >= 0.0 {
            palette.positive()
        } else {
            palette.negative()
        };
        let fade = if touches(e) { 1.0 } else { 0.12 };
        let color = base.gamma_multiply((0.25 + 0.75 * t) * fade);
        let (tip, dir) = polyline(circuit, edge, (state, radius, coarse), &mut points);
        if let Some(p) = pointer {
            let d = points
                .windows(2)
                .map(|w| segment_distance(p, w[0], w[1]))
                .fold(f32::INFINITY, f32::min);
            if d < 5.0 && hovered.is_none_or(|h| d < h.1) {
                hovered = Some((e, d));
            }
        }
        let head = arrowhead(tip, dir, width);
        state.arrows.push((e, tip));
        if coarse {
            add_quads(&mut mesh, &points, width.max(1.0), color);
            let i = mesh.vertices.len() as u32;
            for p in head {
                mesh.colored_vertex(p, color);
            }
            mesh.add_triangle(i, i + 1, i + 2);
        } else {
            shapes.push(Shape::line(points.clone(), Stroke::new(width, color)));
            shapes.push(Shape::convex_polygon(head.to_vec(), color, Stroke::NONE));
        }
    }
    state.drawn = ids.len();
    if coarse {
        painter.add(Shape::mesh(mesh));
    } else {
        painter.extend(shapes);
    }
    hovered
}

/// A node's radius on screen at `zoom`.
fn node_radius(circuit: &Circuit, zoom: f32) -> f32 {
    (zoom * circuit.node_spacing * 0.6).clamp(1.5, 9.0)
}

/// The tip of an edge's arrowhead and the direction it points, on screen: on the rim of the
/// destination node, where its port is for an attention input (q at the lower left, k below,
/// v at the lower right), where the curve arrives for any other.
fn arrow(circuit: &Circuit, edge: &CircuitEdge, state: &GraphState, radius: f32) -> (Pos2, Vec2) {
    let node = circuit.nodes[edge.to_node as usize].pos;
    let centre = state.to_screen(node);
    let back = state.to_screen(if edge.ctrl.distance(edge.to) > 1e-4 {
        edge.ctrl
    } else {
        edge.from
    });
    let rim = radius + 1.5;
    let port = edge.to.distance(node) > 1e-4;
    let tip = if port {
        let out = vec2(edge.to.x - node.x, edge.to.y - node.y).normalized();
        centre + out * rim
    } else {
        centre - (centre - back).normalized() * rim
    };
    (tip, (tip - back).normalized())
}

/// The triangle of an arrowhead at `tip` pointing along `dir`, sized to a line `width` wide.
fn arrowhead(tip: Pos2, dir: Vec2, width: f32) -> [Pos2; 3] {
    let len = (5.0 + 1.5 * width).min(13.0);
    let base = tip - dir * len;
    let side = dir.rot90() * (len * 0.45);
    [tip, base + side, base - side]
}

/// Which nodes are labelled at the present zoom: every `layers`-th layer (so that labels of
/// neighbouring rows never meet; `input` and `logits` always), each head or only the outermost
/// head of each block at head level.
#[derive(Debug, Clone, Copy)]
struct LabelRule {
    layers: usize,
    heads: bool,
}

impl LabelRule {
    fn at(circuit: &Circuit, zoom: f32) -> Self {
        let row = (zoom * ROW).max(1e-3);
        Self {
            layers: (LABEL_HEIGHT / row).ceil().max(1.0) as usize,
            // A head's label ("a12.h3") needs about 40 points between neighbouring heads.
            heads: zoom * circuit.layout.head_step > 40.0,
        }
    }

    fn label(self, circuit: &Circuit, i: usize) -> Option<String> {
        let node = circuit.nodes[i].node;
        if node.layer().is_some_and(|l| l % self.layers != 0) {
            return None;
        }
        if circuit.heads > 1 && !self.heads {
            return circuit.block_label(i);
        }
        Some(node.to_string())
    }
}

/// Draw `label` beside the node at `p` on its side, over a faint backing that keeps it
/// readable over edges; returns its rectangle.
fn draw_label(
    painter: &egui::Painter,
    palette: Palette,
    (p, radius): (Pos2, f32),
    side: LabelSide,
    label: String,
) -> Rect {
    let gap = radius + 3.0;
    let (at, align) = match side {
        LabelSide::Left => (p - vec2(gap, 0.0), egui::Align2::RIGHT_CENTER),
        LabelSide::Right => (p + vec2(gap, 0.0), egui::Align2::LEFT_CENTER),
        LabelSide::Below => (p + vec2(0.0, gap), egui::Align2::CENTER_TOP),
        LabelSide::Above => (p - vec2(0.0, gap), egui::Align2::CENTER_BOTTOM),
    };
    let galley = painter.layout_no_wrap(label, egui::FontId::proportional(11.0), palette.node());
    let rect = align.anchor_size(at, galley.size());
    let backing = if palette.dark {
        Color32::from_black_alpha(150)
    } else {
        Color32::from_white_alpha(190)
    };
    painter.rect_filled(rect.expand(1.0), 2.0, backing);
    painter.galley(rect.min, galley, palette.node());
    rect
}

/// The letters q, k and v at the ports of an attention node, when there is room for them.
fn draw_ports(
    painter: &egui::Painter,
    palette: Palette,
    (circuit, state): (&Circuit, &GraphState),
    node: Node,
    radius: f32,
) {
    let Node::Attention { layer, head } = node else {
        return;
    };
    for port in crate::node::Port::ALL {
        let dest = crate::node::Destination::Attention { layer, head, port };
        let (at, centre) = (circuit.layout.port(dest), circuit.layout.position(node));
        // Turned downwards, clear of the label beside the node.
        let out =
            (vec2(at.x - centre.x, at.y - centre.y).normalized() + vec2(0.0, 0.8)).normalized();
        painter.text(
            state.to_screen(centre) + out * (radius + 8.0),
            egui::Align2::CENTER_CENTER,
            port.letter(),
            egui::FontId::proportional(9.0),
            palette.node().gamma_multiply(0.8),
        );
    }
}

/// Draw the nodes (labels where there is room); returns the node under the pointer.
fn draw_nodes(
    painter: &egui::Painter,
    palette: Palette,
    circuit: &Circuit,
    state: &mut GraphState,
    pointer: Option<Pos2>,
) -> Option<usize> {
    let radius = node_radius(circuit, state.zoom);
    let rule = LabelRule::at(circuit, state.zoom);
    // The ports' letters need room between the node and the next row.
    let ports = state.zoom * ROW > 4.0 * radius + 24.0;
    state.node_screen = circuit
        .nodes
        .iter()
        .map(|n| state.to_screen(n.pos))
        .collect();
    let canvas = state.canvas.unwrap_or(Rect::ZERO);
    let mut hovered_node = None;
    let mut labels = Vec::new();
    for (i, (node, &p)) in circuit.nodes.iter().zip(&state.node_screen).enumerate() {
        if !canvas.expand(radius).contains(p) || !state.filter.passes(node.node) {
            continue;
        }
        let selected = state.selected == Some(i);
        let found = state.filter.finds(node.node);
        let fill = if selected {
            palette.highlight()
        } else {
            palette.node()
        };
        painter.circle_filled(p, radius, fill);
        if found {
            painter.circle_stroke(p, radius + 3.0, Stroke::new(2.0, palette.highlight()));
        }
        if ports {
            draw_ports(painter, palette, (circuit, state), node.node, radius);
        }
        let label = if selected || found {
            Some(node.node.to_string())
        } else {
            rule.label(circuit, i)
        };
        if let Some(label) = label {
            let side = LabelSide::of(node.node);
            labels.push((i, draw_label(painter, palette, (p, radius), side, label)));
        }
        if pointer.is_some_and(|q| q.distance(p) <= radius + 3.0) {
            hovered_node = Some(i);
        }
    }
    state.labels = labels;
    hovered_node
}

fn edge_tooltip_ui(ui: &mut Ui, circuit: &Circuit, e: u32) {
    ui.strong(circuit.edge_name(e));
    for mode in Mode::ALL {
        if let Some(v) = circuit.values(mode) {
            let v = v[e as usize];
            let what = if mode.is_change() {
                format!(" ({})", mode.describe(v))
            } else {
                String::new()
            };
            ui.label(format!("{}: {v:+.4e}{what}", mode.label()));
        }
    }
}

/// The incoming and outgoing edges of the selected node, sorted by score.
pub fn node_edges_ui(ui: &mut Ui, circuit: &Circuit, mode: Mode, state: &mut GraphState) {
    let Some(node) = state.selected.filter(|&n| n < circuit.nodes.len()) else {
        ui.label("Click a node to list its edges");
        return;
    };
    let Some(values) = circuit.values(mode) else {
        return;
    };
    let name = circuit.nodes[node].node;
    let (incoming, outgoing) = circuit.edges_of(node, mode);
    ui.horizontal(|ui| {
        ui.strong(name.to_string());
        if ui.small_button("Clear").clicked() {
            state.selected = None;
            state.pinned = None;
        }
    });
    if let Some(e) = state.pinned {
        ui.label(format!(
            "Pinned edge {}: {:+.3e} (click it again to unpin)",
            circuit.edge_name(e),
            values[e as usize]
        ));
    }
    if mode.is_change() {
        let [up, down] = mode.legend();
        ui.label(format!("{}: + {up}, − {down}", mode.quantity()));
    }
    let row_height = ui.text_style_height(&egui::TextStyle::Body) + 2.0;
    for (title, list, id) in [
        ("Incoming", &incoming, "incoming"),
        ("Outgoing", &outgoing, "outgoing"),
    ] {
        ui.label(format!("{title} edges of {name} ({})", list.len()));
        egui::ScrollArea::vertical()
            .id_salt(id)
            .max_height(ui.available_height() / 2.0 - 20.0)
            .auto_shrink([false, true])
            .show_rows(ui, row_height, list.len(), |ui, rows| {
                for &e in &list[rows] {
                    let v = values[e as usize];
                    let row = ui.horizontal(|ui| {
                        ui.monospace(format!("{v:+.3e}"));
                        let name = circuit.edge_name(e);
                        if state.pinned == Some(e) {
                            ui.strong(name);
                        } else {
                            ui.label(name);
                        }
                    });
                    let row = row.response.interact(Sense::click());
                    if row.contains_pointer() {
                        state.list_hovered = Some(e);
                    }
                    if row.clicked() {
                        state.pinned = (state.pinned != Some(e)).then_some(e);
                    }
                }
            });
    }
}

/// A small legend: what the colour of a positive and of a negative value means in `mode`.
pub fn legend_ui(ui: &mut Ui, mode: Mode) {
    let palette = Palette::of(ui.ctx());
    let [up, down] = mode.legend();
    for (text, color) in [(up, palette.positive()), (down, palette.negative())] {
        let (rect, _) = ui.allocate_exact_size(vec2(18.0, 10.0), Sense::hover());
        ui.painter().line_segment(
            [
                pos2(rect.left(), rect.center().y),
                pos2(rect.right(), rect.center().y),
            ],
            Stroke::new(3.0, color),
        );
        ui.label(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::{Graph, Level};
    use crate::model::ModelConfig;

    #[test]
    fn the_share_line_says_what_is_drawn_and_what_the_default_share_takes() {
        let graph = Graph::new(
            &ModelConfig::llama(64, 64, 128, 3, (4, 4), 64),
            Level::Block,
        );
        let n = graph.num_edges();
        // Values 1..=n: the top 2 hold (2n − 1) / (n (n + 1) / 2) of the mass.
        let values: Vec<f32> = (1..=n).map(|i| i as f32).collect();
        let c = Circuit::new(&graph, values, None);
        let share = 100.0 * (2 * n - 1) as f64 / (n * (n + 1) / 2) as f64;
        let need = c.edges_for_share(Mode::Base, 0.8);
        assert_eq!(
            share_line(&c, Mode::Base, 2, true),
            format!(
                "showing 2 of {n} edges, {share:.0} % of |score| mass; 80 % takes {need} edges: \
                 slide for more"
            )
        );
        assert!(!share_line(&c, Mode::Base, 2, false).contains("slide"));
        assert_eq!(
            share_line(&c, Mode::Base, n, true),
            format!("showing {n} of {n} edges, 100 % of |score| mass")
        );
        let zero = Circuit::new(&graph, vec![0.0; n], None);
        assert_eq!(
            share_line(&zero, Mode::Base, 2, true),
            format!("showing 2 of {n} edges; every score is 0")
        );
    }
}
