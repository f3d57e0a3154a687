//! The model picker: a base slot and a tuned slot, each filled from a file dialog, by drag and
//! drop, or with a Hugging Face id (downloaded with per-file progress, cancellable), then
//! inspected; a pair whose vocabularies or graphs differ is refused with the reason.

use super::commands::Command;
use super::error::{AppError, NotReady};
use super::paths::Pick;
use super::theme::Palette;
use super::worker::{Message, Stages, Worker};
use crate::attribution::pair::{self, Checkpoint};
use crate::attribution::Level;
use crate::message;
use crate::model::{self, DownloadProgress, HubOptions, ModelConfig, ModelInfo};
use crate::progress::{CancelToken, Progress};
use crate::side::{PerSide, Side};
use egui::Ui;
use std::ops::ControlFlow;
use std::time::Duration;

/// A slot's title.
pub fn slot_title(side: Side) -> &'static str {
    match side {
        Side::Base => "Base model",
        Side::Tuned => "Tuned model",
    }
}

/// One slot's inspection.
#[derive(Default)]
pub struct Slot {
    /// The spec the info is about.
    pub info: Option<(String, ModelInfo)>,
    job: Option<(String, Worker<ModelInfo>)>,
    download: Stages,
    pub error: Option<AppError>,
    /// Where the slot was drawn (drops over it fill it).
    pub rect: Option<egui::Rect>,
}

/// What the pair check reads of one model.
pub struct PairHead {
    config: ModelConfig,
    vocabulary: Vec<(String, u32)>,
}

/// The two models' configurations and vocabularies, read for the pair check.
#[derive(Default)]
pub enum PairHeads {
    #[default]
    Unknown,
    Reading(Worker<PerSide<(String, PairHead)>>),
    Read(Box<PerSide<(String, PairHead)>>),
    /// A configuration or tokenizer could not be read.
    Unreadable(AppError),
}

/// The picker's state.
#[derive(Default)]
pub struct ModelPicker {
    pub slots: PerSide<Slot>,
    pub heads: PairHeads,
}

/// Reports Hub downloads as progress stages, and stops them when the job is cancelled (the
/// partial file is resumed next time).
struct DownloadBridge<'a> {
    progress: &'a mut dyn Progress,
    cancel: &'a CancelToken,
    done: u64,
}

impl DownloadProgress for DownloadBridge<'_> {
    fn start(&mut self, file: &str, size: u64) {
        self.done = 0;
        self.progress.start(&format!("download {file}"), size);
    }

    fn advance(&mut self, bytes: u64) -> ControlFlow<()> {
        if self.cancel.is_cancelled() {
            return ControlFlow::Break(());
        }
        self.done += bytes;
        self.progress.set(self.done);
        ControlFlow::Continue(())
    }

    fn finish(&mut self) {}
}

/// Resolve `spec` (downloading a Hub id, stopped by `cancel`) and inspect it.
fn inspect_job(
    spec: &str,
    hub: &HubOptions,
    progress: &mut dyn Progress,
    cancel: &CancelToken,
) -> Result<ModelInfo, AppError> {
    let mut bridge = DownloadBridge {
        progress,
        cancel,
        done: 0,
    };
    let ckpt = model::resolve(spec, hub, Some(&mut bridge))?;
    Ok(model::inspect(spec, &ckpt, 512)?)
}

impl ModelPicker {
    /// Inspect `spec` in the slot of `side` (resolving, and downloading a Hub id first).
    pub fn inspect(&mut self, ctx: &egui::Context, side: Side, spec: String) {
        let s = &mut self.slots[side];
        s.error = None;
        s.download = Stages::default();
        s.info = None;
        self.heads = PairHeads::Unknown;
        let repaint = ctx.clone();
        let job_spec = spec.clone();
        match Worker::spawn(
            "model-inspect",
            Box::new(move || repaint.request_repaint()),
            move |progress, cancel| {
                inspect_job(&job_spec, &HubOptions::default(), progress, cancel)
            },
        ) {
            Ok(w) => s.job = Some((spec, w)),
            Err(source) => {
                s.error = Some(AppError::Spawn {
                    what: "the model inspection",
                    source,
                })
            }
        }
    }

    /// Stop a slot's download or inspection.
    pub fn cancel(&mut self, side: Side) {
        if let Some((_, w)) = &self.slots[side].job {
            w.cancel();
        }
    }

