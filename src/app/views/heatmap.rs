//! The heatmap of the mean score matrix (the study's figure): x = source index, y = destination
//! index, diverging colours centred on 0 and saturating at the 2nd–98th percentile; hover names
//! the cell. Drawn as one texture, so head-level matrices stay cheap.

use super::super::results::Results;
use super::super::theme::Palette;
use crate::report::circuit::Mode;
use crate::report::figures::Heatmap;
use egui::{Color32, ColorImage, TextureHandle, TextureOptions, Ui};
use egui_plot::{Plot, PlotImage, PlotPoint};

/// The texture of the shown heatmap, rebuilt when the heatmap or the theme changes.
#[derive(Default)]
pub struct HeatmapState {
    texture: Option<(usize, bool, TextureHandle)>,
}

fn image(map: &Heatmap, palette: Palette) -> ColorImage {
    let (ns, nd) = (map.rows.len(), map.cols.len());
    let mut pixels = vec![Color32::TRANSPARENT; ns * nd];
    for s in 0..ns {
        for d in 0..nd {
            let i = s * nd + d;
            // Texture rows run top to bottom; destination 0 is at the bottom of the plot.
            pixels[(nd - 1 - d) * ns + s] = if map.mask[i] {
                palette.diverging(map.values[i], map.range)
            } else {
                palette.structural()
            };
        }
    }
    ColorImage::new([ns, nd], pixels)
}

/// The heatmap of `mode` (base, tuned or tuned − base).
pub fn heatmap_ui(ui: &mut Ui, results: &Results, mode: Mode, state: &mut HeatmapState) {
    let index = match mode {
        Mode::Base => 0,
        Mode::Tuned => 1,
        Mode::Difference => 2,
    };
    let Some(map) = results.figures.heatmaps.get(index) else {
        ui.label("These results hold one run: only the base heatmap exists");
        return;
    };
    let palette = Palette::of(ui.ctx());
    let fresh =
        matches!(&state.texture, Some((i, dark, _)) if *i == index && *dark == palette.dark);
    if !fresh {
        let texture = ui.ctx().load_texture(
            format!("heatmap-{index}"),
            image(map, palette),
            TextureOptions::NEAREST,
        );
        state.texture = Some((index, palette.dark, texture));
    }
    let Some((_, _, texture)) = &state.texture else {
        return;
    };
    ui.horizontal(|ui| {
        ui.strong(format!("{} — mean score per edge", map.title));
        ui.label(format!(
            "colours saturate at ±{:.3e}; grey cells are not edges",
            map.range
        ));
    });
    let (ns, nd) = (map.rows.len(), map.cols.len());
    let response = Plot::new("heatmap")
        .x_axis_label("source")
        .y_axis_label("destination")
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
            plot_ui.pointer_coordinate()
        });
    if let Some(p) = response.inner {
        let (s, d) = (p.x.floor(), p.y.floor());
        if s >= 0.0 && d >= 0.0 && (s as usize) < ns && (d as usize) < nd {
            let (s, d) = (s as usize, d as usize);
            let i = s * nd + d;
            let text = if map.mask[i] {
                format!("{}->{}: {:+.4e}", map.rows[s], map.cols[d], map.values[i])
            } else {
                format!("{} does not feed {}", map.rows[s], map.cols[d])
            };
            response.response.on_hover_text_at_pointer(text);
        }
    }
}
