//! Headless rendering of figure data: one drawing function per figure kind, generic over the
//! plotters backend, so that the same drawing gives a PNG (an RGB buffer at a chosen [`Scale`],
//! encoded with `image`) and an SVG (text kept as `<text>` elements).

use super::circuit::{self, Bounds, Circuit, EdgeSelection, Mode, Point};
use super::figures::{self, CircuitGraph, Heatmap, Histogram, LineChart, Scatter};
use super::table::Table;
use crate::attribution::compare::CompareOptions;
use crate::attribution::metrics::Metric;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// Errors while drawing or writing a figure.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{path}: {message}")]
    Draw { path: String, message: String },
}

/// PNG pixels per unit of a figure's base size; the SVG is drawn at the base size. The default
/// is 2.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale(pub f64);

impl Default for Scale {
    fn default() -> Self {
        Self(2.0)
    }
}

/// A figure to draw.
#[derive(Debug, Clone, Copy)]
pub enum Figure<'a> {
    /// Heatmaps side by side, each with its colour bar.
    Heatmaps(&'a [Heatmap]),
    Line(&'a LineChart),
    Scatter(&'a Scatter),
    Histogram(&'a Histogram),
    Circuit(&'a CircuitGraph),
    /// Figures in a grid, `columns` a row, each in a cell the size of the largest.
    Grid {
        figures: &'a [Figure<'a>],
        columns: usize,
    },
    /// A table of text under a title: the header row, then the rows.
    Table {
        title: &'a str,
        table: &'a Table,
    },
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

const FONT: &str = "sans-serif";
const COLORS: [RGBColor; 3] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
];
/// Scatter series: sets of edges of one model, in none of the models' colours.
const POINT_COLORS: [RGBColor; 2] = [RGBColor(44, 160, 44), RGBColor(148, 103, 189)];
/// Ends of the diverging scale: negative, positive.
const NEGATIVE: RGBColor = RGBColor(33, 102, 172);
const POSITIVE: RGBColor = RGBColor(178, 24, 43);
/// Cells of the dense matrix that are not edges: a grey that is on no point of the scale.
const NON_EDGE: RGBColor = RGBColor(150, 150, 150);
const HEATMAP_SIZE: (u32, u32) = (470, 540);
/// Axis labels of a heatmap are at least this far apart (base units).
const LABEL_GAP: f64 = 11.0;

impl Figure<'_> {
    /// The size of the SVG, and of the PNG at scale 1.
    pub fn base_size(&self) -> (u32, u32) {
        match self {
            Self::Heatmaps(maps) => (HEATMAP_SIZE.0 * maps.len().max(1) as u32, HEATMAP_SIZE.1),
            Self::Line(_) | Self::Histogram(_) => (720, 460),
            Self::Scatter(_) => (560, 520),
            Self::Circuit(g) => circuit_size(g),
            Self::Grid { figures, columns } => {
                let (w, h) = grid_cell(figures);
                let columns = (*columns).clamp(1, figures.len().max(1));
                let rows = figures.len().div_ceil(columns).max(1);
                (w * columns as u32, h * rows as u32)
            }
            Self::Table { table, .. } => {
                let (widths, _) = table_columns(table);
                let width: f64 = widths.iter().sum::<f64>() + 2.0 * TABLE_MARGIN;
                let rows = table.rows.len() as f64 + 1.0;
                (
                    width.ceil() as u32,
                    (TABLE_TOP + rows * TABLE_ROW + TABLE_MARGIN).ceil() as u32,
                )
            }
        }
    }

    /// Draw on `root`, every length multiplied by `k`.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, k: f64) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        match *self {
            Self::Heatmaps(maps) => {
                for (area, map) in root.split_evenly((1, maps.len().max(1))).iter().zip(maps) {
                    draw_heatmap(area, map, k)?;
                }
                Ok(())
            }
            Self::Line(chart) => draw_line(root, chart, k),
            Self::Scatter(chart) => draw_scatter(root, chart, k),
            Self::Histogram(h) => draw_histogram(root, h, k),
            Self::Circuit(g) => draw_circuit(root, g, k),
            Self::Grid { figures, columns } => {
                let columns = columns.clamp(1, figures.len().max(1));
                let rows = figures.len().div_ceil(columns).max(1);
                for (area, figure) in root.split_evenly((rows, columns)).iter().zip(figures) {
                    figure.draw(area, k)?;
                }
                Ok(())
            }
            Self::Table { title, table } => draw_table(root, title, table, k),
        }
    }
}

/// The size of a grid's cell: the largest of its figures.
fn grid_cell(figures: &[Figure]) -> (u32, u32) {
    figures
        .iter()
        .map(Figure::base_size)
        .fold((1, 1), |(w, h), (fw, fh)| (w.max(fw), h.max(fh)))
}

/// Text size, row height, margins and the space above the header of a table (base units).
const TABLE_TEXT: f64 = 13.0;
const TABLE_ROW: f64 = 22.0;
const TABLE_MARGIN: f64 = 16.0;
const TABLE_TOP: f64 = 48.0;

