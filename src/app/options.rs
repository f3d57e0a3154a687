//! How the app starts: the command line's choices and the window's options.

use super::views;
use std::path::PathBuf;

/// How the app starts.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Read and write settings in eframe's storage (`--no-persist` turns it off).
    pub persist: bool,
    /// A results (or trajectory) directory to open instead of the demo or the most recent one.
    pub open: Option<PathBuf>,
    /// Save the shown view to this PNG once the results are on screen, then exit.
    pub screenshot: Option<PathBuf>,
    /// The view and mode to show first (default: the saved ones).
    pub view: Option<views::View>,
    pub mode: Option<crate::report::circuit::Mode>,
    /// The window's size in points (default 1280 × 800).
    pub window: Option<[f32; 2]>,
}

/// The app's window options: title, size (default 1280 × 800), drag and drop, wgpu.
pub fn native_options(persist: bool, size: Option<[f32; 2]>) -> eframe::NativeOptions {
    eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("circuitdiff")
            .with_app_id("circuitdiff")
            .with_inner_size(size.unwrap_or([1280.0, 800.0]))
            .with_min_inner_size([720.0, 480.0])
            .with_drag_and_drop(true),
        renderer: eframe::Renderer::Wgpu,
        persist_window: persist,
        ..Default::default()
    }
}
