//! A trajectory folder (`circuitdiff trajectory`) in the app: its summary, every checkpoint's run
//! loaded once, the curves over the steps computed once, and the pair (first checkpoint,
//! checkpoint j) as the [`Results`] the other views show, built on a background thread when
//! another checkpoint is chosen.

use super::error::AppError;
use super::results::{AnswerView, Question, Results};
use super::worker::{Message, Worker};
use crate::attribution::metrics::Metric;
use crate::report::comparison;
use crate::report::figures::LineChart;
use crate::report::run::{self, Run};
use crate::report::train_log::LogSource;
use crate::report::trajectory::{self as summary, Point, Trajectory};
use crate::study::answers::Answer;
use crate::study::dataset;
use crate::study::kind::Kind;
use crate::study::trajectory_dir::{TrajectoryConfig, TrajectoryDir};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A question's text and reference answer.
struct Asked {
    question: String,
    reference: String,
}

/// A trajectory, loaded once.
pub struct TrajectoryResults {
    pub dir: PathBuf,
    pub summary: Trajectory,
    /// Each checkpoint's run, in the order of `summary.points`.
    runs: Vec<Arc<Run>>,
    /// Each checkpoint's answers by question id (none where its file is missing).
    answers: Vec<HashMap<String, AnswerView>>,
    /// The questions by id: from the dataset when it can be read here, else the prompts.
    asked: HashMap<String, Asked>,
    /// Every metric's mean over the steps with its interval as a band, in the order of
    /// [`Metric::ALL`].
    pub metric_charts: Vec<LineChart>,
    /// Every metric's paired change from the first checkpoint over the steps with its paired
    /// interval as a band, in the order of [`Metric::ALL`].
    pub difference_charts: Vec<LineChart>,
    /// The trainer's reward, accuracy, KL and loss, and the question set's accuracy.
    pub training: Vec<LineChart>,
}

/// What a folder opened as: results, or a trajectory with the pair of its ends as results.
pub enum Opened {
    Results(Box<Results>),
    Trajectory(Arc<TrajectoryResults>, Box<Results>),
}

/// Load a trajectory, study, comparison or run folder.
pub fn open(dir: &Path) -> Result<Opened, AppError> {
    if Kind::detect(dir) == Some(Kind::Trajectory) {
        let t = TrajectoryResults::load(dir)?;
        let results = t.pair(t.last())?;
        Ok(Opened::Trajectory(Arc::new(t), Box::new(results)))
    } else {
        Ok(Opened::Results(Box::new(Results::load(dir)?)))
    }
}