/// The cells' text and each column's width (base units, from the longest text).
fn table_columns(table: &Table) -> (Vec<f64>, Vec<Vec<String>>) {
    let rows: Vec<Vec<String>> = std::iter::once(table.columns.clone())
        .chain(
            table
                .rows
                .iter()
                .map(|r| r.iter().map(super::table::Cell::text).collect()),
        )
        .collect();
    let widths = (0..table.columns.len())
        .map(|i| {
            let chars = rows
                .iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0);
            chars as f64 * TABLE_TEXT * 0.55 + 2.0 * TABLE_MARGIN
        })
        .collect();
    (widths, rows)
}

/// A table: the title, the header row over a rule, the rows on alternating bands; the first
/// column left-aligned, the others right-aligned.
fn draw_table<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    table: &Table,
    k: f64,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let (widths, rows) = table_columns(table);
    let left = text(k, TABLE_TEXT).pos(Pos::new(HPos::Left, VPos::Center));
    let right = text(k, TABLE_TEXT).pos(Pos::new(HPos::Right, VPos::Center));
    root.draw_text(
        title,
        &text(k, 18.0).pos(Pos::new(HPos::Left, VPos::Center)),
        (px(k, TABLE_MARGIN), px(k, TABLE_TOP / 2.0)),
    )?;
    let total: f64 = widths.iter().sum();
    for (r, row) in rows.iter().enumerate() {
        let top = TABLE_TOP + r as f64 * TABLE_ROW;
        let y = px(k, top + TABLE_ROW / 2.0);
        if r % 2 == 0 && r > 0 {
            let band = [
                (px(k, TABLE_MARGIN), px(k, top)),
                (px(k, TABLE_MARGIN + total), px(k, top + TABLE_ROW)),
            ];
            root.draw(&Rectangle::new(band, RGBColor(242, 242, 242).filled()))?;
        }
        let mut x = TABLE_MARGIN;
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i == 0 {
                root.draw_text(cell, &left, (px(k, x + TABLE_MARGIN / 2.0), y))?;
            } else {
                root.draw_text(cell, &right, (px(k, x + w - TABLE_MARGIN / 2.0), y))?;
            }
            x += w;
        }
        if r == 0 {
            let rule = [
                (px(k, TABLE_MARGIN), px(k, top + TABLE_ROW)),
                (px(k, TABLE_MARGIN + total), px(k, top + TABLE_ROW)),
            ];
            root.draw(&PathElement::new(rule, BLACK.stroke_width(upx(k, 1.0))))?;
        }
    }
    Ok(())
}

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font(
            FONT,
            FontStyle::Normal,
            epaint_default_fonts::UBUNTU_LIGHT,
        )
        .is_err()
        {
            log::warn!("figure font could not be registered; text will be missing");
        }
    });
}

/// Text of `size` base units at scale `k`.
fn text(k: f64, size: f64) -> TextStyle<'static> {
    TextStyle::from((FONT, size * k).into_font())
}

/// `v` base units at scale `k`, in whole pixels.
fn px(k: f64, v: f64) -> i32 {
    (v * k).round() as i32
}

/// A stroke or margin width: `v` base units at scale `k`, at least one pixel.
fn upx(k: f64, v: f64) -> u32 {
    (v * k).round().max(1.0) as u32
}

/// The figure as PNG bytes, `scale` times its base size.
pub fn png(figure: Figure, scale: Scale) -> Result<Vec<u8>, String> {
    register_font();
    let (w, h) = figure.base_size();
    let (w, h) = (upx(scale.0, f64::from(w)), upx(scale.0, f64::from(h)));
    let mut buf = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        figure.draw(&root, scale.0).map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    let img = image::RgbImage::from_raw(w, h, buf).ok_or("buffer size")?;
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| e.to_string())?;
    Ok(out.into_inner())
}

/// The figure as an SVG document at its base size.
pub fn svg(figure: Figure) -> Result<String, String> {
    register_font();
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, figure.base_size()).into_drawing_area();
        figure.draw(&root, 1.0).map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// Write `dir/<stem>.png` at `scale` and `dir/<stem>.svg`.
pub fn write(figure: Figure, dir: &Path, stem: &str, scale: Scale) -> Result<(), RenderError> {
    let save = |name: String, bytes: Result<Vec<u8>, String>| {
        let path = dir.join(name);
        let err = |message: String| RenderError::Draw {
            path: path.display().to_string(),
            message,
        };
        let bytes = bytes.map_err(err)?;
        crate::fsutil::write_atomic(&path, &bytes).map_err(|e| err(e.to_string()))
    };
    save(format!("{stem}.png"), png(figure, scale))?;
    save(format!("{stem}.svg"), svg(figure).map(String::into_bytes))
}

/// Diverging blue–white–red colour of `v` in [−range, range].
fn diverging(v: f32, range: f32) -> RGBColor {
    let t = (v / range).clamp(-1.0, 1.0);
    let mix =
        |a: u8, b: u8, s: f32| (f32::from(a) + (f32::from(b) - f32::from(a)) * s).round() as u8;
    let (end, s) = if t < 0.0 {
        (NEGATIVE, -t)
    } else {
        (POSITIVE, t)
    };
    RGBColor(mix(255, end.0, s), mix(255, end.1, s), mix(255, end.2, s))
}