    /// Drain the jobs; returns the specs inspected successfully (for the recent list).
    pub fn logic(&mut self, ctx: &egui::Context) -> Vec<String> {
        let mut inspected = Vec::new();
        for side in Side::BOTH {
            let s = &mut self.slots[side];
            let Some((spec, worker)) = &mut s.job else {
                continue;
            };
            let mut finished = None;
            for msg in worker.poll(Duration::from_millis(2)) {
                s.download.apply(&msg);
                if let Message::Finished(r) = msg {
                    finished = Some(r);
                }
            }
            match finished {
                Some(Ok(info)) => {
                    inspected.push(spec.clone());
                    s.info = Some((spec.clone(), info));
                    s.job = None;
                }
                Some(Err(e)) => {
                    s.error = Some(e);
                    s.job = None;
                }
                None => {}
            }
        }
        self.read_heads(ctx);
        inspected
    }

    /// Read both models' configurations and vocabularies once both are inspected.
    fn read_heads(&mut self, ctx: &egui::Context) {
        if let PairHeads::Reading(w) = &mut self.heads {
            for msg in w.poll(Duration::from_millis(2)) {
                if let Message::Finished(r) = msg {
                    self.heads = match r {
                        Ok(heads) => PairHeads::Read(Box::new(heads)),
                        Err(e) => PairHeads::Unreadable(e),
                    };
                    break;
                }
            }
        } else if matches!(self.heads, PairHeads::Unknown) {
            if let (Some((a, _)), Some((b, _))) = (&self.slots.base.info, &self.slots.tuned.info) {
                let specs = PerSide {
                    base: a.clone(),
                    tuned: b.clone(),
                };
                let repaint = ctx.clone();
                if let Ok(w) = Worker::spawn(
                    "pair-check",
                    Box::new(move || repaint.request_repaint()),
                    move |_, _| {
                        let hub = HubOptions::default();
                        PerSide::try_from_fn(|side| {
                            let spec = &specs[side];
                            let (config, tok) = model::load_without_weights(spec, &hub)?;
                            let vocabulary = tok.vocabulary();
                            Ok((spec.clone(), PairHead { config, vocabulary }))
                        })
                    },
                ) {
                    self.heads = PairHeads::Reading(w);
                }
            }
        }
    }

    /// Whether the two models can be compared at `level`; `None` until both are read.
    pub fn pair(&self, level: Level) -> Option<Result<(), NotReady>> {
        match &self.heads {
            PairHeads::Read(heads) => {
                let checkpoint = |side: Side| {
                    let (spec, head) = &heads[side];
                    Checkpoint {
                        name: format!("{side} {spec}"),
                        config: &head.config,
                        vocabulary: &head.vocabulary,
                    }
                };
                let r = pair::check(&checkpoint(Side::Base), &checkpoint(Side::Tuned), level);
                Some(r.map_err(NotReady::from))
            }
            PairHeads::Unreadable(e) => Some(Err(NotReady::Refused(message::chain(e)))),
            PairHeads::Unknown | PairHeads::Reading(_) => None,
        }
    }

    /// `Ok` when both slots are inspected and can be compared at `level`; else why not.
    pub fn ready(&self, specs: &PerSide<String>, level: Level) -> Result<(), NotReady> {
        for side in Side::BOTH {
            match &self.slots[side].info {
                Some((inspected, _)) if *inspected == specs[side] => {}
                _ => return Err(NotReady::NotInspected { side }),
            }
        }
        self.pair(level).unwrap_or(Err(NotReady::Checking))
    }
}

fn info_ui(ui: &mut Ui, info: &ModelInfo) {
    if let Some(adapter) = &info.adapter {
        ui.label(adapter.describe());
    }
    let c = &info.config;
    let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
    egui::Grid::new(("model_info", &info.spec)).show(ui, |ui| {
        let rows = [
            ("family", c.family.name().to_owned()),
            ("layers", c.num_layers.to_string()),
            ("hidden", c.hidden_size.to_string()),
            (
                "heads / kv",
                format!("{} / {}", c.num_heads, c.num_kv_heads),
            ),
            ("vocabulary", c.vocab_size.to_string()),
            (
                "parameters",
                format!("{:.3} M", info.num_params as f64 / 1e6),
            ),
            ("weights", info.checkpoint_dtype.clone()),
            ("graph edges", info.num_edges.to_string()),
            (
                "memory (512 tokens)",
                format!("{:.2} GiB", gib(info.memory.total)),
            ),
        ];
        for (k, v) in rows {
            ui.label(k);
            ui.label(v);
            ui.end_row();
        }
    });
}

