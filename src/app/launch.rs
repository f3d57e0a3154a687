//! Opening the window and running the app until it is closed.

use super::options::{native_options, Options};
use super::shell::App;
use std::sync::{Arc, Mutex};

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