/// A short signed number for axes and colour bars: `1.25e-3`, `0`.
fn short(v: f32) -> String {
    if v == 0.0 {
        "0".into()
    } else {
        format!("{v:.2e}")
    }
}

/// Every `step`-th index of `n` cells of `cell` pixels each, so that labels of `gap` pixels fit.
fn label_step(cell: f64, gap: f64) -> usize {
    if cell <= 0.0 {
        1
    } else {
        (gap / cell).ceil().max(1.0) as usize
    }
}

/// The plot rectangle of a heatmap panel of `w`×`h` pixels: (x0, y0, x1, y1).
fn heatmap_plot(k: f64, (w, h): (u32, u32)) -> (i32, i32, i32, i32) {
    (
        px(k, 64.0),
        px(k, 44.0),
        w as i32 - px(k, 100.0),
        h as i32 - px(k, 72.0),
    )
}

/// One heatmap, the study's orientation as the app draws it: x = source index from left to
/// right, y = destination index from the bottom up (`a0<q>` at the bottom, `logits` at the top),
/// labelled on both axes (thinned), ticks at cell centres, and a colour bar with its saturation
/// value.
fn draw_heatmap<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    map: &Heatmap,
    k: f64,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let (w, _) = area.dim_in_pixel();
    let centre_top = Pos::new(HPos::Center, VPos::Top);
    area.draw_text(
        &map.title,
        &text(k, 16.0).pos(centre_top),
        (w as i32 / 2, px(k, 4.0)),
    )?;
    let saturation = if map.is_zero() {
        figures::NO_DIFFERENCE.to_owned()
    } else {
        format!("colours saturate at ±{}", short(map.range))
    };
    area.draw_text(
        &saturation,
        &text(k, 11.0).pos(centre_top),
        (w as i32 / 2, px(k, 24.0)),
    )?;
    let (x0, y0, x1, y1) = heatmap_plot(k, area.dim_in_pixel());
    let (ns, nd) = (map.rows.len(), map.cols.len());
    let cw = f64::from(x1 - x0) / ns.max(1) as f64;
    let ch = f64::from(y1 - y0) / nd.max(1) as f64;
    let cell_x = |s: usize| x0 + (s as f64 * cw).round() as i32;
    // Destination d's row, counted from the bottom.
    let cell_y = |d: usize| y1 - (d as f64 * ch).round() as i32;
    area.draw(&Rectangle::new([(x0, y0), (x1, y1)], NON_EDGE.filled()))?;
    for s in 0..ns {
        for d in (0..nd).filter(|&d| map.mask.get(s * nd + d) == Some(&true)) {
            let color = diverging(map.values[s * nd + d], map.range);
            let rect = [(cell_x(s), cell_y(d + 1)), (cell_x(s + 1), cell_y(d))];
            area.draw(&Rectangle::new(rect, color.filled()))?;
        }
    }
    area.draw(&Rectangle::new([(x0, y0), (x1, y1)], BLACK.stroke_width(1)))?;
    heatmap_axes(area, map, k, (cw, ch))?;
    colour_bar(area, map.range, k, (x1 + px(k, 12.0), y0, y1))
}

/// The heatmap's axis labels and ticks, at every `step`-th cell centre.
fn heatmap_axes<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    map: &Heatmap,
    k: f64,
    (cw, ch): (f64, f64),
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let (x0, y0, x1, y1) = heatmap_plot(k, area.dim_in_pixel());
    let tick = px(k, 4.0);
    let gap = LABEL_GAP * k;
    let label = text(k, 10.0);
    let x_label = label
        .clone()
        .transform(FontTransform::Rotate270)
        .pos(Pos::new(HPos::Right, VPos::Center));
    for (s, name) in map.rows.iter().enumerate().step_by(label_step(cw, gap)) {
        let x = x0 + ((s as f64 + 0.5) * cw).round() as i32;
        area.draw(&PathElement::new([(x, y1), (x, y1 + tick)], BLACK))?;
        area.draw_text(name, &x_label, (x, y1 + tick + px(k, 2.0)))?;
    }
    let y_label = label.pos(Pos::new(HPos::Right, VPos::Center));
    for (d, name) in map.cols.iter().enumerate().step_by(label_step(ch, gap)) {
        let y = y1 - ((d as f64 + 0.5) * ch).round() as i32;
        area.draw(&PathElement::new([(x0 - tick, y), (x0, y)], BLACK))?;
        area.draw_text(name, &y_label, (x0 - tick - px(k, 2.0), y))?;
    }
    let (_, h) = area.dim_in_pixel();
    let title = text(k, 12.0).pos(Pos::new(HPos::Center, VPos::Bottom));
    area.draw_text("source", &title, ((x0 + x1) / 2, h as i32 - px(k, 4.0)))?;
    let vertical = text(k, 12.0)
        .transform(FontTransform::Rotate270)
        .pos(Pos::new(HPos::Center, VPos::Top));
    area.draw_text("destination", &vertical, (px(k, 4.0), (y0 + y1) / 2))?;
    Ok(())
}

