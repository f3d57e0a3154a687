//! Every colour the app draws with, for the light and the dark theme.

use egui::Color32;

/// The app's palette for one theme.
#[derive(Debug, Clone, Copy)]
pub struct Palette {
    pub dark: bool,
}

impl Palette {
    pub fn of(ctx: &egui::Context) -> Self {
        Self {
            dark: ctx.global_style().visuals.dark_mode,
        }
    }

    /// Positive scores (removing the edge raises the loss).
    pub fn positive(self) -> Color32 {
        if self.dark {
            Color32::from_rgb(255, 120, 100)
        } else {
            Color32::from_rgb(178, 24, 43)
        }
    }

    /// Negative scores.
    pub fn negative(self) -> Color32 {
        if self.dark {
            Color32::from_rgb(110, 170, 255)
        } else {
            Color32::from_rgb(33, 102, 172)
        }
    }

    /// The base model's curves.
    pub fn base(self) -> Color32 {
        if self.dark {
            Color32::from_rgb(120, 180, 255)
        } else {
            Color32::from_rgb(31, 119, 180)
        }
    }

    /// The tuned model's curves.
    pub fn tuned(self) -> Color32 {
        if self.dark {
            Color32::from_rgb(255, 170, 80)
        } else {
            Color32::from_rgb(230, 120, 20)
        }
    }

    /// The n-th curve of a chart with several (training logs).
    pub fn series(self, n: usize) -> Color32 {
        const LIGHT: [Color32; 6] = [
            Color32::from_rgb(31, 119, 180),
            Color32::from_rgb(230, 120, 20),
            Color32::from_rgb(44, 160, 44),
            Color32::from_rgb(214, 39, 40),
            Color32::from_rgb(148, 103, 189),
            Color32::from_rgb(140, 86, 75),
        ];
        let c = LIGHT[n % LIGHT.len()];
        if self.dark {
            c.lerp_to_gamma(Color32::WHITE, 0.35)
        } else {
            c
        }
    }

    /// Nodes of the circuit graph.
    pub fn node(self) -> Color32 {
        if self.dark {
            Color32::from_gray(200)
        } else {
            Color32::from_gray(60)
        }
    }

    /// The selected node and the hovered edge.
    pub fn highlight(self) -> Color32 {
        if self.dark {
            Color32::from_rgb(255, 230, 80)
        } else {
            Color32::from_rgb(240, 170, 0)
        }
    }

    /// Cells of a score matrix that are not edges (structural zeros): a grey well apart from
    /// the scale's middle (the panel colour), which every tinted value leaves.
    pub fn structural(self) -> Color32 {
        if self.dark {
            Color32::from_gray(105)
        } else {
            Color32::from_gray(170)
        }
    }

    /// A correct answer.
    pub fn correct(self) -> Color32 {
        if self.dark {
            Color32::from_rgb(110, 210, 120)
        } else {
            Color32::from_rgb(30, 130, 50)
        }
    }

    /// Text of errors.
    pub fn error(self) -> Color32 {
        if self.dark {
            Color32::from_rgb(255, 110, 110)
        } else {
            Color32::from_rgb(190, 20, 20)
        }
    }

    /// Diverging colour of `v` saturating at ±`range`, centred on the panel colour.
    pub fn diverging(self, v: f32, range: f32) -> Color32 {
        let t = (v / range.max(f32::MIN_POSITIVE)).clamp(-1.0, 1.0);
        let mid = if self.dark {
            Color32::from_gray(30)
        } else {
            Color32::WHITE
        };
        let end = if t < 0.0 {
            self.negative()
        } else {
            self.positive()
        };
        mid.lerp_to_gamma(end, t.abs())
    }
}
