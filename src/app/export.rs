//! Screenshots of what is on screen (`--screenshot`, for looking at the app itself; figures are
//! saved by `figure`): show the view, let it settle for a few frames, take a viewport
//! screenshot, crop it to the view's area and write the PNG on a background thread; the view
//! and mode shown before come back afterwards.

use super::error::AppError;
use super::views::View;
use super::worker::Worker;
use crate::report::circuit::Mode;
use egui::{ColorImage, Rect};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

/// Frames drawn with the view shown before the screenshot is taken.
const SETTLE_FRAMES: u32 = 3;

/// A view in a mode, to be saved to a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Shot {
    pub view: View,
    pub mode: Mode,
    pub path: PathBuf,
}

/// What the shell does with the exporter's frame.
#[derive(Default)]
pub struct Frame {
    /// The view and mode to show while capturing.
    pub show: Option<(View, Mode)>,
    /// The saves that finished this frame.
    pub saved: Vec<Saved>,
    /// When a batch of shots has ended: the view and mode shown before it, and every file it
    /// wrote.
    pub ended: Option<((View, Mode), Vec<PathBuf>)>,
}

struct Current {
    view: View,
    mode: Mode,
    path: PathBuf,
    frames: u32,
    /// The view's area when the screenshot was requested.
    requested: Option<Rect>,
}

/// A finished save: the file and its size in pixels, or what went wrong.
pub type Saved = Result<(PathBuf, [usize; 2]), AppError>;

/// The export queue.
pub struct Exporter {
    queue: VecDeque<Shot>,
    current: Option<Current>,
    /// The view and mode shown before the batch, restored after it.
    restore: Option<(View, Mode)>,
    written: Vec<PathBuf>,
    tx: SyncSender<Arc<ColorImage>>,
    rx: Receiver<Arc<ColorImage>>,
    saving: Vec<Worker<(PathBuf, [usize; 2])>>,
}

impl Default for Exporter {
    fn default() -> Self {
        let (tx, rx) = sync_channel(2);
        Self {
            queue: VecDeque::new(),
            current: None,
            restore: None,
            written: Vec::new(),
            tx,
            rx,
            saving: Vec::new(),
        }
    }
}

/// Write `image` as a PNG at `path`; a partial file is removed on failure.
pub fn write_png(image: &ColorImage, path: &Path) -> Result<(), AppError> {
    let failed = |message: String| AppError::Image {
        path: path.to_owned(),
        message,
    };
    let [w, h] = image.size;
    let bytes: Vec<u8> = image
        .pixels
        .iter()
        .flat_map(|c| c.to_srgba_unmultiplied())
        .collect();
    let buffer = image::RgbaImage::from_raw(w as u32, h as u32, bytes)
        .ok_or_else(|| failed("the screenshot has an unexpected size".into()))?;
    let mut png = std::io::Cursor::new(Vec::new());
    buffer
        .write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| failed(e.to_string()))?;
    crate::fsutil::write_atomic(path, png.get_ref()).map_err(|source| AppError::Io {
        path: path.to_owned(),
        source,
    })
}

impl Exporter {
    /// Queue a shot; `shown` is the view and mode on screen, restored once the batch ends.
    pub fn enqueue(&mut self, shot: Shot, shown: (View, Mode)) {
        if !self.busy() {
            self.restore = Some(shown);
            self.written.clear();
        }
        self.queue.push_back(shot);
    }

    /// Whether anything is queued, being captured or being written.
    pub fn busy(&self) -> bool {
        !self.queue.is_empty() || self.current.is_some() || !self.saving.is_empty()
    }

    /// Per-frame work before drawing: the view to show while capturing, the finished saves
    /// (path and pixel size, or an error), and the end of a batch.
    pub fn logic(&mut self, ctx: &egui::Context) -> Frame {
        let mut done = Vec::new();
        while let Ok(image) = self.rx.try_recv() {
            let Some(current) = self.current.take_if(|c| c.requested.is_some()) else {
                continue;
            };
            let rect = current.requested.unwrap_or(Rect::NOTHING);
            let ppp = ctx.pixels_per_point();
            let full = Rect::from_min_size(
                egui::Pos2::ZERO,
                egui::vec2(image.size[0] as f32, image.size[1] as f32) / ppp,
            );
            let cropped = image.region(&rect.intersect(full), Some(ppp));
            let path = current.path;
            let repaint = ctx.clone();
            match Worker::spawn(
                "png-writer",
                Box::new(move || repaint.request_repaint()),
                move |_, _| {
                    write_png(&cropped, &path)?;
                    Ok((path, cropped.size))
                },
            ) {
                Ok(w) => self.saving.push(w),
                Err(source) => done.push(Err(AppError::Spawn {
                    what: "the PNG writer",
                    source,
                })),
            }
        }
        done.extend(super::worker::finished(&mut self.saving));
        self.written.extend(
            done.iter()
                .filter_map(|s| s.as_ref().ok())
                .map(|s| s.0.clone()),
        );
        if self.current.is_none() {
            if let Some(shot) = self.queue.pop_front() {
                self.current = Some(Current {
                    view: shot.view,
                    mode: shot.mode,
                    path: shot.path,
                    frames: 0,
                    requested: None,
                });
            }
        }
        let ended = if self.busy() {
            ctx.request_repaint();
            None
        } else {
            self.restore
                .take()
                .map(|shown| (shown, std::mem::take(&mut self.written)))
        };
        Frame {
            show: self.current.as_ref().map(|c| (c.view, c.mode)),
            saved: done,
            ended,
        }
    }

    /// After a frame that showed the view in `view_rect`: request the screenshot once the view
    /// has settled.
    pub fn after_frame(&mut self, ctx: &egui::Context, view_rect: Rect) {
        let Some(current) = &mut self.current else {
            return;
        };
        current.frames += 1;
        if current.frames >= SETTLE_FRAMES && current.requested.is_none() {
            current.requested = Some(view_rect);
            let tx = self.tx.clone();
            let repaint = ctx.clone();
            ctx.request_screenshot(move |image| {
                tx.try_send(image).ok();
                repaint.request_repaint();
            });
        }
    }
}