/// A vertical colour bar from +range (top) to −range, its values, and the non-edge swatch.
fn colour_bar<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    range: f32,
    k: f64,
    (bx, top, bottom): (i32, i32, i32),
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let width = px(k, 14.0);
    let swatch = px(k, 14.0);
    let bar_bottom = bottom - swatch - px(k, 10.0);
    let height = f64::from(bar_bottom - top);
    const STEPS: i32 = 64;
    for i in 0..STEPS {
        let (a, b) = (f64::from(i), f64::from(i + 1));
        let v = range * (1.0 - 2.0 * ((a + 0.5) / f64::from(STEPS)) as f32);
        let ya = top + (a / f64::from(STEPS) * height).round() as i32;
        let yb = top + (b / f64::from(STEPS) * height).round() as i32;
        let rect = [(bx, ya), (bx + width, yb)];
        area.draw(&Rectangle::new(rect, diverging(v, range).filled()))?;
    }
    area.draw(&Rectangle::new(
        [(bx, top), (bx + width, bar_bottom)],
        BLACK,
    ))?;
    let label = text(k, 10.0).pos(Pos::new(HPos::Left, VPos::Center));
    for (i, v) in [1.0, 0.5, 0.0, -0.5, -1.0].into_iter().enumerate() {
        // A map of zeros (identical models) has no scale to label but its 0.
        if range <= f32::MIN_POSITIVE && v != 0.0 {
            continue;
        }
        let y = top + (i as f64 / 4.0 * height).round() as i32;
        let tick = [(bx + width, y), (bx + width + px(k, 3.0), y)];
        area.draw(&PathElement::new(tick, BLACK))?;
        let value = if v > 0.0 {
            format!("+{}", short(range * v))
        } else {
            short(range * v)
        };
        area.draw_text(&value, &label, (bx + width + px(k, 5.0), y))?;
    }
    let s = [(bx, bottom - swatch), (bx + width, bottom)];
    area.draw(&Rectangle::new(s, NON_EDGE.filled()))?;
    area.draw_text(
        "not an edge",
        &label,
        (bx + width + px(k, 5.0), bottom - swatch / 2),
    )?;
    Ok(())
}

/// The (x, y) range of a line chart's finite points (positive y only on a log scale), widened
/// where it would be empty.
fn line_bounds(chart: &LineChart) -> ((f64, f64), (f64, f64)) {
    let pts = chart
        .series
        .iter()
        .flat_map(|s| {
            let band = s.points.iter().zip(&s.band);
            let lows = band.clone().map(|(p, b)| (p.0, b.0));
            let highs = band.map(|(p, b)| (p.0, b.1));
            s.points.iter().copied().chain(lows).chain(highs)
        })
        .filter(|p| p.0.is_finite() && p.1.is_finite() && (!chart.log_y || p.1 > 0.0));
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in pts {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 - x0 < 1e-12 {
        x1 = x0 + 1.0;
    }
    if y1 - y0 < 1e-12 * y1.abs().max(1e-12) {
        y1 = y0 + y0.abs().max(1.0) * 0.1;
        y0 -= y0.abs().max(1.0) * 0.1;
    }
    ((x0, x1), (y0, y1))
}

/// Curves with a legend.
fn draw_line<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    data: &LineChart,
    k: f64,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let ((x0, x1), (y0, y1)) = line_bounds(data);
    let mut b = ChartBuilder::on(root);
    b.caption(&data.title, text(k, 20.0))
        .margin(upx(k, 12.0))
        .x_label_area_size(upx(k, 40.0))
        .y_label_area_size(upx(k, 70.0));
    macro_rules! body {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(data.x_label.as_str())
                .y_desc(data.y_label.as_str())
                .y_label_formatter(&|v| axis_number(*v))
                .label_style(text(k, 13.0))
                .axis_desc_style(text(k, 14.0))
                .draw()?;
            for (s, color) in data.series.iter().zip(COLORS.iter().cycle()) {
                if !s.band.is_empty() {
                    chart.draw_series(std::iter::once(Polygon::new(
                        band_outline(s),
                        color.mix(0.2).filled(),
                    )))?;
                }
                let style = color.stroke_width(upx(k, 2.0));
                let points = s
                    .points
                    .iter()
                    .copied()
                    .filter(|p| p.1.is_finite() && (!data.log_y || p.1 > 0.0));
                let len = px(k, 20.0);
                chart
                    .draw_series(LineSeries::new(points, style))?
                    .label(s.name.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + len, y)], style));
            }
            series_labels(chart.configure_series_labels(), k)?;
        }};
    }
    if data.log_y {
        body!(b.build_cartesian_2d(x0..x1, (y0..y1).log_scale())?);
    } else {
        body!(b.build_cartesian_2d(x0..x1, y0..y1)?);
    }
    Ok(())
}