/// The two slots, the pair check at the study's `level` and the recent models.
pub fn models_ui(
    ui: &mut Ui,
    (picker, level): (&mut ModelPicker, Level),
    specs: &mut PerSide<String>,
    recent: &[String],
    demo_pairs: &[(String, std::path::PathBuf, std::path::PathBuf)],
    cmds: &mut Vec<Command>,
) {
    let palette = Palette::of(ui.ctx());
    for side in Side::BOTH {
        let slot = &mut picker.slots[side];
        let r = ui.group(|ui| slot_ui(ui, side, slot, &mut specs[side], cmds));
        slot.rect = Some(r.response.rect);
    }
    match picker.pair(level) {
        Some(Ok(())) => {
            ui.label("Same vocabulary and graph: the pair can be compared");
        }
        Some(Err(why)) => {
            ui.colored_label(palette.error(), format!("Refused: {why}"));
        }
        None if matches!(picker.heads, PairHeads::Reading(_)) => {
            ui.label(NotReady::Checking.to_string());
        }
        None => {}
    }
    if !demo_pairs.is_empty() {
        ui.horizontal_wrapped(|ui| {
            ui.label("Demo pairs");
            for (label, base, tuned) in demo_pairs {
                if ui.button(label).clicked() {
                    for (side, p) in (PerSide { base, tuned }).iter() {
                        cmds.push(Command::SetModel {
                            side,
                            spec: p.display().to_string(),
                        });
                    }
                }
            }
        });
    }
    if !recent.is_empty() {
        recent_ui(ui, recent, cmds);
    }
}

/// One slot: its spec, the buttons that fill and inspect it, progress, error and details.
fn slot_ui(ui: &mut Ui, side: Side, slot: &Slot, spec: &mut String, cmds: &mut Vec<Command>) {
    ui.strong(slot_title(side));
    ui.add(
        egui::TextEdit::singleline(spec)
            .hint_text("folder, .gguf / .safetensors, or org/name")
            .desired_width(f32::INFINITY),
    );
    ui.horizontal(|ui| {
        if ui.button("Folder…").clicked() {
            cmds.push(Command::Choose(Pick::Model { side, folder: true }));
        }
        if ui.button("File…").clicked() {
            cmds.push(Command::Choose(Pick::Model {
                side,
                folder: false,
            }));
        }
        let busy = slot.job.is_some();
        let can_inspect = !busy && !spec.trim().is_empty();
        if ui
            .add_enabled(can_inspect, egui::Button::new("Inspect"))
            .clicked()
        {
            cmds.push(Command::Inspect(side));
        }
        if busy && ui.button("Cancel").clicked() {
            cmds.push(Command::CancelInspect(side));
        }
    });
    if slot.job.is_some() {
        match slot.download.stages.last() {
            Some(stage) => {
                ui.add(egui::ProgressBar::new(stage.fraction()).text(format!(
                    "{}: {:.1} / {:.1} MB",
                    stage.name,
                    stage.done as f64 / 1e6,
                    stage.total as f64 / 1e6
                )));
            }
            None => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("inspecting…");
                });
            }
        }
    }
    if let Some(e) = &slot.error {
        ui.colored_label(Palette::of(ui.ctx()).error(), message::chain(e));
    }
    if let Some((inspected, info)) = &slot.info {
        if inspected == spec {
            info_ui(ui, info);
        }
    }
}

