//! Line-chart drawing that the views share: series colours, readable axes, bands.

use crate::app::theme::Palette;
use crate::report::figures::{LineChart, Series};
use crate::side::Side;
use egui::Ui;
use egui_plot::{FilledArea, Line, Plot, PlotPoints, VLine};

/// The colour of a series: base and tuned have theirs, others take the palette in turn.
pub fn series_color(palette: Palette, side: Option<Side>, n: usize) -> egui::Color32 {
    match side {
        Some(Side::Base) => palette.base(),
        Some(Side::Tuned) => palette.tuned(),
        None => palette.series(n),
    }
}

/// The step of 1, 2 or 5 times a power of ten nearest to `x` (on a log scale).
fn nice_step(x: f64) -> f64 {
    let p = 10f64.powf(x.log10().floor());
    let m = x / p;
    p * if m < 2f64.sqrt() {
        1.0
    } else if m < 10f64.sqrt() {
        2.0
    } else if m < 50f64.sqrt() {
        5.0
    } else {
        10.0
    }
}

/// A y axis with about four labelled steps whatever the plot's height and range, each label
/// with the decimals its step needs (0.05 → two, 0.5 → one).
pub fn readable_y_axis(plot: Plot<'_>) -> Plot<'_> {
    plot.y_grid_spacer(egui_plot::uniform_grid_spacer(|input| {
        // About four steps over the range, and no closer than about 24 points (three times the
        // grid's smallest spacing), where labels still fit.
        let span = (input.bounds.1 - input.bounds.0).abs();
        let mut step = nice_step((span / 4.0).max(f64::MIN_POSITIVE));
        while step < 3.0 * input.base_step_size {
            step = nice_step(step * 2.2);
        }
        [step / 10.0, step, step * 10.0]
    }))
    .y_axis_formatter(|mark, _| {
        let decimals = (-mark.step_size.log10()).ceil().clamp(0.0, 12.0) as usize;
        format!("{:.*}", decimals, mark.value)
    })
}

/// Draw a line chart in a plot `height` high; `log_y` plots log10 of positive values.
pub fn line_chart_ui(ui: &mut Ui, chart: &LineChart, log_y: bool, height: f32) {
    chart_header_ui(ui, chart);
    let style = ChartStyle {
        log_y,
        height,
        ..ChartStyle::default()
    };
    chart_plot_ui(ui, chart, &style);
}

/// A chart's title with its series' names beside it, each in its colour (the legend, off the
/// data).
pub fn chart_header_ui(ui: &mut Ui, chart: &LineChart) {
    let palette = Palette::of(ui.ctx());
    ui.horizontal(|ui| {
        ui.strong(&chart.title);
        for (n, s) in chart.series.iter().enumerate() {
            let color = series_color(palette, s.side, n);
            ui.label(egui::RichText::new(&s.name).color(color));
        }
    });
}

/// How a chart's plot is drawn besides its data.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChartStyle {
    /// Plot log10 of positive values.
    pub log_y: bool,
    pub height: f32,
    /// Plots that share their x axis: the link group and the x range they start at.
    pub shared_x: Option<(egui::Id, [f64; 2])>,
    /// A vertical marker at this x.
    pub marker: Option<f64>,
}

/// `y` on the plot's scale (log10 with `log_y`); `None` where the point `(x, y)` cannot be drawn.
fn plotted(x: f64, y: f64, log_y: bool) -> Option<f64> {
    let ok = x.is_finite() && y.is_finite() && (!log_y || y > 0.0);
    ok.then(|| if log_y { y.log10() } else { y })
}

/// A series' band, on the plot's scale: x, low and high of each point where all are drawable.
fn band_points(s: &Series, log_y: bool) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut out = (Vec::new(), Vec::new(), Vec::new());
    if s.band.len() != s.points.len() {
        return out;
    }
    for (&(x, _), &(lo, hi)) in s.points.iter().zip(&s.band) {
        if let (Some(lo), Some(hi)) = (plotted(x, lo, log_y), plotted(x, hi, log_y)) {
            out.0.push(x);
            out.1.push(lo);
            out.2.push(hi);
        }
    }
    out
}

/// Draw a chart's plot: each series with its band (a translucent area), and the marker.
/// Returns the x clicked, if the plot was clicked.
pub fn chart_plot_ui(ui: &mut Ui, chart: &LineChart, style: &ChartStyle) -> Option<f64> {
    let palette = Palette::of(ui.ctx());
    let log_y = style.log_y;
    let mut plot = Plot::new(&chart.title)
        .height(style.height)
        .x_axis_label(chart.x_label.as_str())
        .y_axis_label(if log_y {
            format!("log10 {}", chart.y_label)
        } else {
            chart.y_label.clone()
        })
        .allow_scroll(false);
    if let Some((group, [lo, hi])) = style.shared_x {
        // The same y-axis width in every plot lines up their step axes.
        plot = plot
            .link_axis(group, [true, false])
            .link_cursor(group, [true, false])
            .default_x_bounds(lo, hi)
            .y_axis_min_width(64.0);
    }
    let mut plot = readable_y_axis(plot);
    if log_y {
        plot = plot.y_axis_formatter(|mark, _| format!("1e{:.1}", mark.value));
    }
    plot.show(ui, |plot_ui| {
        for (n, s) in chart.series.iter().enumerate() {
            let color = series_color(palette, s.side, n);
            let (xs, lows, highs) = band_points(s, log_y);
            // A mesh between the interval's ends: egui_plot's `Polygon` fills convex shapes
            // only, and a band seldom is one.
            if xs.len() > 1 {
                plot_ui.add(
                    FilledArea::new(format!("{} interval", s.name), &xs, &lows, &highs)
                        .fill_color(color.gamma_multiply(0.22))
                        .allow_hover(false),
                );
            }
            let points: Vec<[f64; 2]> = s
                .points
                .iter()
                .filter_map(|&(x, y)| Some([x, plotted(x, y, log_y)?]))
                .collect();
            plot_ui.line(
                Line::new(s.name.as_str(), PlotPoints::new(points))
                    .color(color)
                    .width(1.5),
            );
        }
        if let Some(x) = style.marker {
            plot_ui.vline(
                VLine::new("chosen", x)
                    .color(palette.highlight())
                    .width(1.5),
            );
        }
        let clicked = plot_ui.response().clicked();
        plot_ui
            .pointer_coordinate()
            .filter(|_| clicked)
            .map(|p| p.x)
    })
    .inner
}