/// The answers of one checkpoint's file, by question id; a line that does not parse (the CLI
/// repairs its files when it resumes) is left out.
fn read_answers(path: &Path) -> Result<Vec<Answer>, AppError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(AppError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// The questions of the trajectory's dataset by id, when the dataset can be read from here.
fn dataset_questions(config: Option<&TrajectoryConfig>) -> HashMap<String, Asked> {
    let Some(study) = config.map(|c| &c.study) else {
        return HashMap::new();
    };
    dataset::parse_spec(&study.dataset)
        .and_then(|spec| dataset::load(&spec, study.offset, study.limit))
        .map(|(questions, _)| {
            questions
                .into_iter()
                .map(|q| {
                    let asked = Asked {
                        question: q.question,
                        reference: q.reference,
                    };
                    (q.id, asked)
                })
                .collect()
        })
        .unwrap_or_default()
}

impl TrajectoryResults {
    /// Read `summary.json`, every checkpoint's run and answers, and the trainer's log.
    pub fn load(dir: &Path) -> Result<Self, AppError> {
        let folder = TrajectoryDir::new(dir);
        let summary = summary::read(&folder.summary_path())?
            .filter(|s| !s.points.is_empty())
            .ok_or_else(|| AppError::UnfinishedTrajectory {
                path: dir.to_owned(),
            })?;
        let runs = summary
            .points
            .iter()
            .map(|p| run::load(&dir.join(&p.run)).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let mut asked = dataset_questions(folder.read_config()?.as_ref());
        let mut answers = Vec::new();
        for (j, run) in runs.iter().enumerate() {
            let mut by_id = HashMap::new();
            // Tokens scored per answer (the browser counts them; a trajectory's checkpoints
            // are not decoded).
            let scored: HashMap<&str, usize> = run
                .manifest
                .samples
                .iter()
                .map(|s| (s.id.as_str(), s.k))
                .collect();
            for a in read_answers(&folder.answers_path(j))? {
                asked.entry(a.id.clone()).or_insert_with(|| Asked {
                    question: a.prompt.clone(),
                    reference: a.grade.reference.clone(),
                });
                by_id.insert(
                    a.id.clone(),
                    AnswerView::of(&a, scored.get(a.id.as_str()).map(|&k| (k, None))),
                );
            }
            answers.push(by_id);
        }
        let log_path = folder.train_log_path();
        let log = if log_path.is_file() {
            Some(LogSource::LabCsv(log_path).read()?)
        } else {
            None
        };
        Ok(Self {
            dir: dir.to_owned(),
            metric_charts: Metric::ALL
                .into_iter()
                .map(|m| summary::metric_chart(&summary, m))
                .collect(),
            difference_charts: Metric::ALL
                .into_iter()
                .map(|m| summary::difference_chart(&summary, m))
                .collect(),
            training: summary::training_charts(&summary, log.as_ref()),
            summary,
            runs,
            answers,
            asked,
        })
    }

    /// The index of the last checkpoint.
    pub fn last(&self) -> usize {
        self.summary.points.len().saturating_sub(1)
    }

    /// Checkpoint `j`'s point of the summary.
    pub fn point(&self, j: usize) -> Option<&Point> {
        self.summary.points.get(j)
    }

    /// The curve of `metric`: its levels, or its paired change from the first checkpoint.
    pub fn metric_chart(&self, metric: Metric, levels: bool) -> Option<&LineChart> {
        let i = Metric::ALL.iter().position(|&m| m == metric)?;
        if levels {
            self.metric_charts.get(i)
        } else {
            self.difference_charts.get(i)
        }
    }

    /// The checkpoint nearest to `step`.
    pub fn nearest(&self, step: f64) -> usize {
        let distance = |p: &Point| (p.step as f64 - step).abs();
        (0..self.summary.points.len())
            .min_by(|&a, &b| {
                distance(&self.summary.points[a]).total_cmp(&distance(&self.summary.points[b]))
            })
            .unwrap_or(0)
    }

    /// Checkpoint `j` as people read it: `step 40 (step-000040)`.
    pub fn label(&self, j: usize) -> String {
        self.point(j).map_or_else(String::new, |p| {
            format!("step {} ({})", p.step, model_name(&p.model))
        })
    }

    /// The first checkpoint and checkpoint `j` as results: the first alone when `j` is 0, else
    /// the pair with its comparison.
    pub fn pair(&self, j: usize) -> Result<Results, AppError> {
        let (Some(first), Some(run)) = (self.runs.first(), self.runs.get(j)) else {
            return Err(AppError::NoCheckpoint { index: j });
        };
        let (tuned, cmp) = if j == 0 {
            (None, None)
        } else {
            let cmp = comparison::compare(first, run, &self.summary.options)?;
            (Some(run.clone()), Some(cmp))
        };
        let questions = self.questions(j);
        let mut results = Results::from_runs(&self.dir, first.clone(), tuned, cmp, None, questions);
        results.title = if j == 0 {
            self.label(0)
        } else {
            format!("{} -> {}", self.label(0), self.label(j))
        };
        Ok(results)
    }

    /// The question set (the first checkpoint's scored samples) with the answers of the first
    /// checkpoint and of checkpoint `j`.
    fn questions(&self, j: usize) -> Vec<Question> {
        let Some(first) = self.runs.first() else {
            return Vec::new();
        };
        let later: HashMap<&str, usize> = match self.runs.get(j).filter(|_| j > 0) {
            Some(run) => run
                .manifest
                .samples
                .iter()
                .enumerate()
                .map(|(i, s)| (s.id.as_str(), i))
                .collect(),
            None => HashMap::new(),
        };
        let answer = |k: usize, id: &str| self.answers.get(k).and_then(|a| a.get(id)).cloned();
        first
            .manifest
            .samples
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let asked = self.asked.get(&s.id);
                Question {
                    id: s.id.clone(),
                    question: asked.map(|a| a.question.clone()).unwrap_or_default(),
                    reference: asked.map(|a| a.reference.clone()).unwrap_or_default(),
                    base: answer(0, &s.id),
                    tuned: if j > 0 { answer(j, &s.id) } else { None },
                    sample: Some((i, later.get(s.id.as_str()).copied())),
                }
            })
            .collect()
    }
}

