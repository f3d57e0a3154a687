//! Choosing a file or folder: the desktop's native dialog where there is one, else (no portal or
//! session bus, as on a bare X server or over SSH) a window with a typed path, checked before it
//! is used.

use super::views::view::View;
use crate::report::circuit::Mode;
use crate::side::Side;
use crate::study::dir::EDGE_CHANGES;
use egui::Ui;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What a chosen path is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    Results,
    /// A model folder (`folder`) or a `.gguf` / `.safetensors` file.
    Model {
        side: Side,
        folder: bool,
    },
    Dataset,
    StudyFolder,
    /// The model to fine-tune: a folder (a model's or an adapter's) or a `.gguf` file.
    TuneModel {
        folder: bool,
    },
    /// The fine-tune's questions (JSON lines).
    TuneDataset,
    TuneFolder,
    /// A view's figure in a mode (PNG and/or SVG).
    SaveFigure(View, Mode),
    /// The most changed edges as CSV.
    SaveEdges,
    ExportAll,
    Lab,
}

/// What kind of path a pick needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An existing folder.
    Folder,
    /// An existing file with one of these extensions.
    File(&'static str, &'static [&'static str]),
    /// A new or existing file in an existing folder.
    Save,
    /// A folder that may not exist yet.
    NewFolder,
}

impl Pick {
    pub fn title(self) -> &'static str {
        match self {
            Self::Results => "Open a study, comparison, run or trajectory folder",
            Self::Model {
                side: Side::Base, ..
            } => "Base model",
            Self::Model {
                side: Side::Tuned, ..
            } => "Tuned model",
            Self::Dataset => "Dataset (JSON lines)",
            Self::StudyFolder => "Study output folder",
            Self::TuneModel { .. } => "Model to fine-tune",
            Self::TuneDataset => "Fine-tuning questions (JSON lines with answers)",
            Self::TuneFolder => "Fine-tune output folder",
            Self::SaveFigure(..) => "Save figure (the extension is set per format)",
            Self::SaveEdges => "Save the most changed edges (CSV)",
            Self::ExportAll => "Export all figures into",
            Self::Lab => "Lab folder (subfolders with train_log.csv)",
        }
    }

    fn kind(self) -> Kind {
        match self {
            Self::Results
            | Self::Lab
            | Self::Model { folder: true, .. }
            | Self::TuneModel { folder: true } => Kind::Folder,
            Self::TuneModel { folder: false } => Kind::File("Model", &["gguf", "safetensors"]),
            Self::Model { folder: false, .. } => Kind::File("Model", &["gguf", "safetensors"]),
            Self::Dataset | Self::TuneDataset => Kind::File("JSON lines", &["jsonl", "json"]),
            Self::SaveFigure(..) | Self::SaveEdges => Kind::Save,
            Self::StudyFolder | Self::TuneFolder | Self::ExportAll => Kind::NewFolder,
        }
    }

    /// The native dialog's answer; `None` when cancelled or unavailable.
    fn dialog(self) -> Option<PathBuf> {
        let d = rfd::FileDialog::new().set_title(self.title());
        match self.kind() {
            Kind::Folder | Kind::NewFolder => d.pick_folder(),
            Kind::File(name, extensions) => d.add_filter(name, extensions).pick_file(),
            Kind::Save => {
                let (file, filter, extensions): (String, &str, &[&str]) = match self {
                    Self::SaveFigure(view, mode) => {
                        (view.file_name_in(mode), "PNG and SVG", &["png", "svg"])
                    }
                    _ => (EDGE_CHANGES.to_owned(), "CSV", &["csv"]),
                };
                d.set_file_name(file)
                    .add_filter(filter, extensions)
                    .save_file()
            }
        }
    }

    /// Why `text` cannot serve as this pick's path, if it cannot.
    pub fn check(self, text: &str) -> Result<PathBuf, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("type a path".into());
        }
        let path = PathBuf::from(text);
        let exists = |p: &Path, what: &str| {
            if p.exists() {
                Ok(())
            } else {
                Err(format!("{}: no such {what}", p.display()))
            }
        };
        match self.kind() {
            Kind::Folder => {
                exists(&path, "folder")?;
                if !path.is_dir() {
                    return Err(format!("{}: not a folder", path.display()));
                }
            }
            Kind::File(_, extensions) => {
                exists(&path, "file")?;
                let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
                if !path.is_file() || !extensions.contains(&ext) {
                    return Err(format!(
                        "{}: expected a .{} file",
                        path.display(),
                        extensions.join(" or .")
                    ));
                }
            }
            Kind::Save | Kind::NewFolder => {
                let parent = match path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
                    _ => PathBuf::from("."),
                };
                exists(&parent, "folder")?;
            }
        }
        Ok(path)
    }
}

/// A dialog that answers this fast never showed a window (no portal answered).
const NO_DIALOG: Duration = Duration::from_millis(150);

/// Whether a native dialog can be shown at all: on Linux and the BSDs the dialogs go through
/// the desktop portal on the session bus.
pub fn native_dialogs() -> bool {
    if cfg!(any(target_os = "windows", target_os = "macos")) {
        return true;
    }
    std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some_and(|a| !a.is_empty())
}

/// The typed-path window of a pick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPrompt {
    pub pick: Pick,
    pub text: String,
    /// Why the typed path was refused.
    pub error: Option<String>,
}

/// Ask for a path: the native dialog when `dialogs`, falling back to a typed-path window when
/// no dialog could be shown. `Ok(Some)`: chosen; `Ok(None)`: cancelled; `Err`: type one.
pub fn ask(pick: Pick, dialogs: bool) -> Result<Option<PathBuf>, PathPrompt> {
    let prompt = PathPrompt {
        pick,
        text: String::new(),
        error: None,
    };
    if !dialogs {
        return Err(prompt);
    }
    let start = Instant::now();
    match pick.dialog() {
        Some(p) => Ok(Some(p)),
        None if start.elapsed() < NO_DIALOG => Err(prompt),
        None => Ok(None),
    }
}

/// What the user did in the typed-path window this frame.
pub enum Answer {
    Open(PathBuf),
    Cancel,
}

/// The typed-path window's contents.
pub fn prompt_ui(ui: &mut Ui, prompt: &mut PathPrompt) -> Option<Answer> {
    ui.label("No file dialog is available on this desktop: type the path.");
    let field = ui.add(
        egui::TextEdit::singleline(&mut prompt.text)
            .hint_text("/path/to/…")
            .desired_width(420.0),
    );
    let entered = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
    if let Some(e) = &prompt.error {
        ui.colored_label(super::theme::Palette::of(ui.ctx()).error(), e);
    }
    let mut answer = None;
    ui.horizontal(|ui| {
        if ui.button("Use this path").clicked() || entered {
            match prompt.pick.check(&prompt.text) {
                Ok(p) => answer = Some(Answer::Open(p)),
                Err(e) => prompt.error = Some(e),
            }
        }
        if ui.button("Cancel").clicked() {
            answer = Some(Answer::Cancel);
        }
    });
    answer
}
