//! The desktop app (eframe + egui on wgpu): pick two models, run a study in the background, and
//! look at the results: circuit graph, heatmap, edge distributions, per-layer metrics,
//! comparison table, question browser, training curves and a training run's trajectory, each
//! saved as a figure.
//!
//! The shell (`shell.rs`) owns the state and implements `eframe::App`: `logic` drains the
//! background jobs and applies the commands the panels queued during the previous frame
//! (`dispatch.rs`), `ui` draws (`layout.rs`). This file only declares the modules and
//! re-exports what the binary and the tests use. Long work runs on named threads (`worker.rs`) that report through bounded channels.
//! Nothing below this module knows about egui.

mod assets;
pub mod bench;
mod commands;
mod dispatch;
pub mod error;
mod export;
pub mod figure;
mod launch;
mod layout;
mod models;
mod options;
pub mod paths;
pub mod results;
pub mod settings;
mod shell;
mod study;
mod theme;
pub mod trajectory;
pub mod tune;
mod tune_ui;
pub mod views;
pub mod worker;

pub use export::write_png;
pub use launch::run;
pub use options::{native_options, Options};
pub use shell::App;