/// A tick value of a value axis: scientific with two digits below 1e-3 and from 1e4 on (so
/// that ticks 1e-5 apart stay apart), else as short as it reads.
fn axis_number(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".to_owned()
    } else if !(1e-3..1e4).contains(&a) {
        format!("{v:.1e}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// The outline of a series' band: along the lows, back along the highs (finite ones only).
fn band_outline(s: &figures::Series) -> Vec<(f64, f64)> {
    let band: Vec<(f64, (f64, f64))> = s
        .points
        .iter()
        .zip(&s.band)
        .filter(|(p, b)| p.0.is_finite() && b.0.is_finite() && b.1.is_finite())
        .map(|(p, b)| (p.0, *b))
        .collect();
    let lows = band.iter().map(|&(x, (lo, _))| (x, lo));
    let highs = band.iter().rev().map(|&(x, (_, hi))| (x, hi));
    lows.chain(highs).collect()
}

/// A chart's legend box, scaled.
fn series_labels<'a, 'b, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    mut labels: plotters::chart::SeriesLabelStyle<'a, 'b, DB, CT>,
    k: f64,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    labels
        .label_font(text(k, 14.0))
        .margin(upx(k, 5.0))
        .legend_area_size(upx(k, 30.0))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// Points of each series, each axis fitted to its values, and the part of the diagonal y = x
/// that falls inside both.
fn draw_scatter<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    data: &Scatter,
    k: f64,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let ((x0, x1), (y0, y1)) = data.bounds();
    let mut chart = ChartBuilder::on(root)
        .caption(&data.title, text(k, 18.0))
        .margin(upx(k, 12.0))
        .x_label_area_size(upx(k, 40.0))
        .y_label_area_size(upx(k, 70.0))
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart
        .configure_mesh()
        .x_desc(data.x_label.as_str())
        .y_desc(data.y_label.as_str())
        .label_style(text(k, 13.0))
        .axis_desc_style(text(k, 14.0))
        .draw()?;
    let diagonal = BLACK.mix(0.5).stroke_width(upx(k, 1.0));
    if let Some((lo, hi)) = data.diagonal() {
        chart
            .draw_series(LineSeries::new([(lo, lo), (hi, hi)], diagonal))?
            .label("exact = EAP")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], diagonal));
    }
    for (s, color) in data.series.iter().zip(POINT_COLORS.iter().cycle()) {
        let style = color.mix(0.6).filled();
        let r = upx(k, 3.0);
        chart
            .draw_series(
                s.points
                    .iter()
                    .filter(|p| p.0.is_finite() && p.1.is_finite())
                    .map(|&p| Circle::new(p, r, style)),
            )?
            .label(s.name.as_str())
            .legend(move |(x, y)| Circle::new((x + 10, y), r, style));
    }
    series_labels(chart.configure_series_labels(), k)
}

/// Overlaid histograms with a common binning.
fn draw_histogram<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    h: &Histogram,
    k: f64,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let figures::Binned { lo, width, counts } = h.binned();
    let hi = lo + width * h.bins.max(1) as f64;
    let top = counts.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
    let mut chart = ChartBuilder::on(root)
        .caption(&h.title, text(k, 20.0))
        .margin(upx(k, 12.0))
        .x_label_area_size(upx(k, 40.0))
        .y_label_area_size(upx(k, 50.0))
        .build_cartesian_2d(lo..hi, 0f64..top * 1.1)?;
    chart
        .configure_mesh()
        .x_desc(h.x_label.as_str())
        .y_desc("questions")
        .label_style(text(k, 13.0))
        .axis_desc_style(text(k, 14.0))
        .draw()?;
    for (sample, (c, color)) in h
        .series
        .iter()
        .zip(counts.iter().zip(COLORS.iter().cycle()))
    {
        let fill = color.mix(0.45).filled();
        let (a, b) = (px(k, 5.0), px(k, 14.0));
        chart
            .draw_series(c.iter().enumerate().map(|(i, &n)| {
                let x = lo + i as f64 * width;
                Rectangle::new([(x, 0.0), (x + width, n as f64)], fill)
            }))?
            .label(sample.name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - a), (x + b, y + a)], fill));
    }
    series_labels(chart.configure_series_labels(), k)
}

/// Base size of a circuit graph: high enough for a line of text a layer (22 units a row, at
/// least 560 and at most 1400), and as wide as the drawing's shape asks (at least 760 and at
/// most 1800).
fn circuit_size(g: &CircuitGraph) -> (u32, u32) {
    let b = circuit_bounds(g);
    let h = (150.0 + 22.0 * b.height()).clamp(560.0, 1400.0);
    let w = (80.0 + (h - 150.0) * b.width() / b.height().max(1e-3)).clamp(760.0, 1800.0);
    (w as u32, h as u32)
}

/// The box of a circuit graph's nodes and drawn edges, in layout units.
fn circuit_bounds(g: &CircuitGraph) -> Bounds {
    let points = g.nodes.iter().map(|n| n.pos);
    let edge_points = g.edges.iter().flat_map(|e| curve(e.from, e.ctrl, e.to, 8));
    Bounds::of(points.chain(edge_points)).expand(0.3)
}

/// `n` + 1 points along the quadratic curve `from` → `ctrl` → `to`.
fn curve(from: Point, ctrl: Point, to: Point, n: usize) -> impl Iterator<Item = Point> {
    (0..=n).map(move |i| circuit::quadratic(from, ctrl, to, i as f32 / n as f32))
}

