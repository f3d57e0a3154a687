//! circuitdiff: what fine-tuning changed inside a language model.
//!
//! The library holds everything below the user interfaces: [`model`] loads checkpoints and runs
//! the transformer (for generation, and differentiably for attribution); [`app`] is the desktop
//! app, the only module that knows about windows.

#[cfg(feature = "gui")]
pub mod app;
pub mod assets;
pub mod attribution;
pub mod engine;
pub mod fsutil;
pub mod lab;
pub mod lock;
pub mod message;
pub mod model;
pub mod node;
pub mod progress;
pub mod report;
pub mod runtime;
pub mod side;
pub mod study;
