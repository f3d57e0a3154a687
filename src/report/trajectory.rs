//! A trajectory's results: every metric at each checkpoint of a training run over one fixed
//! question set, with its bootstrap interval, paired against the first checkpoint, beside the
//! trainer's log at that step (`summary.json`, `summary.csv`), and its figures as data.

use super::comparison;
use super::figures::{LineChart, Series};
use super::run::{Run, RunError};
use super::train_log::TrainLog;
use crate::attribution::compare::{adjust, mean_interval, CompareOptions, PairedStat};
use crate::attribution::correction::Correction;
use crate::attribution::metrics::Metric;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Whose answers each checkpoint is scored on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerSource {
    /// Each checkpoint answers the questions and is scored on its own answers.
    #[default]
    Own,
    /// Every checkpoint is scored on the first checkpoint's answers (the same tokens
    /// throughout: only the model changes).
    First,
}

impl AnswerSource {
    pub fn name(self) -> &'static str {
        match self {
            Self::Own => "own",
            Self::First => "first",
        }
    }

    /// How the choice reads in a report.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Own => "each checkpoint scored on its own answers",
            Self::First => "every checkpoint scored on the first checkpoint's answers",
        }
    }
}

/// Which questions make the trajectory's fixed set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuestionSet {
    /// Those the first and the last checkpoint both answered correctly.
    #[default]
    Ends,
    /// Those the first checkpoint answered correctly.
    First,
}

impl QuestionSet {
    pub fn name(self) -> &'static str {
        match self {
            Self::Ends => "ends",
            Self::First => "first",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::Ends => "questions the first and the last checkpoint both answered correctly",
            Self::First => "questions the first checkpoint answered correctly",
        }
    }
}

/// A metric's mean over the question set at one checkpoint, with its percentile-bootstrap
/// interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Level {
    pub metric: Metric,
    pub mean: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

/// One checkpoint of the trajectory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub step: u64,
    pub model: String,
    pub fingerprint: String,
    /// Its run directory, relative to the trajectory's folder.
    pub run: String,
    /// The share of the question set it answered correctly, when it answered them.
    pub accuracy: Option<f64>,
    /// Mean self-entropy loss over the question set (nats per scored token).
    pub mean_loss: f64,
    /// Every metric's mean and interval.
    pub levels: Vec<Level>,
    /// Every metric paired against the first checkpoint, question by question (empty at the
    /// first).
    pub vs_first: Vec<PairedStat>,
    /// The trainer's log at this step: each column's last value at or before it.
    pub train: BTreeMap<String, f64>,
}

impl Point {
    pub fn level(&self, metric: Metric) -> Option<&Level> {
        self.levels.iter().find(|l| l.metric == metric)
    }

    pub fn change(&self, metric: Metric) -> Option<&PairedStat> {
        self.vs_first.iter().find(|s| s.metric == metric)
    }
}

/// `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trajectory {
    /// Questions in the fixed set (scored at every checkpoint).
    pub n: usize,
    /// The cut length K.
    pub k: usize,
    pub answers: AnswerSource,
    pub questions: QuestionSet,
    pub options: CompareOptions,
    pub points: Vec<Point>,
    /// The answer tokens scored at every checkpoint (method.md §8): absent from trajectories
    /// written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span: Option<super::span::ScoredSpan>,
    /// The family of tests the adjusted p-values are corrected over, in words: every metric of
    /// every checkpoint against the first (see [`adjust_family`]); empty in summaries written
    /// before it was recorded.
    #[serde(default)]
    pub family: String,
}

/// Adjust the p-values of every checkpoint's tests against the first as one family (every
/// metric at every later checkpoint) with `correction`; the family in words.
pub fn adjust_family(points: &mut [Point], correction: Correction) -> String {
    let later = points.iter().filter(|p| !p.vs_first.is_empty()).count();
    let size = adjust(
        points.iter_mut().flat_map(|p| p.vs_first.iter_mut()),
        correction,
    );
    let tests: usize = points.iter().map(|p| p.vs_first.len()).sum();
    let metrics = tests.checked_div(later).unwrap_or(0);
    correction.family(&format!(
        "the {size} tests of this trajectory ({metrics} metrics at each of {later} checkpoints against the first)"
    ))
}

fn invalid(run: &Run, message: String) -> RunError {
    RunError::Invalid {
        path: run.dir.clone(),
        message,
    }
}