/// The circuit graph: every node labelled, the selected edges as curves (width and opacity by
/// |value|, colour by sign), a title with the mode and what is shown, and a legend.
fn draw_circuit<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    g: &CircuitGraph,
    k: f64,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let (w, h) = root.dim_in_pixel();
    let centre_top = Pos::new(HPos::Center, VPos::Top);
    root.draw_text(
        &g.title,
        &text(k, 18.0).pos(centre_top),
        (w as i32 / 2, px(k, 6.0)),
    )?;
    root.draw_text(
        &shown_line(g),
        &text(k, 12.0).pos(centre_top),
        (w as i32 / 2, px(k, 30.0)),
    )?;
    let bounds = circuit_bounds(g);
    let (x0, y0, x1, y1) = (
        f64::from(px(k, 60.0)),
        f64::from(px(k, 64.0)),
        f64::from(w) - f64::from(px(k, 60.0)),
        f64::from(h) - f64::from(px(k, 60.0)),
    );
    let at = |p: Point| {
        let fx = f64::from((p.x - bounds.min.x) / bounds.width().max(1e-6));
        let fy = f64::from((p.y - bounds.min.y) / bounds.height().max(1e-6));
        (
            (x0 + fx * (x1 - x0)).round() as i32,
            (y0 + fy * (y1 - y0)).round() as i32,
        )
    };
    let max = g
        .edges
        .first()
        .map_or(0.0, |e| e.value.abs())
        .max(f32::MIN_POSITIVE);
    let r = node_radius(g, &at, k);
    for e in g.edges.iter().rev() {
        let t = f64::from(e.value.abs() / max);
        let color = if e.value >= 0.0 { POSITIVE } else { NEGATIVE };
        let color = color.mix(0.25 + 0.7 * t);
        let width = 0.8 + 4.2 * t;
        let head = arrowhead(e, &at, (k, r), width);
        let mut path: Vec<(i32, i32)> = curve(e.from, e.ctrl, e.to, 24).map(at).collect();
        if let Some(end) = path.last_mut() {
            *end = head[0];
        }
        root.draw(&PathElement::new(path, color.stroke_width(upx(k, width))))?;
        root.draw(&Polygon::new(head.to_vec(), color.filled()))?;
    }
    circuit_nodes(root, g, (k, r), &at)?;
    circuit_legend(root, g, k)
}

/// What a circuit graph draws: "the 100 largest of 4193 edges by |score|, 26 % of the total
/// |score|", and when that is short of the default share, how many edges hold it.
fn shown_line(g: &CircuitGraph) -> String {
    let mut line = format!(
        "the {} largest of {} edges by |score|, {:.0} % of the total |score|",
        g.edges.len(),
        g.total_edges,
        100.0 * g.share
    );
    let (target, need) = g.target;
    if need == 0 {
        line = format!("{} edges; every score is 0", g.total_edges);
    } else if g.share < target {
        line += &format!("; {:.0} % takes {need} edges", 100.0 * target);
    }
    line
}

/// The arrowhead of edge `e` (drawn `width` base units wide), in pixels: its tip on the rim of
/// the destination node, where the q, k or v port is for an attention input, where the curve
/// arrives for any other; pointing along the curve's last stretch.
fn arrowhead(
    e: &figures::GraphEdge,
    at: &dyn Fn(Point) -> (i32, i32),
    (k, radius): (f64, f64),
    width: f64,
) -> [(i32, i32); 3] {
    let f = |p: Point| {
        let (x, y) = at(p);
        (f64::from(x), f64::from(y))
    };
    let unit = |(x, y): (f64, f64)| {
        let n = x.hypot(y).max(1e-9);
        (x / n, y / n)
    };
    let (centre, port) = (f(e.dest), f(e.to));
    let back = f(if e.ctrl.distance(e.to) > 1e-4 {
        e.ctrl
    } else {
        e.from
    });
    let rim = radius + 1.5 * k;
    let out = if e.to.distance(e.dest) > 1e-4 {
        unit((port.0 - centre.0, port.1 - centre.1))
    } else {
        let (x, y) = unit((centre.0 - back.0, centre.1 - back.1));
        (-x, -y)
    };
    let tip = (centre.0 + out.0 * rim, centre.1 + out.1 * rim);
    let (ux, uy) = unit((tip.0 - back.0, tip.1 - back.1));
    let len = (4.5 + 1.2 * width).min(11.0) * k;
    let base = (tip.0 - ux * len, tip.1 - uy * len);
    let (sx, sy) = (-uy * len * 0.45, ux * len * 0.45);
    let round = |(x, y): (f64, f64)| (x.round() as i32, y.round() as i32);
    [
        round(tip),
        round((base.0 + sx, base.1 + sy)),
        round((base.0 - sx, base.1 - sy)),
    ]
}

/// A node's radius in a saved circuit graph (base units), where its neighbours leave room.
const NODE_RADIUS: f64 = 5.0;

/// The nodes' radius in pixels: [`NODE_RADIUS`], or less where the nodes of one row (the heads
/// of a layer) lie closer than 2.5 radii.
fn node_radius(g: &CircuitGraph, at: &dyn Fn(Point) -> (i32, i32), k: f64) -> f64 {
    let mut nearest = f64::INFINITY;
    for (i, a) in g.nodes.iter().enumerate() {
        for b in g.nodes[i + 1..].iter().filter(|b| b.pos.y == a.pos.y) {
            let (p, q) = (at(a.pos), at(b.pos));
            nearest = nearest.min(f64::from(p.0 - q.0).hypot(f64::from(p.1 - q.1)));
        }
    }
    (NODE_RADIUS * k).min(nearest / 2.5).max(k)
}

