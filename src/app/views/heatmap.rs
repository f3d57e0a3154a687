//! The heatmap of the mean score matrix (the study's figure): x = source, y = destination, both
//! named (labels thinned to fit, each on its cell's centre); diverging colours symmetric around
//! 0 with a colour bar, base and tuned on one scale (optionally fixed across studies), non-edges
//! in a colour that is on no point of the scale. Linked with the graph: the selected node's row
//! and columns are outlined, and a click on a cell selects its source node and pins its edge.
//! Drawn as one texture, so head-level matrices stay cheap.

use super::super::results::Results;
use super::super::theme::Palette;
use super::graph::GraphState;
use crate::report::circuit::{Circuit, Mode};
use crate::report::figures::Heatmap;
use egui::{vec2, Color32, ColorImage, Sense, Stroke, TextureHandle, TextureOptions, Ui};
use egui_plot::{AxisHints, GridInput, GridMark, Line, Plot, PlotImage, PlotPoint, PlotPoints};

/// Colour-scale limits fixed by the user (so that studies compare), or `None` for the study's
/// own: one for the scores of base and tuned, one for differences.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct FixedScale {
    pub scores: Option<f32>,
    pub difference: Option<f32>,
}

impl FixedScale {
    /// The fixed saturation value for `mode`, if any.
    pub fn range(self, mode: Mode) -> Option<f32> {
        match mode {
            Mode::Difference | Mode::ImportanceChange => self.difference,
            Mode::Base | Mode::Tuned => self.scores,
        }
    }

    fn of(&mut self, mode: Mode) -> &mut Option<f32> {
        match mode {
            Mode::Difference | Mode::ImportanceChange => &mut self.difference,
            Mode::Base | Mode::Tuned => &mut self.scores,
        }
    }
}

/// The texture of the shown heatmap, rebuilt when the heatmap, its scale or the theme changes.
#[derive(Default)]
pub struct HeatmapState {
    texture: Option<(Mode, bool, u32, TextureHandle)>,
    /// Screen rectangle of the matrix in the last frame (sources left to right, destinations
    /// bottom to top), for hit tests in UI tests.
    pub matrix: Option<egui::Rect>,
}

/// Width of the colour bar column, in points.
const BAR_WIDTH: f32 = 100.0;

fn image(map: &Heatmap, range: f32, palette: Palette) -> ColorImage {
    let (ns, nd) = (map.rows.len(), map.cols.len());
    let mut pixels = vec![Color32::TRANSPARENT; ns * nd];
    for s in 0..ns {
        for d in 0..nd {
            let i = s * nd + d;
            // Texture rows run top to bottom; destination 0 is at the bottom of the plot.
            pixels[(nd - 1 - d) * ns + s] = if map.mask[i] {
                palette.diverging(map.values[i], range)
            } else {
                palette.structural()
            };
        }
    }
    ColorImage::new([ns, nd], pixels)
}

/// Grid marks on cell centres, every `step`-th cell so that labels are at least `gap` points
/// apart.
fn cell_marks(input: GridInput, n: usize, gap: f64) -> Vec<GridMark> {
    // egui_plot's base step is the plot distance of its minimum grid spacing (8 points).
    let units_per_point = input.base_step_size / 8.0;
    let step = ((gap * units_per_point).ceil() as usize).max(1);
    (0..n)
        .step_by(step)
        .map(|i| GridMark {
            value: i as f64 + 0.5,
            step_size: step as f64,
        })
        .collect()
}

/// The name of the cell whose centre is at `value`, or nothing between centres.
fn cell_name(names: &[String], value: f64) -> String {
    let i = value - 0.5;
    if i.fract().abs() > 1e-6 || i < 0.0 {
        return String::new();
    }
    names.get(i as usize).cloned().unwrap_or_default()
}

/// The edge of the graph from source `s` to destination `d`, if there is one.
fn edge_of(circuit: &Circuit, s: usize, d: usize) -> Option<u32> {
    circuit
        .edges
        .iter()
        .position(|e| e.source as usize == s && e.destination as usize == d)
        .map(|e| e as u32)
}

