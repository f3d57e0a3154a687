//! Background work for the app: one named thread per job, reporting through a bounded channel.
//!
//! The job gets a [`Progress`] that sends stage starts (blocking: they must arrive) and counts
//! (`try_send`: lossy when the UI is behind), and the [`CancelToken`] the UI sets. Its result
//! is sent last, blocking. The UI drains the channel with [`Worker::poll`], which never waits.
//! Dropping a worker cancels the job, hangs up the channel (so a blocked send returns) and
//! joins the thread.

use super::error::AppError;
use crate::progress::{CancelToken, Progress};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Messages from a job to the UI.
#[derive(Debug)]
pub enum Message<T> {
    /// A stage of `total` units begins.
    Stage { name: String, total: u64 },
    /// `done` units of the current stage are complete.
    Done(u64),
    /// A line worth showing.
    Note(String),
    /// The job ended.
    Finished(Result<T, AppError>),
}

/// The results of the jobs of `workers` that have finished; the others stay.
pub fn finished<T>(workers: &mut Vec<Worker<T>>) -> Vec<Result<T, AppError>> {
    let mut done = Vec::new();
    workers.retain_mut(|w| {
        let mut finished = false;
        for msg in w.poll(Duration::from_millis(1)) {
            if let Message::Finished(r) = msg {
                done.push(r);
                finished = true;
            }
        }
        !finished
    });
    done
}

/// A request to repaint the UI, called after every message.
pub type Repaint = Box<dyn Fn() + Send>;

struct ChannelProgress<T> {
    tx: SyncSender<Message<T>>,
    repaint: Repaint,
}

impl<T> ChannelProgress<T> {
    fn send(&self, msg: Message<T>, lossy: bool) {
        let sent = if lossy {
            match self.tx.try_send(msg) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            }
        } else {
            self.tx.send(msg).is_ok()
        };
        if sent {
            (self.repaint)();
        }
    }
}

impl<T> Progress for ChannelProgress<T> {
    fn start(&mut self, stage: &str, total: u64) {
        self.send(
            Message::Stage {
                name: stage.to_owned(),
                total,
            },
            false,
        );
    }

    fn set(&mut self, done: u64) {
        self.send(Message::Done(done), true);
    }

    fn note(&mut self, text: &str) {
        self.send(Message::Note(text.to_owned()), true);
    }
}

/// A job running on its own thread. Not `Clone`: one owner polls it, and dropping it stops it.
pub struct Worker<T> {
    rx: Option<Receiver<Message<T>>>,
    cancel: CancelToken,
    handle: Option<JoinHandle<()>>,
}

impl<T: Send + 'static> Worker<T> {
    /// Start `job` on a thread called `name`; `repaint` is called after each message.
    pub fn spawn(
        name: &str,
        repaint: Repaint,
        job: impl FnOnce(&mut dyn Progress, &CancelToken) -> Result<T, AppError> + Send + 'static,
    ) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel(16);
        let cancel = CancelToken::new();
        let token = cancel.clone();
        let handle = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let mut progress = ChannelProgress { tx, repaint };
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    job(&mut progress, &token)
                }))
                .unwrap_or_else(|payload| {
                    let what = if let Some(s) = payload.downcast_ref::<String>() {
                        s.clone()
                    } else if let Some(s) = payload.downcast_ref::<&str>() {
                        (*s).to_owned()
                    } else {
                        "a job stopped unexpectedly".to_owned()
                    };
                    Err(AppError::Internal(what))
                });
                progress.send(Message::Finished(result), false);
            })?;
        Ok(Self {
            rx: Some(rx),
            cancel,
            handle: Some(handle),
        })
    }
}

impl<T> Worker<T> {
    /// The messages that have arrived, taking at most about `budget`; never blocks.
    pub fn poll(&mut self, budget: Duration) -> Vec<Message<T>> {
        let start = Instant::now();
        let mut out = Vec::new();
        let Some(rx) = &self.rx else {
            return out;
        };
        while start.elapsed() < budget {
            match rx.try_recv() {
                Ok(msg) => out.push(msg),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.rx = None;
                    break;
                }
            }
        }
        out
    }

    /// Ask the job to stop at its next unit of work.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Whether [`Worker::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }
}

impl<T> Drop for Worker<T> {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.rx = None;
        if let Some(handle) = self.handle.take() {
            handle.join().ok();
        }
    }
}

/// One stage of a job: its name, units done of `total` (0: unknown), and when it started.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub name: String,
    pub done: u64,
    pub total: u64,
    pub started: Instant,
}

impl Stage {
    /// The share done, in [0, 1] (0 while the total is unknown).
    pub fn fraction(&self) -> f32 {
        if self.total == 0 {
            0.0
        } else {
            (self.done as f32 / self.total as f32).min(1.0)
        }
    }

    /// The time left at the rate so far; `None` before the first unit or with no total.
    pub fn eta(&self) -> Option<Duration> {
        if self.done == 0 || self.total == 0 {
            return None;
        }
        let left = self.total.saturating_sub(self.done) as f64 / self.done as f64;
        Some(self.started.elapsed().mul_f64(left))
    }
}

