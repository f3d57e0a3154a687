//! How long work reports progress and learns that it should stop. The core knows nothing of
//! terminals or windows: the CLI draws bars, the app draws its own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Receives progress of long work, stage by stage.
pub trait Progress {
    /// A stage of `total` units begins (`total` 0 when unknown).
    fn start(&mut self, stage: &str, total: u64);
    /// `done` units of the current stage are complete.
    fn set(&mut self, done: u64);
    /// A line worth showing (a skipped item, a finished stage).
    fn note(&mut self, _text: &str) {}
}

/// Progress that goes nowhere.
pub struct Silent;

impl Progress for Silent {
    fn start(&mut self, _stage: &str, _total: u64) {}

    fn set(&mut self, _done: u64) {}
}

/// A shared flag asking long work to stop at the next unit (a question, a sample, a step).
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask the work to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