/// One checkpoint's point: its levels, its pairing against `first`, the log at its step.
pub fn point(
    (step, run_rel): (u64, &str),
    run: &Run,
    first: &Run,
    accuracy: Option<f64>,
    log: Option<&TrainLog>,
    opts: &CompareOptions,
) -> Result<Point, RunError> {
    let mut levels = Vec::new();
    for metric in Metric::ALL {
        let values: Vec<f64> = run
            .metrics
            .samples
            .iter()
            .map(|s| s.metrics.overall.get(metric))
            .collect();
        let (mean, ci_low, ci_high) =
            mean_interval(metric.name(), &values, opts).map_err(|e| invalid(run, e.to_string()))?;
        levels.push(Level {
            metric,
            mean,
            ci_low,
            ci_high,
        });
    }
    let vs_first = if std::ptr::eq(run, first) {
        Vec::new()
    } else {
        comparison::check_pairable(first, run)?;
        comparison::compare(first, run, opts)?.metrics
    };
    Ok(Point {
        step,
        model: run.manifest.model.spec.clone(),
        fingerprint: run.manifest.model.fingerprint.clone(),
        run: run_rel.to_owned(),
        accuracy,
        mean_loss: run.metrics.mean_loss(),
        levels,
        vs_first,
        train: log.map(|l| l.at_step(step as f64)).unwrap_or_default(),
    })
}

/// Write the summary as JSON at `json` and as CSV ([`to_csv`]) at `csv`.
pub fn write(json: &Path, csv: &Path, t: &Trajectory) -> Result<(), RunError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| RunError::Io { path, source }
    };
    crate::fsutil::write_json(json, t).map_err(io(json))?;
    crate::fsutil::write_atomic(csv, to_csv(t).as_bytes()).map_err(io(csv))
}

/// Read a trajectory's summary from the JSON file `path`; `None` when there is none.
pub fn read(path: &Path) -> Result<Option<Trajectory>, RunError> {
    let path = path.to_owned();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(RunError::Io { path, source }),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| RunError::Invalid {
            path,
            message: format!("not a trajectory summary ({e})"),
        })
}

/// One row per checkpoint and metric: the level, its interval, and the paired change from the
/// first checkpoint, every field at full precision.
pub fn to_csv(t: &Trajectory) -> String {
    let mut text = String::from(
        "step,model,accuracy,mean_loss,metric,mean,ci_low,ci_high,mean_diff,diff_ci_low,diff_ci_high,p_value,p_adjusted\n",
    );
    let opt = |v: Option<f64>| v.map_or_else(String::new, |v| v.to_string());
    for p in &t.points {
        for l in &p.levels {
            let c = p.change(l.metric);
            text.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
                p.step,
                super::run::csv_field(&p.model),
                opt(p.accuracy),
                p.mean_loss,
                l.metric,
                l.mean,
                l.ci_low,
                l.ci_high,
                opt(c.map(|c| c.mean_diff)),
                opt(c.map(|c| c.ci_low)),
                opt(c.map(|c| c.ci_high)),
                opt(c.map(|c| c.p_value).filter(|p| p.is_finite())),
                opt(c.map(|c| c.p_adjusted).filter(|p| p.is_finite())),
            ));
        }
    }
    text
}

/// A metric over the steps: its mean at each checkpoint with the bootstrap interval as a band.
pub fn metric_chart(t: &Trajectory, metric: Metric) -> LineChart {
    let levels: Vec<(u64, &Level)> = t
        .points
        .iter()
        .filter_map(|p| p.level(metric).map(|l| (p.step, l)))
        .collect();
    let mut series = Series::named(
        metric.name(),
        None,
        levels.iter().map(|(s, l)| (*s as f64, l.mean)).collect(),
    );
    series.band = levels.iter().map(|(_, l)| (l.ci_low, l.ci_high)).collect();
    LineChart {
        title: format!(
            "{metric} over training (mean, {:.0} % CI)",
            t.options.confidence * 100.0
        ),
        x_label: "step".into(),
        y_label: metric.name().into(),
        log_y: false,
        series: vec![series],
    }
}

