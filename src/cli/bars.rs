//! Terminal progress bars (indicatif) for the core's `Progress` trait, and Ctrl-C wired to a
//! cancel token.

use circuitdiff::progress::{CancelToken, Progress};
use indicatif::{ProgressBar, ProgressStyle};

/// One bar per stage, with counts, rate and ETA; where standard error is not a terminal (a
/// log file, nohup, a batch job), where indicatif hides its bars, plain lines instead.
#[derive(Default)]
pub struct Bars {
    bar: Option<ProgressBar>,
    plain: Option<PlainLines>,
}

/// Least time between two plain progress lines of a stage (its first and last unit are always
/// written).
const PLAIN_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Progress as plain lines: "score base: 3/20 (15 %), 12 seconds elapsed, eta 68 seconds".
struct PlainLines {
    stage: String,
    total: u64,
    started: std::time::Instant,
    last: Option<std::time::Instant>,
}

impl PlainLines {
    /// The line of `done` units, when one is due.
    fn line(&mut self, done: u64) -> Option<String> {
        let now = std::time::Instant::now();
        let due = done == 1
            || done >= self.total
            || self
                .last
                .is_none_or(|t| now.duration_since(t) >= PLAIN_EVERY);
        if !due || done == 0 {
            return None;
        }
        self.last = Some(now);
        let elapsed = now.duration_since(self.started);
        let eta = elapsed.mul_f64(self.total.saturating_sub(done) as f64 / done as f64);
        let secs = |d: std::time::Duration| {
            indicatif::HumanDuration(std::time::Duration::from_secs(d.as_secs())).to_string()
        };
        Some(format!(
            "{}: {done}/{} ({:.0} %), {} elapsed, eta {}",
            self.stage,
            self.total,
            100.0 * done as f64 / self.total.max(1) as f64,
            secs(elapsed),
            secs(eta)
        ))
    }
}

impl Progress for Bars {
    fn start(&mut self, stage: &str, total: u64) {
        if let Some(b) = self.bar.take() {
            b.finish();
        }
        let bar = ProgressBar::new(total);
        let style = ProgressStyle::with_template(
            "{prefix:>10} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(stage.to_owned());
        self.plain = bar.is_hidden().then(|| {
            eprintln!("{stage}: {total} to do");
            PlainLines {
                stage: stage.to_owned(),
                total,
                started: std::time::Instant::now(),
                last: None,
            }
        });
        self.bar = Some(bar);
    }

    fn set(&mut self, done: u64) {
        if let Some(b) = &self.bar {
            b.set_position(done);
        }
        if let Some(line) = self.plain.as_mut().and_then(|p| p.line(done)) {
            eprintln!("{line}");
        }
    }

    fn note(&mut self, text: &str) {
        // A hidden bar (standard error is not a terminal: a log file, a batch job) prints
        // nothing, so the line goes straight to standard error.
        match &self.bar {
            Some(b) if !b.is_hidden() => b.println(text),
            _ => eprintln!("{text}"),
        }
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish();
        }
    }
}

/// The process's cancel token, set by the first Ctrl-C; a second Ctrl-C ends the process at
/// once. The handler is installed on the first call; every later call (every phase of a
/// command) shares its token.
pub fn ctrl_c_token() -> CancelToken {
    static TOKEN: std::sync::OnceLock<CancelToken> = std::sync::OnceLock::new();
    TOKEN
        .get_or_init(|| {
            let token = CancelToken::new();
            let t = token.clone();
            let handler = ctrlc::set_handler(move || {
                if t.is_cancelled() {
                    // The exit skips the drops that remove the lock files.
                    circuitdiff::lock::remove_held_files();
                    #[expect(
                        clippy::disallowed_methods,
                        reason = "a second Ctrl-C quits at once: the handler runs on its own thread, with no caller to return to"
                    )]
                    std::process::exit(130);
                }
                eprintln!("\nstopping after the current unit of work (Ctrl-C again to quit now)");
                t.cancel();
            });
            if let Err(e) = handler {
                log::warn!("Ctrl-C handler not installed: {e}");
            }
            token
        })
        .clone()
}

/// A byte-count bar for Hugging Face Hub downloads.
#[derive(Default)]
pub struct DownloadBar {
    bar: Option<ProgressBar>,
}

impl circuitdiff::model::DownloadProgress for DownloadBar {
    fn start(&mut self, file: &str, size: u64) {
        let bar = ProgressBar::new(size);
        let style = ProgressStyle::with_template(
            "{prefix:>24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(file.to_owned());
        self.bar = Some(bar);
    }

    fn advance(&mut self, bytes: u64) -> std::ops::ControlFlow<()> {
        if let Some(b) = &self.bar {
            b.inc(bytes);
        }
        std::ops::ControlFlow::Continue(())
    }

    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish();
        }
    }
}

/// Load a model, showing Hub downloads as progress bars. An error that does not name the model
/// (most name its file) is prefixed with it.
pub fn load_model(
    spec: &str,
    opts: &circuitdiff::model::LoadOptions,
) -> anyhow::Result<circuitdiff::model::Model> {
    let mut bar = DownloadBar::default();
    circuitdiff::model::Model::load_with_progress(spec, opts, Some(&mut bar)).map_err(|e| {
        if e.to_string().contains(spec) {
            anyhow::Error::new(e)
        } else {
            anyhow::Error::new(e).context(format!("loading model {spec}"))
        }
    })
}

/// A command stopped by Ctrl-C before it finished, after saying so and how to continue:
/// `main` exits with 130, as a shell does after SIGINT.
#[derive(Debug, thiserror::Error)]
#[error("stopped by Ctrl-C")]
pub struct Stopped;