/// The circuit's nodes and their labels (on a light halo over the edges), each on its
/// [`LabelSide`](circuit::LabelSide).
fn circuit_nodes<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    g: &CircuitGraph,
    (k, radius): (f64, f64),
    at: &dyn Fn(Point) -> (i32, i32),
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let r = radius.round() as i32;
    let label = text(k, 11.0);
    for n in &g.nodes {
        let (x, y) = at(n.pos);
        root.draw(&Circle::new((x, y), r, RGBColor(40, 40, 40).filled()))?;
        root.draw(&Circle::new((x, y), r, WHITE.stroke_width(upx(k, 1.0))))?;
        let Some(name) = &n.label else {
            continue;
        };
        let off = r + px(k, 3.0);
        let (pos, anchor) = match n.side {
            circuit::LabelSide::Above => ((x, y - off), Pos::new(HPos::Center, VPos::Bottom)),
            circuit::LabelSide::Below => ((x, y + off), Pos::new(HPos::Center, VPos::Top)),
            circuit::LabelSide::Right => ((x + off, y), Pos::new(HPos::Left, VPos::Center)),
            circuit::LabelSide::Left => ((x - off, y), Pos::new(HPos::Right, VPos::Center)),
        };
        let style = label.pos(anchor);
        let (tw, th) = root.estimate_text_size(name, &style)?;
        let (tw, th) = (tw as i32, th as i32);
        let left = match anchor.h_pos {
            HPos::Left => pos.0,
            HPos::Center => pos.0 - tw / 2,
            HPos::Right => pos.0 - tw,
        };
        let top = match anchor.v_pos {
            VPos::Top => pos.1,
            VPos::Center => pos.1 - th / 2,
            VPos::Bottom => pos.1 - th,
        };
        let halo = [(left - 1, top - 1), (left + tw + 1, top + th + 1)];
        root.draw(&Rectangle::new(halo, WHITE.mix(0.75).filled()))?;
        root.draw_text(name, &style, pos)?;
    }
    Ok(())
}

/// The colour legend (what each sign means in this mode) and the width rule.
fn circuit_legend<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    g: &CircuitGraph,
    k: f64,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let (_, h) = root.dim_in_pixel();
    let y = h as i32 - px(k, 22.0);
    let label = text(k, 12.0).pos(Pos::new(HPos::Left, VPos::Center));
    let mut x = px(k, 40.0);
    for (name, color) in g.legend.iter().zip([POSITIVE, NEGATIVE]) {
        let line = [(x, y), (x + px(k, 28.0), y)];
        root.draw(&PathElement::new(line, color.stroke_width(upx(k, 3.0))))?;
        root.draw_text(name, &label, (x + px(k, 34.0), y))?;
        x += px(k, 40.0) + root.estimate_text_size(name, &label)?.0 as i32 + px(k, 20.0);
    }
    let rule = if g.is_zero() {
        figures::NO_DIFFERENCE
    } else {
        "line width and opacity: |score| relative to the largest drawn"
    };
    root.draw_text(rule, &label, (x, y))?;
    let arrows = "arrows point into the destination; q, k and v enter an attention block at its \
        lower left, bottom and lower right";
    root.draw_text(arrows, &label, (px(k, 40.0), y - px(k, 18.0)))?;
    Ok(())
}

/// The circuit graphs of base, tuned and tuned − base of two runs of one graph (base alone when
/// their graphs differ).
pub fn circuit_graphs(
    base: &super::run::Run,
    tuned: &super::run::Run,
    select: EdgeSelection,
) -> Vec<(Mode, CircuitGraph)> {
    let graph = &base.manifest.graph;
    let edges = |r: &super::run::Run| graph.edge_values(&r.mean_scores());
    let tuned = (tuned.manifest.graph == *graph).then(|| edges(tuned));
    let circuit = Circuit::new(graph, edges(base), tuned);
    circuit
        .modes()
        .into_iter()
        .filter_map(|m| figures::circuit_graph(&circuit, m, select).map(|g| (m, g)))
        .collect()
}

/// Write the figures of a study's check of EAP into `dir` (as
/// [`write_comparison_figures`] does): the EAP-vs-exact scatter of each model and the
/// faithfulness curves.
pub fn write_validation_figures(
    v: &super::validation::Validation,
    dir: &Path,
) -> Result<Vec<(String, String)>, RenderError> {
    let scatters = figures::exact_scatter(v);
    let grid: Vec<Figure> = scatters.iter().map(Figure::Scatter).collect();
    let curves = figures::faithfulness_curves(v);
    let scale = Scale::default();
    let mut written = Vec::new();
    for (figure, caption, stem) in [
        (
            Figure::Grid {
                figures: &grid,
                columns: 2,
            },
            "EAP score against the exact effect of removing each checked edge",
            "exact_vs_eap",
        ),
        (
            Figure::Line(&curves),
            "Faithfulness of the top-k circuits (median over the checked samples)",
            "faithfulness",
        ),
    ] {
        write(figure, dir, stem, scale)?;
        written.push((caption.to_owned(), stem.to_owned()));
    }
    Ok(written)
}