/// The heatmap of `mode` (base, tuned or tuned − base), linked to the graph's selection.
pub fn heatmap_ui(
    ui: &mut Ui,
    results: &Results,
    mode: Mode,
    fixed: &mut FixedScale,
    (state, graph): (&mut HeatmapState, &mut GraphState),
) {
    let index = Mode::ALL.iter().position(|&m| m == mode).unwrap_or(0);
    let Some(map) = results.figures.heatmaps.get(index) else {
        ui.label("These results hold one run: only the base heatmap exists");
        return;
    };
    let palette = Palette::of(ui.ctx());
    scale_ui(ui, map, mode, fixed);
    let range = fixed.of(mode).unwrap_or(map.range).max(f32::MIN_POSITIVE);
    let fresh = matches!(&state.texture,
        Some((m, dark, r, _)) if *m == mode && *dark == palette.dark && *r == range.to_bits());
    if !fresh {
        let texture = ui.ctx().load_texture(
            format!("heatmap-{index}"),
            image(map, range, palette),
            TextureOptions::NEAREST,
        );
        state.texture = Some((mode, palette.dark, range.to_bits(), texture));
    }
    let Some((_, _, _, texture)) = &state.texture else {
        return;
    };
    if mode.is_change() {
        let [up, down] = mode.legend();
        ui.label(format!("{}: + {up}, − {down}", mode.quantity()));
    }
    selection_line(ui, &results.circuit, graph);
    let circuit = &results.circuit;
    let (ns, nd) = (map.rows.len(), map.cols.len());
    // The size is taken outside the row: a horizontal layout's own height follows its content.
    let size = ui.available_size();
    let response = ui
        .horizontal(|ui| {
            // The row puts its item spacing between the plot and the bar.
            let gap = ui.spacing().item_spacing.x;
            let plot = vec2((size.x - BAR_WIDTH - gap).max(100.0), size.y);
            let response = matrix_ui(ui, map, (texture, plot), circuit, graph, palette);
            colour_bar_ui(ui, mode, range, size.y, palette);
            response
        })
        .inner;
    let (pointer, matrix) = response.inner;
    state.matrix = Some(matrix);
    let Some(p) = pointer else {
        return;
    };
    let (s, d) = (p.x.floor(), p.y.floor());
    if s < 0.0 || d < 0.0 || s as usize >= ns || d as usize >= nd {
        return;
    }
    let (s, d) = (s as usize, d as usize);
    let i = s * nd + d;
    let edge = edge_of(circuit, s, d).filter(|_| map.mask[i]);
    let clicked = response.response.clicked();
    let text = if edge.is_some() {
        let v = map.values[i];
        let what = if mode.is_change() {
            format!(", {}", mode.describe(v))
        } else {
            String::new()
        };
        format!(
            "{}->{}: {v:+.4e}{what} (click to select {} in the graph and pin this edge)",
            map.rows[s], map.cols[d], map.rows[s]
        )
    } else {
        format!("{} does not feed {}", map.rows[s], map.cols[d])
    };
    response.response.on_hover_text_at_pointer(text);
    if clicked {
        if let Some(e) = edge {
            graph.selected = Some(s);
            graph.pinned = Some(e);
        }
    }
}

