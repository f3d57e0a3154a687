//! Every view as a figure drawn by the report's renderer (`report::render`), not a screen grab:
//! "Save figure…" writes the shown view as PNG at a chosen pixel width and as SVG with real
//! text, and "Export all figures…" writes every view in every mode, both on a background thread.

use super::error::AppError;
use super::results::Results;
use super::trajectory::TrajectoryState;
use super::views::heatmap::FixedScale;
use super::views::training::TrainingState;
use super::views::{table, View, ViewState};
use super::worker::Worker;
use crate::report::circuit::{EdgeSelection, Mode};
use crate::report::figures::{self, CircuitGraph, Heatmap, Histogram, LineChart, Scatter};
use crate::report::render::{self, Figure, Scale};
use crate::report::table::Table;
use std::path::{Path, PathBuf};

/// The data of one view's figure, owned, so that it can be drawn on another thread.
pub enum FigureData {
    Circuit(CircuitGraph),
    Heatmap(Heatmap),
    /// Scatter charts, line charts then histograms, in a grid of `columns`.
    Charts {
        scatters: Vec<Scatter>,
        lines: Vec<LineChart>,
        histograms: Vec<Histogram>,
        columns: usize,
    },
    Table {
        title: String,
        table: Table,
    },
}

impl FigureData {
    /// Call `f` with the figure.
    pub fn with<R>(&self, f: impl FnOnce(Figure) -> R) -> R {
        match self {
            Self::Circuit(g) => f(Figure::Circuit(g)),
            Self::Heatmap(map) => f(Figure::Heatmaps(std::slice::from_ref(map))),
            Self::Charts {
                scatters,
                lines,
                histograms,
                columns,
            } => {
                let figures: Vec<Figure> = scatters
                    .iter()
                    .map(Figure::Scatter)
                    .chain(lines.iter().map(Figure::Line))
                    .chain(histograms.iter().map(Figure::Histogram))
                    .collect();
                f(Figure::Grid {
                    figures: &figures,
                    columns: *columns,
                })
            }
            Self::Table { title, table } => f(Figure::Table { title, table }),
        }
    }

    /// Put the pair of models before every title of the figure, so that saved figures of two
    /// studies tell apart (a table's title names the pair already).
    fn name_pair(&mut self, pair: &str) {
        let put = |title: &mut String| *title = figures::titled(pair, title);
        match self {
            Self::Circuit(g) => put(&mut g.title),
            Self::Heatmap(map) => put(&mut map.title),
            Self::Charts {
                scatters,
                lines,
                histograms,
                ..
            } => {
                scatters.iter_mut().for_each(|c| put(&mut c.title));
                lines.iter_mut().for_each(|c| put(&mut c.title));
                histograms.iter_mut().for_each(|c| put(&mut c.title));
            }
            Self::Table { .. } => {}
        }
    }

    /// The figure's size in base units (the SVG's size; the PNG's at scale 1).
    pub fn base_size(&self) -> (u32, u32) {
        self.with(|f| f.base_size())
    }
}

/// What the figures are drawn from besides the results.
pub struct Sources<'a> {
    pub results: Option<&'a Results>,
    pub trajectory: &'a TrajectoryState,
    pub views: &'a ViewState,
    pub top_k: usize,
    pub log_y: bool,
    pub heatmap_scale: FixedScale,
}

/// The figure of `view` in `mode`, or why there is none.
pub fn figure_of(view: View, mode: Mode, src: &Sources) -> Result<FigureData, AppError> {
    match (view, src.results) {
        (View::Training, _) => training_figure(&src.views.training),
        (View::Trajectory, _) => trajectory_figure(src.trajectory),
        (_, Some(r)) => {
            let mut data = results_figure(view, mode, r, src)?;
            data.name_pair(&r.title);
            Ok(data)
        }
        (_, None) => Err(AppError::NoFigure("no results are open")),
    }
}

/// The figure of a view of `r`.
fn results_figure(
    view: View,
    mode: Mode,
    r: &Results,
    src: &Sources,
) -> Result<FigureData, AppError> {
    let f = &r.figures;
    Ok(match view {
        View::Graph => {
            let select = EdgeSelection {
                share: 1.0,
                max: src.top_k,
            };
            FigureData::Circuit(figures::circuit_graph(&r.circuit, mode, select).ok_or(
                AppError::NoFigure("these results have no scores for this mode"),
            )?)
        }
        View::Heatmap => {
            let index = Mode::ALL.iter().position(|&m| m == mode).unwrap_or(0);
            let mut map = f
                .heatmaps
                .get(index)
                .ok_or(AppError::NoFigure("these results hold one run"))?
                .clone();
            if let Some(range) = src.heatmap_scale.range(mode) {
                map.range = range;
            }
            FigureData::Heatmap(map)
        }
        View::Distributions => {
            let mut sorted = f.sorted.clone();
            sorted.log_y = src.log_y;
            FigureData::Charts {
                scatters: Vec::new(),
                lines: vec![sorted, f.cumulative.clone()],
                histograms: vec![f.histogram.clone()],
                columns: 1,
            }
        }
        View::Layers => FigureData::Charts {
            scatters: Vec::new(),
            lines: super::views::charts::per_layer_charts(r, mode).to_vec(),
            histograms: Vec::new(),
            columns: 2,
        },
        View::Table => FigureData::Table {
            title: format!("{}: paired comparison", r.title),
            table: table::table(r, src.views.table),
        },
        View::Edges => edges_figure(r, src)?,
        View::Faithfulness => {
            let (scatters, curves) = f.exact.clone().ok_or(AppError::NoFigure(
                "these results hold no exact effects (run the study with exact effects on)",
            ))?;
            FigureData::Charts {
                scatters,
                lines: vec![curves],
                histograms: f.losses.clone().into_iter().collect(),
                columns: 2,
            }
        }
        View::Questions => {
            // The selected question, else the first scored one.
            let q = src
                .views
                .questions
                .selected
                .and_then(|i| r.questions.get(i))
                .or_else(|| r.questions.iter().find(|q| q.sample.is_some()))
                .ok_or(AppError::NoFigure("no question was scored"))?;
            let circuit = r
                .sample_circuit(q)
                .ok_or(AppError::NoFigure("this question was not scored"))?;
            let select = super::views::questions::SAMPLE_EDGES;
            let mut g = figures::circuit_graph(&circuit, mode, select).ok_or(
                AppError::NoFigure("this question has no scores for this mode"),
            )?;
            g.title = format!("{}, question {}", g.title, q.id);
            FigureData::Circuit(g)
        }
        View::Training => training_figure(&src.views.training)?,
        View::Trajectory => trajectory_figure(src.trajectory)?,
    })
}