/// A duration as people read it: `42 s`, `3:07`, `1:02:03`.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{}:{:02}", s / 60, s % 60),
        _ => format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60),
    }
}

/// Per-stage progress of a job, as the UI shows it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Stages {
    /// In order of start; a repeated stage name gets a ` #2` suffix.
    pub stages: Vec<Stage>,
    pub notes: Vec<String>,
}

impl Stages {
    /// Apply a progress message (not [`Message::Finished`]).
    pub fn apply<T>(&mut self, msg: &Message<T>) {
        match msg {
            Message::Stage { name, total } => {
                let repeats = self
                    .stages
                    .iter()
                    .filter(|s| s.name == *name || s.name.starts_with(&format!("{name} #")))
                    .count();
                let label = if repeats == 0 {
                    name.clone()
                } else {
                    format!("{name} #{}", repeats + 1)
                };
                self.stages.push(Stage {
                    name: label,
                    done: 0,
                    total: *total,
                    started: Instant::now(),
                });
            }
            Message::Done(done) => {
                if let Some(last) = self.stages.last_mut() {
                    last.done = *done;
                }
            }
            Message::Note(text) => self.notes.push(text.clone()),
            Message::Finished(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The UI thread polls a job whose units each take far longer than a frame: no poll may
    /// take longer than one frame (16 ms), and dropping the worker mid-job returns within a
    /// unit.
    #[test]
    fn polling_never_blocks_and_drop_cancels() {
        let unit = Duration::from_millis(150);
        let mut worker = Worker::spawn(
            "test-worker",
            Box::new(|| {}),
            move |p: &mut dyn Progress, cancel: &CancelToken| {
                p.start("slow", 6);
                for i in 0..6 {
                    if cancel.is_cancelled() {
                        return Ok(None);
                    }
                    std::thread::sleep(unit);
                    p.set(i + 1);
                }
                Ok(Some(42))
            },
        )
        .unwrap();
        let mut stages = Stages::default();
        let start = Instant::now();
        let mut slowest = Duration::ZERO;
        let mut result = None;
        while result.is_none() && start.elapsed() < Duration::from_secs(10) {
            let t = Instant::now();
            for msg in worker.poll(Duration::from_millis(10)) {
                stages.apply(&msg);
                if let Message::Finished(r) = msg {
                    result = Some(r);
                }
            }
            slowest = slowest.max(t.elapsed());
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(matches!(result, Some(Ok(Some(42)))), "{result:?}");
        assert!(
            slowest < Duration::from_millis(16),
            "a poll took {slowest:?}"
        );
        let shown: Vec<_> = stages
            .stages
            .iter()
            .map(|s| (s.name.as_str(), s.done, s.total))
            .collect();
        assert_eq!(shown, [("slow", 6, 6)]);

        let worker = Worker::spawn(
            "test-worker",
            Box::new(|| {}),
            move |_: &mut dyn Progress, cancel: &CancelToken| {
                while !cancel.is_cancelled() {
                    std::thread::sleep(unit);
                }
                Ok::<(), AppError>(())
            },
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let t = Instant::now();
        drop(worker);
        assert!(t.elapsed() < unit * 2, "drop took {:?}", t.elapsed());
    }

    /// A job that panics ends with an internal error instead of taking the app down.
    #[test]
    fn a_panicking_job_reports_an_internal_error() {
        let mut worker = Worker::spawn(
            "test-worker",
            Box::new(|| {}),
            |_: &mut dyn Progress, _: &CancelToken| -> Result<(), AppError> {
                panic!("index out of bounds")
            },
        )
        .unwrap();
        let start = Instant::now();
        loop {
            let msgs = worker.poll(Duration::from_millis(5));
            if let Some(Message::Finished(r)) = msgs.into_iter().last() {
                assert!(
                    matches!(&r, Err(AppError::Internal(s)) if s == "index out of bounds"),
                    "{r:?}"
                );
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "no result");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn repeated_stage_names_are_numbered() {
        let mut s = Stages::default();
        for name in ["answer base", "score", "score"] {
            s.apply::<()>(&Message::Stage {
                name: name.into(),
                total: 3,
            });
        }
        s.apply::<()>(&Message::Done(2));
        let names: Vec<_> = s.stages.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["answer base", "score", "score #2"]);
        assert_eq!(s.stages[2].done, 2);
    }

    #[test]
    fn clocks_and_estimates() {
        assert_eq!(clock(Duration::from_secs(42)), "42 s");
        assert_eq!(clock(Duration::from_secs(187)), "3:07");
        assert_eq!(clock(Duration::from_secs(3723)), "1:02:03");
        let started = Instant::now() - Duration::from_secs(10);
        let stage = |done, total| Stage {
            name: "answer base".into(),
            done,
            total,
            started,
        };
        assert_eq!(stage(0, 8).eta(), None);
        assert_eq!(stage(3, 0).eta(), None);
        let eta = stage(2, 6).eta().unwrap().as_secs_f64();
        assert!((19.9..21.0).contains(&eta), "{eta}");
        assert!((stage(3, 4).fraction() - 0.75).abs() < 1e-6);
    }
}