/// The matrix as a plot with named axes, the selected node's column and rows and the pinned
/// edge outlined; returns the pointer's plot position and the matrix's screen rectangle.
fn matrix_ui(
    ui: &mut Ui,
    map: &Heatmap,
    (texture, size): (&TextureHandle, egui::Vec2),
    circuit: &Circuit,
    graph: &GraphState,
    palette: Palette,
) -> egui_plot::PlotResponse<(Option<PlotPoint>, egui::Rect)> {
    let (ns, nd) = (map.rows.len(), map.cols.len());
    let selected = graph
        .selected
        .and_then(|i| circuit.nodes.get(i))
        .map(|n| n.node);
    let pinned = graph.pinned.map(|e| circuit.edges[e as usize]);
    let highlight = palette.highlight();
    Plot::new("heatmap")
        .width(size.x)
        .height(size.y)
        .custom_x_axes(vec![AxisHints::new_x()
            .label("source (writes to the residual stream)")
            .formatter(|m, _| cell_name(&map.rows, m.value))
            .tick_label_font(egui::FontId::proportional(11.0))
            .label_spacing(30.0..=32.0)])
        .custom_y_axes(vec![AxisHints::new_y()
            .label("destination (reads from it)")
            .formatter(|m, _| cell_name(&map.cols, m.value))
            .tick_label_font(egui::FontId::proportional(11.0))
            .label_spacing(14.0..=15.0)
            .min_thickness(64.0)])
        .x_grid_spacer(move |input| cell_marks(input, ns, 30.0))
        .y_grid_spacer(move |input| cell_marks(input, nd, 15.0))
        .show_grid(false)
        .allow_scroll(false)
        .label_formatter(|_| None)
        .show(ui, |plot_ui| {
            plot_ui.image(PlotImage::new(
                "scores",
                texture.id(),
                PlotPoint::new(ns as f64 / 2.0, nd as f64 / 2.0),
                [ns as f32, nd as f32],
            ));
            let outline = |name: &str, [x0, x1, y0, y1]: [f64; 4], width: f32| {
                Line::new(
                    name.to_owned(),
                    PlotPoints::from(vec![[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]),
                )
                .stroke(Stroke::new(width, highlight))
            };
            if let Some(node) = selected {
                if let Some(s) = circuit.graph.sources.iter().position(|&n| n == node) {
                    let x = s as f64;
                    plot_ui.line(outline("as a source", [x, x + 1.0, 0.0, nd as f64], 1.5));
                }
                for (d, dest) in circuit.graph.destinations.iter().enumerate() {
                    if dest.node() == node {
                        let y = d as f64;
                        let cols = [0.0, ns as f64, y, y + 1.0];
                        plot_ui.line(outline("as a destination", cols, 1.5));
                    }
                }
            }
            if let Some(e) = pinned {
                let (x, y) = (f64::from(e.source), f64::from(e.destination));
                plot_ui.line(outline("pinned edge", [x, x + 1.0, y, y + 1.0], 2.5));
            }
            let corners = [
                plot_ui.screen_from_plot(PlotPoint::new(0.0, 0.0)),
                plot_ui.screen_from_plot(PlotPoint::new(ns as f64, nd as f64)),
            ];
            (
                plot_ui.pointer_coordinate(),
                egui::Rect::from_two_pos(corners[0], corners[1]),
            )
        })
}

/// The selected node and pinned edge, shared with the graph.
fn selection_line(ui: &mut Ui, circuit: &Circuit, graph: &mut GraphState) {
    ui.horizontal(|ui| {
        match graph.selected.and_then(|i| circuit.nodes.get(i)) {
            Some(n) => {
                ui.label(format!(
                    "Selected: {}, its column as a source and its rows as a destination outlined",
                    n.node
                ));
            }
            None => {
                ui.label("Click a cell, or a node in the graph, to select it in both views");
            }
        }
        if let Some(e) = graph.pinned {
            ui.label(format!("· pinned edge {}", circuit.edge_name(e)));
        }
        if (graph.selected.is_some() || graph.pinned.is_some())
            && ui.small_button("Clear").clicked()
        {
            graph.selected = None;
            graph.pinned = None;
        }
    });
}

/// The scale line: what the colours mean, where they saturate, and the fixed-scale control.
fn scale_ui(ui: &mut Ui, map: &Heatmap, mode: Mode, fixed: &mut FixedScale) {
    let study = map.range;
    let value = fixed.of(mode);
    ui.horizontal(|ui| {
        ui.strong(format!("{} · mean score per edge", map.title));
        let shared = match mode {
            Mode::Difference | Mode::ImportanceChange => "symmetric around 0",
            Mode::Base | Mode::Tuned => "base and tuned on one scale",
        };
        let range = value.unwrap_or(study);
        if map.is_zero() && mode.is_change() {
            ui.label(crate::report::figures::NO_DIFFERENCE);
        } else {
            ui.label(format!("{shared}; colours saturate at ±{}", sci(range)));
        }
        let mut on = value.is_some();
        if ui
            .checkbox(&mut on, "fixed scale")
            .on_hover_text(
                "keep this saturation value when opening other studies, so that their colours \
                 compare (off: each study's 98th percentile of |score|)",
            )
            .changed()
        {
            *value = on.then_some(study);
        }
        if let Some(v) = value {
            let mut log = f64::from(v.max(f32::MIN_POSITIVE)).log10();
            ui.add(
                egui::DragValue::new(&mut log)
                    .speed(0.02)
                    .range(-12.0..=3.0)
                    .custom_formatter(|l, _| sci(10f64.powf(l) as f32))
                    .custom_parser(|t| {
                        t.trim()
                            .trim_start_matches('±')
                            .parse::<f64>()
                            .ok()
                            .filter(|x| *x > 0.0)
                            .map(f64::log10)
                    }),
            )
            .on_hover_text("saturation value: drag, or type a number such as 5e-5");
            *v = 10f64.powf(log) as f32;
        }
    });
}

/// A short number in scientific notation: `5.1e-5`.
fn sci(v: f32) -> String {
    format!("{v:.1e}")
}

/// The colour bar: the scale from −range to +range with five values, and the non-edge colour.
fn colour_bar_ui(ui: &mut Ui, mode: Mode, range: f32, height: f32, palette: Palette) {
    let (rect, _) = ui.allocate_exact_size(vec2(BAR_WIDTH, height), Sense::hover());
    let painter = ui.painter_at(rect);
    let bar = egui::Rect::from_min_size(
        rect.min + vec2(4.0, 24.0),
        vec2(16.0, (rect.height() - 90.0).max(40.0)),
    );
    let steps = 64;
    for i in 0..steps {
        let t = 1.0 - 2.0 * (i as f32 + 0.5) / steps as f32;
        let y0 = bar.top() + bar.height() * i as f32 / steps as f32;
        let cell = egui::Rect::from_min_max(
            egui::pos2(bar.left(), y0),
            egui::pos2(bar.right(), y0 + bar.height() / steps as f32 + 0.5),
        );
        painter.rect_filled(cell, 0.0, palette.diverging(t * range, range));
    }
    let text = ui.visuals().text_color();
    let font = egui::FontId::proportional(11.0);
    // A map of zeros (identical models) has no scale to label but its 0.
    let ticks: &[f32] = if range <= f32::MIN_POSITIVE {
        &[0.0]
    } else {
        &[1.0, 0.5, 0.0, -0.5, -1.0]
    };
    for &k in ticks {
        let y = bar.center().y - k * bar.height() / 2.0;
        painter.line_segment(
            [egui::pos2(bar.right(), y), egui::pos2(bar.right() + 4.0, y)],
            Stroke::new(1.0, text),
        );
        let label = if k == 0.0 {
            "0".to_owned()
        } else {
            format!("{:+.1e}", k * range)
        };
        painter.text(
            egui::pos2(bar.right() + 6.0, y),
            egui::Align2::LEFT_CENTER,
            label,
            font.clone(),
            text,
        );
    }
    let top = match mode {
        Mode::Difference => "tuned − base",
        Mode::ImportanceChange => "Δ|S|",
        Mode::Base | Mode::Tuned => "score",
    };
    painter.text(
        egui::pos2(bar.left(), rect.top() + 8.0),
        egui::Align2::LEFT_CENTER,
        top,
        font.clone(),
        text,
    );
    let swatch = egui::Rect::from_min_size(
        egui::pos2(bar.left(), bar.bottom() + 18.0),
        vec2(16.0, 12.0),
    );
    painter.rect_filled(swatch, 0.0, palette.structural());
    painter.text(
        swatch.right_center() + vec2(6.0, 0.0),
        egui::Align2::LEFT_CENTER,
        "not an edge",
        font,
        text,
    );
}
