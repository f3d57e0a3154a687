//! The desktop app (eframe + egui on wgpu): pick two models, run a study in the background, and
//! look at the results: circuit graph, heatmap, edge distributions, per-layer metrics,
//! comparison table, question browser, training curves and a training run's trajectory, each
//! saved as a figure.
//!
//! The shell (`shell.rs`) owns the state and implements `eframe::App`: `logic` drains the
//! background jobs and applies the commands the panels queued during the previous frame, `ui`
//! draws. Long work runs on named threads (`worker.rs`) that report through bounded channels.
//! Nothing below this module knows about egui.

mod assets;
pub mod bench;
mod commands;
mod dispatch;
pub mod error;
mod export;
pub mod figure;
mod models;
pub mod paths;
pub mod results;
pub mod settings;
mod shell;
mod study;
mod theme;
pub mod trajectory;
pub mod views;
pub mod worker;

pub use export::write_png;
pub use shell::App;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

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

/// Open the window and run until it is closed.
pub fn run(options: Options) -> anyhow::Result<()> {
    let failure: Arc<Mutex<Option<String>>> = Arc::default();
    let app_failure = failure.clone();
    eframe::run_native(
        "circuitdiff",
        native_options(options.persist, options.window),
        Box::new(move |cc| Ok(Box::new(App::new(cc, options, app_failure)))),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))?;
    let failed = failure.lock().ok().and_then(|mut f| f.take());
    match failed {
        Some(e) => Err(anyhow::anyhow!(e)),
        None => Ok(()),
    }
}