/// Create the folder figures are written into.
fn create_dir(dir: &Path) -> Result<(), RenderError> {
    std::fs::create_dir_all(dir).map_err(|e| RenderError::Draw {
        path: dir.display().to_string(),
        message: e.to_string(),
    })
}

/// Write the figures of a trajectory into `dir` (as [`write_comparison_figures`] does): each
/// metric over the steps as its paired change from the first checkpoint with the paired
/// interval (`trajectory_<metric>`) and as its level with the level's interval
/// (`trajectory_<metric>_levels`), and the trainer's reward, accuracy, KL and
/// loss with the question set's accuracy on the same step axis.
pub fn write_trajectory_figures(
    t: &super::trajectory::Trajectory,
    log: Option<&super::train_log::TrainLog>,
    dir: &Path,
) -> Result<Vec<(String, String)>, RenderError> {
    create_dir(dir)?;
    let scale = Scale::default();
    let mut written = Vec::new();
    for metric in Metric::ALL {
        let change = super::trajectory::difference_chart(t, metric);
        let levels = super::trajectory::metric_chart(t, metric);
        for (chart, stem) in [
            (change, format!("trajectory_{metric}")),
            (levels, format!("trajectory_{metric}_levels")),
        ] {
            write(Figure::Line(&chart), dir, &stem, scale)?;
            written.push((chart.title, stem));
        }
    }
    for chart in super::trajectory::training_charts(t, log) {
        let stem = format!("training_{}", chart.y_label);
        write(Figure::Line(&chart), dir, &stem, scale)?;
        written.push((chart.title, stem));
    }
    Ok(written)
}

/// Write the comparison figures of two runs into `dir`, each as `<stem>.png` (at the default
/// scale) and `<stem>.svg`; returns (caption, stem) pairs.
pub fn write_comparison_figures(
    base: &super::run::Run,
    tuned: &super::run::Run,
    opts: &CompareOptions,
    dir: &Path,
) -> Result<Vec<(String, String)>, RenderError> {
    create_dir(dir)?;
    let scale = Scale::default();
    let mut written = Vec::new();
    let mut put = |figure: Figure, caption: String, stem: String| {
        write(figure, dir, &stem, scale)?;
        written.push((caption, stem));
        Ok::<_, RenderError>(())
    };
    // Every figure's title names the pair, so that the figures of two studies tell apart.
    let pair = figures::pair_title(base, tuned);
    let titled = |mut chart: LineChart| {
        chart.title = figures::titled(&pair, &chart.title);
        chart
    };
    let mut maps = figures::comparison_heatmaps(base, tuned);
    for map in &mut maps {
        map.title = figures::titled(&pair, &map.title);
    }
    let importance = maps.split_off(maps.len().min(3));
    let caption = "Mean edge scores, x = source index from the left, y = destination index from \
        the bottom (base and tuned on one colour scale; tuned − base)";
    put(Figure::Heatmaps(&maps), caption.into(), "heatmap".into())?;
    if !importance.is_empty() {
        let caption = "Change in importance of each edge, |tuned| − |base| of the mean scores, \
            x = source index from the left, y = destination index from the bottom";
        let stem = format!("heatmap_{}", Mode::ImportanceChange.slug());
        put(Figure::Heatmaps(&importance), caption.into(), stem)?;
    }
    for (mode, mut g) in circuit_graphs(base, tuned, EdgeSelection::default()) {
        let stem = format!("circuit_{}", mode.slug());
        let caption = format!(
            "Circuit graph, {}: layers from input at the bottom to logits at the top",
            g.title.replace("circuit: ", "")
        );
        g.title = figures::titled(&pair, &g.title);
        put(Figure::Circuit(&g), caption, stem)?;
    }
    let sorted = titled(figures::sorted_abs_curve(base, tuned));
    put(
        Figure::Line(&sorted),
        "Sorted |score|".into(),
        "sorted_abs".into(),
    )?;
    let share = titled(figures::cumulative_share(base, tuned));
    let caption = "Cumulative share of |score|";
    put(
        Figure::Line(&share),
        caption.into(),
        "cumulative_share".into(),
    )?;
    let mut losses = figures::loss_histogram(base, tuned);
    losses.title = figures::titled(&pair, &losses.title);
    let caption = "Per-sample loss of both models (saturated below 1e-3 nats per answer token)";
    put(Figure::Histogram(&losses), caption.into(), "losses".into())?;
    for metric in Metric::HEADLINE {
        let chart = titled(figures::per_layer(base, tuned, metric, opts));
        let caption = format!("{metric} per layer (mean over questions with its interval)");
        put(Figure::Line(&chart), caption, format!("per_layer_{metric}"))?;
        if let Some(chart) = figures::per_layer_difference(base, tuned, metric, opts).map(titled) {
            let caption = format!("{metric} per layer, paired difference tuned − base");
            put(
                Figure::Line(&chart),
                caption,
                format!("per_layer_{metric}_difference"),
            )?;
        }
    }
    Ok(written)
}
