//! Headless rendering of figure data to PNG (plotters on an RGB buffer, encoded with `image`).

use super::figures::{Heatmap, Histogram, LineChart};
use crate::attribution::metrics::Metric;
use plotters::prelude::*;
use std::path::Path;

/// Errors while drawing or writing a figure.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{path}: {message}")]
    Draw { path: String, message: String },
}

const FONT: &str = "sans-serif";
const COLORS: [RGBColor; 3] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
];

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

/// Draw into a `w`×`h` RGB canvas and save it as PNG.
fn png(
    path: &Path,
    (w, h): (u32, u32),
    draw: impl FnOnce(
        &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    ) -> Result<(), Box<dyn std::error::Error>>,
) -> Result<(), RenderError> {
    register_font();
    let err = |message: String| RenderError::Draw {
        path: path.display().to_string(),
        message,
    };
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        draw(&root).map_err(|e| err(e.to_string()))?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    let img = image::RgbImage::from_raw(w, h, buf).ok_or_else(|| err("buffer size".into()))?;
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| err(e.to_string()))?;
    crate::fsutil::write_atomic(path, png.get_ref()).map_err(|e| err(e.to_string()))
}

/// Diverging blue–white–red colour of `v` in [−range, range].
fn diverging(v: f32, range: f32) -> RGBColor {
    let t = (v / range).clamp(-1.0, 1.0);
    let mix =
        |a: u8, b: u8, s: f32| (f32::from(a) + (f32::from(b) - f32::from(a)) * s).round() as u8;
    if t < 0.0 {
        RGBColor(mix(255, 33, -t), mix(255, 102, -t), mix(255, 172, -t))
    } else {
        RGBColor(mix(255, 178, t), mix(255, 24, t), mix(255, 43, t))
    }
}

/// Heatmaps side by side: x = source index, y = destination index.
pub fn heatmaps_png(maps: &[Heatmap], path: &Path) -> Result<(), RenderError> {
    let n = maps.len().max(1) as u32;
    png(path, (420 * n, 460), |root| {
        root.fill(&WHITE)?;
        for (area, map) in root.split_evenly((1, maps.len().max(1))).iter().zip(maps) {
            let (ns, nd) = (map.rows.len(), map.cols.len());
            let mut chart = ChartBuilder::on(area)
                .caption(format!("{} (±{:.2e})", map.title, map.range), (FONT, 18))
                .margin(8)
                .x_label_area_size(32)
                .y_label_area_size(40)
                .build_cartesian_2d(0f64..ns as f64, 0f64..nd as f64)?;
            chart
                .configure_mesh()
                .disable_mesh()
                .x_desc("source")
                .y_desc("destination")
                .label_style((FONT, 12))
                .draw()?;
            chart.draw_series((0..ns).flat_map(|s| (0..nd).map(move |d| (s, d))).map(
                |(s, d)| {
                    let i = s * nd + d;
                    let color = if map.mask[i] {
                        diverging(map.values[i], map.range)
                    } else {
                        RGBColor(225, 225, 225)
                    };
                    Rectangle::new(
                        [(s as f64, d as f64), (s as f64 + 1.0, d as f64 + 1.0)],
                        color.filled(),
                    )
                },
            ))?;
        }
        Ok(())
    })
}

/// Curves with a legend.
pub fn line_png(chart_data: &LineChart, path: &Path) -> Result<(), RenderError> {
    png(path, (720, 460), |root| {
        root.fill(&WHITE)?;
        let pts = chart_data
            .series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|p| p.0.is_finite() && p.1.is_finite());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in pts {
            if chart_data.log_y && y <= 0.0 {
                continue;
            }
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
        let mut b = ChartBuilder::on(root);
        b.caption(&chart_data.title, (FONT, 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70);
        macro_rules! body {
            ($chart:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .x_desc(chart_data.x_label.as_str())
                    .y_desc(chart_data.y_label.as_str())
                    .label_style((FONT, 13))
                    .draw()?;
                for (s, color) in chart_data.series.iter().zip(COLORS.iter().cycle()) {
                    let color = *color;
                    let points = s
                        .points
                        .iter()
                        .copied()
                        .filter(|p| p.1.is_finite() && (!chart_data.log_y || p.1 > 0.0));
                    chart
                        .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                        .label(s.name.as_str())
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                        });
                }
                chart
                    .configure_series_labels()
                    .label_font((FONT, 14))
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .draw()?;
            }};
        }
        if chart_data.log_y {
            body!(b.build_cartesian_2d(x0..x1, (y0..y1).log_scale())?);
        } else {
            body!(b.build_cartesian_2d(x0..x1, y0..y1)?);
        }
        Ok(())
    })
}

/// Overlaid histograms with a common binning.
pub fn histogram_png(h: &Histogram, path: &Path) -> Result<(), RenderError> {
    png(path, (720, 460), |root| {
        root.fill(&WHITE)?;
        let super::figures::Binned { lo, width, counts } = h.binned();
        let hi = lo + width * h.bins.max(1) as f64;
        let top = counts.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
        let mut chart = ChartBuilder::on(root)
            .caption(&h.title, (FONT, 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(lo..hi, 0f64..top * 1.1)?;
        chart
            .configure_mesh()
            .x_desc(h.x_label.as_str())
            .y_desc("questions")
            .label_style((FONT, 13))
            .draw()?;
        for (sample, (c, color)) in h
            .series
            .iter()
            .zip(counts.iter().zip(COLORS.iter().cycle()))
        {
            let color = *color;
            chart
                .draw_series(c.iter().enumerate().map(|(i, &n)| {
                    let x = lo + i as f64 * width;
                    Rectangle::new([(x, 0.0), (x + width, n as f64)], color.mix(0.45).filled())
                }))?
                .label(sample.name.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.mix(0.45).filled())
                });
        }
        chart
            .configure_series_labels()
            .label_font((FONT, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    })
}

/// Write the comparison figures of two runs into `dir`; returns (caption, file name) pairs.
pub fn write_comparison_figures(
    base: &super::run::Run,
    tuned: &super::run::Run,
    dir: &Path,
) -> Result<Vec<(String, String)>, RenderError> {
    use super::figures;
    std::fs::create_dir_all(dir).map_err(|e| RenderError::Draw {
        path: dir.display().to_string(),
        message: e.to_string(),
    })?;
    let mut written = Vec::new();
    heatmaps_png(&figures::heatmaps(base, tuned), &dir.join("heatmap.png"))?;
    written.push((
        "Mean edge scores (base, tuned, tuned − base)".into(),
        "heatmap.png".into(),
    ));
    line_png(
        &figures::sorted_abs_curve(base, tuned),
        &dir.join("sorted_abs.png"),
    )?;
    written.push(("Sorted |score|".into(), "sorted_abs.png".into()));
    line_png(
        &figures::cumulative_share(base, tuned),
        &dir.join("cumulative_share.png"),
    )?;
    written.push((
        "Cumulative share of |score|".into(),
        "cumulative_share.png".into(),
    ));
    for metric in Metric::HEADLINE {
        let name = format!("per_layer_{metric}.png");
        line_png(&figures::per_layer(base, tuned, metric), &dir.join(&name))?;
        written.push((format!("{metric} per layer"), name));
    }
    Ok(written)
}
