//! Frame-time benchmark of the circuit graph: a window showing only the graph canvas of a
//! synthetic circuit (random heavy-tailed scores; the default edges, every edge, or nothing for
//! the baseline), repainting as fast as it can without vsync; reports the time between frames
//! and egui's CPU time per frame.

use super::views::graph::{canvas_ui, GraphState};
use crate::attribution::{Graph, Level};
use crate::report::circuit::{Circuit, EdgeSelection, Mode};
use rand::{Rng as _, SeedableRng as _};
use rand_distr::Distribution as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What to draw and for how long.
#[derive(Debug, Clone, Copy)]
pub struct BenchOptions {
    pub layers: usize,
    /// Attention and key/value heads of a head-level graph; `None`: block level.
    pub heads: Option<(usize, usize)>,
    /// Frames measured (after 30 of warm-up).
    pub frames: usize,
    /// Window size in points.
    pub size: [f32; 2],
    pub draw: Draw,
}

/// What the window draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Draw {
    /// Nothing: the frame time of an empty window, the baseline.
    Empty,
    /// The graph at the app's default settings: the edges that hold 80 % of the |score| mass,
    /// at most 100.
    Default,
    /// The graph with every edge in the top-k (level of detail and culling still apply).
    AllEdges,
}

/// Frames drawn before measuring.
const WARM_UP: usize = 30;

/// A circuit of the given shape with seeded heavy-tailed scores for base and tuned.
pub fn synthetic_circuit(layers: usize, heads: Option<(usize, usize)>) -> anyhow::Result<Circuit> {
    let (h, kv) = heads.unwrap_or((4, 4));
    let json = serde_json::json!({
        "model_type": "llama", "vocab_size": 32000, "hidden_size": 128 * h,
        "intermediate_size": 512, "num_hidden_layers": layers,
        "num_attention_heads": h, "num_key_value_heads": kv,
    });
    let cfg = crate::model::ModelConfig::from_hf_json(&json, std::path::Path::new("synthetic"))?;
    let level = if heads.is_some() {
        Level::Head
    } else {
        Level::Block
    };
    let graph = Graph::new(&cfg, level);
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let normal = rand_distr::StandardNormal;
    let mut scores = |scale: f32| -> Vec<f32> {
        (0..graph.num_edges())
            .map(|_| {
                let n: f32 = normal.sample(&mut rng);
                let spread: f32 = normal.sample(&mut rng);
                let sign = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
                sign * scale * n.abs() * (1.5 * spread).exp() * 1e-3
            })
            .collect()
    };
    let base = scores(1.0);
    let tuned = scores(1.2);
    Ok(Circuit::new(&graph, base, Some(tuned)))
}

/// CPU seconds (user + system, all threads) this process has used, where `/proc` tells.
fn process_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

struct BenchApp {
    circuit: Circuit,
    /// The edges drawn: the default selection or all (set once, as the app does on loading).
    top_k: usize,
    state: GraphState,
    opts: BenchOptions,
    frame: usize,
    last: Option<Instant>,
    intervals: Vec<f64>,
    cpu: Vec<f64>,
    /// Process CPU time and wall clock when measuring began.
    start: Option<(Option<f64>, Instant)>,
    report: Arc<Mutex<Option<String>>>,
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(((v.len().saturating_sub(1)) as f64 * q).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

impl eframe::App for BenchApp {
    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        let now = Instant::now();
        if self.frame == WARM_UP {
            self.start = Some((process_cpu_secs(), now));
        }
        if self.frame > WARM_UP {
            if let Some(last) = self.last {
                self.intervals.push((now - last).as_secs_f64() * 1e3);
            }
            if let Some(cpu) = frame.info().cpu_usage {
                self.cpu.push(f64::from(cpu) * 1e3);
            }
        }
        self.last = Some(now);
        self.frame += 1;
        egui::CentralPanel::default().show(ui, |ui| {
            if self.opts.draw != Draw::Empty {
                let k = self.top_k;
                canvas_ui(ui, &self.circuit, Mode::Difference, k, &mut self.state);
            }
        });
        if self.intervals.len() >= self.opts.frames {
            let (mut iv, mut cpu) = (self.intervals.clone(), self.cpu.clone());
            let process = match (self.start, process_cpu_secs()) {
                (Some((Some(c0), t0)), Some(c1)) => format!(
                    "; process CPU time {:.1} ms per frame ({:.2} cores busy)",
                    (c1 - c0) * 1e3 / iv.len() as f64,
                    (c1 - c0) / (now - t0).as_secs_f64()
                ),
                _ => String::new(),
            };
            let text = format!(
                "{} edges, {} drawn per frame, {} frames: frame interval median {:.2} ms, p95 {:.2} ms; egui CPU time median {:.2} ms, p95 {:.2} ms{process}",
                self.circuit.edges.len(),
                self.state.drawn,
                iv.len(),
                percentile(&mut iv, 0.5),
                percentile(&mut iv, 0.95),
                percentile(&mut cpu, 0.5),
                percentile(&mut cpu, 0.95),
            );
            if let Ok(mut r) = self.report.lock() {
                *r = Some(text);
            }
            ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
        } else {
            ui.ctx().request_repaint();
        }
    }
}

/// Run the benchmark window; returns the report line.
pub fn run(opts: BenchOptions) -> anyhow::Result<String> {
    let circuit = synthetic_circuit(opts.layers, opts.heads)?;
    let top_k = match opts.draw {
        Draw::Default => circuit.selected(Mode::Difference, EdgeSelection::default()),
        Draw::Empty | Draw::AllEdges => circuit.edges.len(),
    };
    let report: Arc<Mutex<Option<String>>> = Arc::default();
    let app_report = report.clone();
    let mut native = super::options::native_options(false, Some(opts.size));
    native.viewport = native.viewport.with_resizable(false);
    native.wgpu_options.surface.present_mode = eframe::wgpu::PresentMode::AutoNoVsync;
    eframe::run_native(
        "circuitdiff-bench",
        native,
        Box::new(move |_| {
            Ok(Box::new(BenchApp {
                circuit,
                top_k,
                state: GraphState::default(),
                opts,
                frame: 0,
                last: None,
                intervals: Vec::new(),
                cpu: Vec::new(),
                start: None,
                report: app_report,
            }))
        }),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))?;
    let text = report.lock().ok().and_then(|mut r| r.take());
    text.ok_or_else(|| anyhow::anyhow!("the window closed before the benchmark finished"))
}