/// The most changed edges as a table, in the shown order.
fn edges_figure(r: &Results, src: &Sources) -> Result<FigureData, AppError> {
    let changes = r
        .edges
        .as_ref()
        .and_then(|e| e.as_ref().ok())
        .ok_or(AppError::NoFigure("these results have no tested edges"))?;
    Ok(FigureData::Table {
        title: format!("{}: most changed edges", r.title),
        table: super::views::edges::table(changes, src.views.edges),
    })
}

/// Every chart of the training view, stage by stage, two a row.
fn training_figure(state: &TrainingState) -> Result<FigureData, AppError> {
    let lines: Vec<LineChart> = state
        .stages
        .iter()
        .flat_map(|(stage, charts)| {
            charts.iter().map(move |c| {
                let mut c = c.clone();
                c.title = format!("{}: {}", stage.label(), c.title);
                c
            })
        })
        .collect();
    if lines.is_empty() {
        return Err(AppError::NoFigure("no training logs are open"));
    }
    Ok(FigureData::Charts {
        scatters: Vec::new(),
        lines,
        histograms: Vec::new(),
        columns: 2,
    })
}

/// The trajectory's chosen metrics over the steps (their paired change from the first
/// checkpoint, or their levels) with their intervals, then its training curves, two a row.
fn trajectory_figure(state: &TrajectoryState) -> Result<FigureData, AppError> {
    let data = state
        .data
        .as_ref()
        .ok_or(AppError::NoFigure("no trajectory is open"))?;
    let lines = state
        .metrics
        .iter()
        .filter_map(|&m| data.metric_chart(m, state.levels).cloned())
        .chain(data.training.iter().cloned())
        .collect();
    Ok(FigureData::Charts {
        scatters: Vec::new(),
        lines,
        histograms: Vec::new(),
        columns: 2,
    })
}

/// The file formats a figure is saved in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Formats {
    pub png: bool,
    pub svg: bool,
}

impl Default for Formats {
    fn default() -> Self {
        Self {
            png: true,
            svg: true,
        }
    }
}

/// The "Save figure" window: open or not, the formats, and the PNG's width in pixels.
#[derive(Debug, Clone, Copy, Default)]
pub struct SaveForm {
    pub open: bool,
    pub formats: Formats,
    /// `None`: twice the view's width on screen.
    pub width: Option<u32>,
}

/// Write `data` at `path`'s stem: `.png` at `scale`, `.svg` at the base size; returns the files
/// and the PNG's pixel size.
fn write(
    data: &FigureData,
    path: &Path,
    formats: Formats,
    scale: Scale,
) -> Result<Vec<PathBuf>, AppError> {
    let failed = |path: &Path, message: String| AppError::Image {
        path: path.to_owned(),
        message,
    };
    let mut written = Vec::new();
    let mut put = |ext: &str, bytes: Result<Vec<u8>, String>| {
        let file = path.with_extension(ext);
        let bytes = bytes.map_err(|m| failed(&file, m))?;
        crate::fsutil::write_atomic(&file, &bytes).map_err(|source| AppError::Io {
            path: file.clone(),
            source,
        })?;
        written.push(file);
        Ok::<_, AppError>(())
    };
    if formats.png {
        put("png", data.with(|f| render::png(f, scale)))?;
    }
    if formats.svg {
        put("svg", data.with(|f| render::svg(f).map(String::into_bytes)))?;
    }
    Ok(written)
}

/// A figure to save: its data, where, in which formats, and the PNG's scale.
pub struct Job {
    pub data: FigureData,
    pub path: PathBuf,
    pub formats: Formats,
    pub scale: Scale,
}

/// Figures being written on background threads.
#[derive(Default)]
pub struct Saver {
    running: Vec<Worker<Vec<PathBuf>>>,
}

impl Saver {
    /// Write `jobs` on a background thread.
    pub fn start(&mut self, ctx: &egui::Context, jobs: Vec<Job>) -> Result<(), AppError> {
        let repaint = ctx.clone();
        let worker = Worker::spawn(
            "figure-writer",
            Box::new(move || repaint.request_repaint()),
            move |_, _| {
                let mut written = Vec::new();
                for job in &jobs {
                    written.extend(write(&job.data, &job.path, job.formats, job.scale)?);
                }
                Ok(written)
            },
        )
        .map_err(|source| AppError::Spawn {
            what: "the figure writer",
            source,
        })?;
        self.running.push(worker);
        Ok(())
    }

    /// Whether figures are being written.
    pub fn busy(&self) -> bool {
        !self.running.is_empty()
    }

    /// The batches that finished: the files each wrote, or what went wrong.
    pub fn finished(&mut self) -> Vec<Result<Vec<PathBuf>, AppError>> {
        super::worker::finished(&mut self.running)
    }
}