/// Recently inspected models, each with buttons that put it into a slot.
fn recent_ui(ui: &mut Ui, recent: &[String], cmds: &mut Vec<Command>) {
    egui::CollapsingHeader::new("Recent models").show(ui, |ui| {
        for spec in recent {
            ui.horizontal(|ui| {
                for (side, label) in [(Side::Base, "Base"), (Side::Tuned, "Tuned")] {
                    if ui.small_button(label).clicked() {
                        cmds.push(Command::SetModel {
                            side,
                            spec: spec.clone(),
                        });
                    }
                }
                ui.label(super::results::short_name(spec))
                    .on_hover_text(spec);
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::time::Instant;

    /// A Hub at a local address whose every file has `size` bytes: the metadata probe
    /// (`Range: bytes=0-0`) is answered at once, a body 1 KiB every 10 ms until the client
    /// hangs up.
    fn slow_hub(size: usize) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let serve = move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut probe = false;
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 && !line.trim().is_empty() {
                    probe |= line.eq_ignore_ascii_case("range: bytes=0-0\r\n");
                    line.clear();
                }
                let len = if probe { 1 } else { size };
                let head = format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Length: {len}\r\nContent-Range: \
                     bytes 0-{}/{size}\r\netag: \"slow\"\r\nx-repo-commit: {}\r\n\
                     Connection: close\r\n\r\n",
                    len - 1,
                    "0".repeat(40),
                );
                let mut left = stream.write_all(head.as_bytes()).map(|_| len);
                while let Ok(n @ 1..) = left {
                    let piece = n.min(1024);
                    left = stream.write_all(&vec![b' '; piece]).map(|_| n - piece);
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        };
        std::thread::Builder::new()
            .name("slow-hub".into())
            .spawn(serve)
            .unwrap();
        addr
    }

    /// Cancelling the job while it downloads stops the download at the next chunk: the job
    /// ends with the cancellation, the partial file stays in the cache.
    #[test]
    fn a_cancelled_download_job_reports_a_cancellation() {
        for var in ["NO_PROXY", "no_proxy"] {
            let old = std::env::var(var).unwrap_or_default();
            std::env::set_var(var, format!("{old},127.0.0.1,localhost"));
        }
        let cache = tempfile::tempdir().unwrap();
        let hub = HubOptions {
            cache_dir: Some(cache.path().to_owned()),
            endpoint: Some(slow_hub(1 << 20)),
            ..HubOptions::default()
        };
        let mut worker = Worker::spawn("test-download", Box::new(|| {}), move |p, cancel| {
            inspect_job("acme/slow", &hub, p, cancel)
        })
        .unwrap();
        let start = Instant::now();
        let result = loop {
            let msgs = worker.poll(Duration::from_millis(5));
            if msgs.iter().any(|m| matches!(m, Message::Done(1..))) {
                worker.cancel();
            }
            if let Some(Message::Finished(r)) = msgs.into_iter().last() {
                break r;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "no result");
            std::thread::sleep(Duration::from_millis(5));
        };
        let e = result.expect_err("the download was not stopped");
        assert!(
            matches!(&e, AppError::Model(model::ModelError::Cancelled { file, .. }) if file == "config.json"),
            "{e}"
        );
        let part = cache.path().join("models--acme--slow/blobs/slow.part");
        let kept = std::fs::metadata(&part).unwrap().len();
        assert!(kept > 0 && kept < 1 << 20, "{kept} bytes kept");
    }

    fn picker_with(heads: PerSide<(&str, usize, &[&str])>) -> ModelPicker {
        let heads = heads.map(|side, (spec, layers, tokens)| {
            let json = serde_json::json!({
                "model_type": "llama", "vocab_size": 32, "hidden_size": 16,
                "intermediate_size": 16, "num_hidden_layers": layers,
                "num_attention_heads": 2, "num_key_value_heads": 1 + side as usize,
            });
            let config = ModelConfig::from_hf_json(&json, std::path::Path::new("c")).unwrap();
            let vocabulary = (0u32..).zip(tokens).map(|(i, t)| ((*t).to_owned(), i));
            let vocabulary = vocabulary.collect();
            (spec.to_owned(), PairHead { config, vocabulary })
        });
        ModelPicker {
            heads: PairHeads::Read(Box::new(heads)),
            ..ModelPicker::default()
        }
    }

    #[test]
    fn the_picker_refuses_with_the_pair_checks_words() {
        let picker = picker_with(PerSide {
            base: ("A", 2, &["a", "b"]),
            tuned: ("B", 2, &["a", "c", "d"]),
        });
        let why = picker.pair(Level::Block).unwrap().unwrap_err().to_string();
        assert_eq!(
            why,
            "base A and tuned B cannot be compared: their vocabularies differ (2 vs 3 tokens; \
             first difference at id 1: \"b\" vs \"c\"); circuits can only be compared between \
             checkpoints of one tokenizer"
        );
        // The tuned model has 2 key/value heads against the base's 1: the same graph at block
        // level, another at head level.
        let picker = picker_with(PerSide {
            base: ("A", 2, &["a"]),
            tuned: ("B", 2, &["a"]),
        });
        assert_eq!(picker.pair(Level::Block), Some(Ok(())));
        let why = picker.pair(Level::Head).unwrap().unwrap_err().to_string();
        assert!(
            why.starts_with(
                "base A and tuned B cannot be compared: their graphs differ (2 layers × 2 heads \
                 (1 key/value) at head level vs 2 layers × 2 heads (2 key/value) at head level)"
            ),
            "{why}"
        );
    }
}