/// A metric over the steps as its paired change from the first checkpoint: at each checkpoint
/// the mean over the question set of each question's difference from the first, with the
/// paired bootstrap interval as a band (0 at the first checkpoint), and the zero line.
pub fn difference_chart(t: &Trajectory, metric: Metric) -> LineChart {
    let mut points = Vec::new();
    let mut band = Vec::new();
    for (i, p) in t.points.iter().enumerate() {
        let x = p.step as f64;
        match p.change(metric) {
            Some(c) => {
                points.push((x, c.mean_diff));
                band.push((c.ci_low, c.ci_high));
            }
            None if i == 0 => {
                points.push((x, 0.0));
                band.push((0.0, 0.0));
            }
            None => {}
        }
    }
    let zero: Vec<(f64, f64)> = t.points.iter().map(|p| (p.step as f64, 0.0)).collect();
    let first = t.points.first().map_or(0, |p| p.step);
    LineChart {
        title: format!(
            "{metric}: change from step {first} (paired mean, {:.0} % CI)",
            t.options.confidence * 100.0
        ),
        x_label: "step".into(),
        y_label: format!("Δ {metric}"),
        log_y: false,
        series: vec![
            Series {
                band,
                ..Series::named(&format!("Δ {metric}"), None, points)
            },
            Series::named("no change", None, zero),
        ],
    }
}

/// The trainer's reward and accuracy (and the question set's accuracy at each checkpoint) on
/// the same step axis as the metrics: one chart per quantity that has values.
pub fn training_charts(t: &Trajectory, log: Option<&TrainLog>) -> Vec<LineChart> {
    let mut charts = Vec::new();
    for column in ["reward", "accuracy", "kl", "loss"] {
        let mut series = Vec::new();
        if let Some(log) = log {
            let points = log.points(column);
            if !points.is_empty() {
                series.push(Series::named(&format!("trainer {column}"), None, points));
            }
        }
        if column == "accuracy" {
            let points: Vec<(f64, f64)> = t
                .points
                .iter()
                .filter_map(|p| p.accuracy.map(|a| (p.step as f64, a)))
                .collect();
            if !points.is_empty() {
                series.push(Series::named("question set", None, points));
            }
        }
        if !series.is_empty() {
            charts.push(LineChart {
                title: format!("{column} over training"),
                x_label: "step".into(),
                y_label: column.into(),
                log_y: false,
                series,
            });
        }
    }
    charts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metric_chart_carries_the_interval_as_a_band() {
        let level = |mean: f64| Level {
            metric: Metric::Entropy,
            mean,
            ci_low: mean - 0.1,
            ci_high: mean + 0.2,
        };
        let point = |step: u64, mean: f64| Point {
            step,
            model: format!("m{step}"),
            fingerprint: String::new(),
            run: format!("points/{step}"),
            accuracy: Some(0.5),
            mean_loss: 1.0,
            levels: vec![level(mean)],
            vs_first: Vec::new(),
            train: BTreeMap::new(),
        };
        let t = Trajectory {
            n: 3,
            k: 2,
            answers: AnswerSource::Own,
            questions: QuestionSet::Ends,
            options: CompareOptions::default(),
            points: vec![point(0, 1.0), point(40, 2.0)],
            span: None,
            family: String::new(),
        };
        let c = metric_chart(&t, Metric::Entropy);
        assert_eq!(c.series[0].points, [(0.0, 1.0), (40.0, 2.0)]);
        assert_eq!(c.series[0].band, [(0.9, 1.2), (1.9, 2.2)]);
        let csv = to_csv(&t);
        assert_eq!(csv.lines().count(), 3);
        let mut t = t;
        let opts = CompareOptions {
            bootstrap_resamples: 200,
            ..CompareOptions::default()
        };
        let change = crate::attribution::compare::paired(
            Metric::Entropy,
            &[1.0, 2.0, 3.0],
            &[1.5, 2.0, 4.0],
            &opts,
        )
        .unwrap();
        t.points[1].vs_first = vec![change.clone()];
        let d = difference_chart(&t, Metric::Entropy);
        // The first checkpoint is 0 with no width; the second its paired mean difference
        // (0.5 + 0 + 1) / 3 with the paired interval, not the levels' intervals.
        assert_eq!(d.series[0].points, [(0.0, 0.0), (40.0, 0.5)]);
        assert_eq!(
            d.series[0].band,
            [(0.0, 0.0), (change.ci_low, change.ci_high)]
        );
        assert!(change.ci_low >= 0.0 && change.ci_high <= 1.0);
        assert_eq!(d.series[1].points, [(0.0, 0.0), (40.0, 0.0)]);
        assert!(csv
            .lines()
            .nth(2)
            .unwrap()
            .starts_with("40,m40,0.5,1,entropy,2,"));
        let charts = training_charts(&t, None);
        assert_eq!(charts.len(), 1, "the question set's accuracy alone");
    }
}