/// The last part of a model's path or Hub id.
fn model_name(spec: &str) -> String {
    Path::new(spec)
        .file_name()
        .map_or_else(|| spec.to_owned(), |n| n.to_string_lossy().into_owned())
}

/// A pair being built on a background thread.
struct PairJob {
    j: usize,
    of: Arc<TrajectoryResults>,
    worker: Worker<Results>,
}

/// The open trajectory, the checkpoint chosen, and the one whose pair the app shows.
pub struct TrajectoryState {
    pub data: Option<Arc<TrajectoryResults>>,
    /// The checkpoint chosen (its index among the summary's points).
    pub selected: usize,
    /// The checkpoint whose pair with the first is the app's results.
    pub shown: usize,
    /// The metrics whose curves are drawn.
    pub metrics: Vec<Metric>,
    /// Draw each metric's level with its interval instead of its paired change from the first
    /// checkpoint.
    pub levels: bool,
    job: Option<PairJob>,
}

impl Default for TrajectoryState {
    fn default() -> Self {
        Self {
            data: None,
            selected: 0,
            shown: 0,
            metrics: Metric::HEADLINE.to_vec(),
            levels: false,
            job: None,
        }
    }
}

impl TrajectoryState {
    /// Show `data`, its last checkpoint chosen (the pair its results hold).
    pub fn open(&mut self, data: Arc<TrajectoryResults>) {
        self.selected = data.last();
        self.shown = self.selected;
        self.data = Some(data);
    }

    /// Forget the trajectory (other results were opened).
    pub fn close(&mut self) {
        self.data = None;
    }

    /// Whether a pair is being built.
    pub fn busy(&self) -> bool {
        self.job.is_some()
    }

    /// Choose checkpoint `j`: its pair is built in the background (after the one being built).
    pub fn select(&mut self, ctx: &egui::Context, j: usize) -> Result<(), AppError> {
        let Some(data) = &self.data else {
            return Ok(());
        };
        self.selected = j.min(data.last());
        self.start(ctx)
    }

    fn start(&mut self, ctx: &egui::Context) -> Result<(), AppError> {
        let Some(data) = &self.data else {
            return Ok(());
        };
        if self.job.is_some() || self.selected == self.shown {
            return Ok(());
        }
        let (j, of) = (self.selected, data.clone());
        let job_data = data.clone();
        let repaint = ctx.clone();
        let worker = Worker::spawn(
            "checkpoint-pair",
            Box::new(move || repaint.request_repaint()),
            move |_, _| job_data.pair(j),
        )
        .map_err(|source| AppError::Spawn {
            what: "building the checkpoint's results",
            source,
        })?;
        self.job = Some(PairJob { j, of, worker });
        Ok(())
    }

    /// The pair that finished building for the open trajectory, if one did, and a failure to
    /// start the next chosen checkpoint's. A pair that failed leaves the shown checkpoint
    /// chosen.
    pub fn logic(&mut self, ctx: &egui::Context) -> Vec<Result<Results, AppError>> {
        let mut out = Vec::new();
        let Some(job) = self.job.as_mut() else {
            return out;
        };
        let finished = job
            .worker
            .poll(Duration::from_millis(2))
            .into_iter()
            .find_map(|m| match m {
                Message::Finished(r) => Some(r),
                _ => None,
            });
        let Some(finished) = finished else {
            return out;
        };
        let Some(job) = self.job.take() else {
            return out;
        };
        if self.data.as_ref().is_some_and(|d| Arc::ptr_eq(d, &job.of)) {
            match &finished {
                Ok(_) => self.shown = job.j,
                Err(_) => self.selected = self.shown,
            }
            out.push(finished);
        }
        if let Err(e) = self.start(ctx) {
            self.selected = self.shown;
            out.push(Err(e));
        }
        out
    }
}
