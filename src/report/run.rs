//! The run directory's contents: the manifest, the per-sample scores, the aggregate scores and
//! metrics, in files any tool reads; where each lives is [`RunDir`]'s.

use super::npz::{npz_bytes, NpyArray};
pub use super::run_dir::RunDir;
use super::sample_file::{self, Defect, Expected};
use crate::attribution::metrics::{metrics, relative_intensity, Metric, MetricOptions, Metrics};
use crate::attribution::score::Accumulation;
use crate::attribution::select::SelectOptions;
use crate::attribution::{Graph, Level, SampleScores};
use crate::fsutil::write_atomic;
use crate::model::{AdapterInfo, Model};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Errors reading or writing the report files: a run directory, a comparison, a training log.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    /// Two runs whose per-sample metrics are different quantities.
    #[error(
        "the runs cannot be paired: {differences} (base vs tuned); compare runs of models with the \
         same graph, scored with the same --heads, --cut, --kurtosis-abs and --entropy-bins; base \
         run {}, tuned run {}",
        base.display(),
        tuned.display()
    )]
    NotPairable {
        differences: String,
        base: PathBuf,
        tuned: PathBuf,
    },
    #[error(transparent)]
    Score(#[from] crate::attribution::ScoreError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The software that wrote a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Software {
    pub name: String,
    pub version: String,
}

impl Default for Software {
    fn default() -> Self {
        Self {
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// The scored model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelEntry {
    pub spec: String,
    pub fingerprint: String,
    pub family: String,
    pub num_layers: usize,
    pub hidden_size: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub vocab_size: usize,
    pub compute_dtype: String,
    /// The LoRA adapter merged into the weights: its folder, base and the base's fingerprint,
    /// rank, α, rsLoRA and the layers it changes (absent for a plain model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<AdapterInfo>,
}

impl ModelEntry {
    pub fn of(model: &Model) -> Self {
        let c = &model.config;
        Self {
            spec: model.spec.clone(),
            fingerprint: model.fingerprint.clone(),
            family: c.family.name().into(),
            num_layers: c.num_layers,
            hidden_size: c.hidden_size,
            num_heads: c.num_heads,
            num_kv_heads: c.num_kv_heads,
            vocab_size: c.vocab_size,
            compute_dtype: format!("{:?}", model.dtype()).to_lowercase(),
            adapter: model.adapter.clone(),
        }
    }
}

/// Every choice of method.md that shapes the scores, recorded with them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Method {
    pub graph_level: Level,
    /// "eap-zero-ablation: S[u->v] = -sum_t,i A_u[t,i] G_v[t,i]".
    pub score: String,
    /// "self-entropy: mean NLL of the model's own first K answer tokens".
    pub loss: String,
    /// The requested cut length K.
    pub cut: usize,
    /// What happens when an answer is shorter than K.
    pub cut_policy: String,
    pub accumulation: Accumulation,
    pub metrics: MetricOptions,
}

impl Method {
    pub fn new(
        level: Level,
        cut: usize,
        accumulation: Accumulation,
        metrics: MetricOptions,
    ) -> Self {
        Self {
            graph_level: level,
            score: "eap-zero-ablation: S[u->v] = -sum_t,i A_u[t,i] G_v[t,i]".into(),
            loss: "self-entropy: mean NLL of the first K answer tokens given the prompt".into(),
            cut,
            cut_policy: "clamp: K = min(cut, answer length), recorded per sample".into(),
            accumulation,
            metrics,
        }
    }
}

/// One sample as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleEntry {
    pub id: String,
    pub prompt_len: usize,
    pub answer_len: usize,
    /// The cut length scored: min(K, answer length).
    pub k: usize,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub software: Software,
    pub model: ModelEntry,
    pub method: Method,
    pub graph: Graph,
    pub num_edges: usize,
    pub samples: Vec<SampleEntry>,
    /// The study that chose these samples, when a study wrote the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub study: Option<StudyRecord>,
}

/// What a study recorded in the manifest of each of its runs: where the questions came from,
/// the prompt template, and how the samples and K were chosen. Fields in alphabetical order, as
/// manifests have always listed them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyRecord {
    /// A JSONL path or `builtin:…`.
    pub dataset: String,
    /// The cut length K the selection chose.
    pub k: usize,
    pub limit: Option<usize>,
    pub offset: usize,
    #[serde(serialize_with = "sorted_keys")]
    pub select: SelectOptions,
    /// T̄, the mean answer length K was derived from.
    pub t_bar: f64,
    /// The name of the prompt template used with this model (`chat`, `plain`, `custom`, …).
    pub template: String,
}

/// The selection options with their keys sorted, as manifests list them.
fn sorted_keys<S: serde::Serializer>(select: &SelectOptions, s: S) -> Result<S::Ok, S::Error> {
    serde_json::to_value(select)
        .map_err(serde::ser::Error::custom)?
        .serialize(s)
}

impl Manifest {
    /// A short hash of what makes two runs' sample files interchangeable (model, method,
    /// graph), recorded in every sample file so that one of another run is recognised.
    pub fn identity(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            serde_json::to_vec(&self.model),
            serde_json::to_vec(&self.method),
            serde_json::to_vec(&self.graph),
        ] {
            // These types always serialise; an error would leave its part out of the hash.
            h.update(part.unwrap_or_default());
        }
        format!("{:x}", h.finalize())[..16].to_owned()
    }
}

/// Metrics of one score vector: overall and per destination layer (`logits` last).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorMetrics {
    pub overall: Metrics,
    pub per_layer: Vec<Metrics>,
}

impl VectorMetrics {
    /// Metrics of the dense score matrix `dense`, scored at `loss` per answer token (for the
    /// mean vector: [`mean_loss`] of the samples).
    pub fn of(graph: &Graph, dense: &[f32], loss: f64, opts: &MetricOptions) -> Self {
        let edges = graph.edge_values(dense);
        let per_layer = graph
            .edges_by_layer()
            .iter()
            .map(|ids| {
                let v: Vec<f32> = ids.iter().map(|&i| edges[i]).collect();
                metrics(&v, loss, opts)
            })
            .collect();
        Self {
            overall: metrics(&edges, loss, opts),
            per_layer,
        }
    }

    /// Set every relative intensity from its intensity and `loss`, as [`metrics`] does.
    fn derive_relative_intensity(&mut self, loss: f64) {
        for m in std::iter::once(&mut self.overall).chain(&mut self.per_layer) {
            m.relative_intensity = relative_intensity(m.intensity, loss);
        }
    }
}

/// The loss of a mean score vector: the mean of the samples' losses (0 without samples).
pub fn mean_loss(losses: impl ExactSizeIterator<Item = f64>) -> f64 {
    let n = losses.len();
    losses.sum::<f64>() / n.max(1) as f64
}

/// One sample's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleMetrics {
    pub id: String,
    pub loss: f64,
    pub k: usize,
    pub metrics: VectorMetrics,
}

/// `metrics.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsFile {
    pub options: MetricOptions,
    pub num_edges: usize,
    /// Metrics of the mean score vector (its loss: [`MetricsFile::mean_loss`]).
    pub mean: VectorMetrics,
    pub samples: Vec<SampleMetrics>,
}

impl MetricsFile {
    /// The loss of the mean vector: the mean of the samples' losses.
    pub fn mean_loss(&self) -> f64 {
        mean_loss(self.samples.iter().map(|s| s.loss))
    }

    /// Set every relative intensity from the stored intensities and losses. Relative intensity
    /// is a function of the two, so this changes nothing in a file that records it and fills it
    /// in for a file written before it existed (where it reads as 0).
    pub fn derive_relative_intensity(&mut self) {
        let loss = self.mean_loss();
        self.mean.derive_relative_intensity(loss);
        for s in &mut self.samples {
            s.metrics.derive_relative_intensity(s.loss);
        }
    }
}

/// A complete run: manifest, scores and metrics.
#[derive(Debug)]
pub struct Run {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub scores: Vec<SampleScores>,
    pub metrics: MetricsFile,
}

impl Run {
    /// Mean dense score matrix over samples.
    pub fn mean_scores(&self) -> Vec<f32> {
        mean_dense(&self.scores)
    }
}

fn mean_dense(scores: &[SampleScores]) -> Vec<f32> {
    let n = scores.len().max(1) as f64;
    let len = scores.first().map_or(0, |s| s.dense.len());
    (0..len)
        .map(|i| (scores.iter().map(|s| f64::from(s.dense[i])).sum::<f64>() / n) as f32)
        .collect()
}

/// What `manifest` expects of sample `index`'s file.
fn expected<'a>(
    dir: &Path,
    manifest: &'a Manifest,
    index: usize,
    run: &'a str,
) -> Result<Expected<'a>, RunError> {
    let entry = manifest
        .samples
        .get(index)
        .ok_or_else(|| RunError::Invalid {
            path: RunDir::new(dir).manifest_path(),
            message: format!("lists no sample {index}"),
        })?;
    Ok(Expected {
        id: &entry.id,
        k: entry.k,
        shape: manifest.graph.dense_shape(),
        run,
    })
}

/// Persist sample `index`'s scores atomically, with what it is (id, K, shape, run, checksum)
/// in the file's metadata.
pub fn write_sample(
    dir: &Path,
    index: usize,
    manifest: &Manifest,
    s: &SampleScores,
) -> Result<(), RunError> {
    let path = RunDir::new(dir).sample_path(index);
    let parent = path.parent().unwrap_or(dir);
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let run = manifest.identity();
    let e = expected(dir, manifest, index, &run)?;
    sample_file::write(&path, s, e.id, e.shape, &run).map_err(io(&path))
}

/// Read and verify sample `index`'s file against `manifest`: `None` when it has not been
/// written yet, else its scores or why it cannot be used.
pub fn read_sample(
    dir: &Path,
    index: usize,
    manifest: &Manifest,
) -> Result<Option<Result<SampleScores, Defect>>, RunError> {
    let path = RunDir::new(dir).sample_path(index);
    let run = manifest.identity();
    sample_file::read(&path, &expected(dir, manifest, index, &run)?).map_err(io(&path))
}

/// Write `tensors` as a safetensors file at `path`, atomically.
fn write_tensors(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<(), RunError> {
    let bytes = safetensors::serialize(tensors, None).map_err(|e| RunError::Invalid {
        path: path.to_owned(),
        message: format!("cannot serialise the tensors: {e}"),
    })?;
    crate::fsutil::write_atomic(path, &bytes).map_err(io(path))
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), RunError> {
    crate::fsutil::write_json(path, value).map_err(io(path))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, RunError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    serde_json::from_str(&text).map_err(|e| RunError::Invalid {
        path: path.to_owned(),
        message: format!("not a circuitdiff file: {e}"),
    })
}

/// Write the manifest (at the start of a run, so that a resumed run can check it matches).
pub fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<(), RunError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    write_json(&RunDir::new(dir).manifest_path(), manifest)
}

/// Read `manifest.json`, if the directory has one.
pub fn read_manifest(dir: &Path) -> Result<Option<Manifest>, RunError> {
    let path = RunDir::new(dir).manifest_path();
    if !path.is_file() {
        return Ok(None);
    }
    read_json(&path).map(Some)
}

/// Write the aggregate files of a finished run (every sample scored, in manifest order).
pub fn finish(dir: &Path, manifest: &Manifest, scores: Vec<SampleScores>) -> Result<Run, RunError> {
    let graph = &manifest.graph;
    let (ns, nd) = graph.dense_shape();
    let n = scores.len();
    let opts = &manifest.method.metrics;
    let mean = mean_dense(&scores);
    let all: Vec<f32> = scores
        .iter()
        .flat_map(|s| s.dense.iter().copied())
        .collect();
    let losses: Vec<f32> = scores.iter().map(|s| s.loss as f32).collect();
    let mask = graph.mask();

    let dev = Device::Cpu;
    let st: HashMap<String, Tensor> = [
        (
            "all_scores".to_owned(),
            Tensor::from_slice(&all, (n, ns, nd), &dev)?,
        ),
        (
            "scores".to_owned(),
            Tensor::from_slice(&mean, (ns, nd), &dev)?,
        ),
        ("losses".to_owned(), Tensor::from_slice(&losses, n, &dev)?),
    ]
    .into_iter()
    .collect();
    let files = RunDir::new(dir);
    let path = files.scores_path();
    write_tensors(&path, &st)?;

    let npz = npz_bytes(&[
        ("scores", NpyArray::f32(&[ns, nd], &mean)),
        ("all_scores", NpyArray::f32(&[n, ns, nd], &all)),
        ("real_edge_mask", NpyArray::bool(&[ns, nd], &mask)),
        ("losses", NpyArray::f32(&[n], &losses)),
    ])
    .map_err(io(dir))?;
    let path = files.npz_path();
    write_atomic(&path, &npz).map_err(io(&path))?;

    let samples: Vec<SampleMetrics> = manifest
        .samples
        .iter()
        .zip(&scores)
        .map(|(e, s)| SampleMetrics {
            id: e.id.clone(),
            loss: s.loss,
            k: s.k,
            metrics: VectorMetrics::of(graph, &s.dense, s.loss, opts),
        })
        .collect();
    let mean_loss = mean_loss(samples.iter().map(|s| s.loss));
    let metrics_file = MetricsFile {
        options: opts.clone(),
        num_edges: graph.num_edges(),
        mean: VectorMetrics::of(graph, &mean, mean_loss, opts),
        samples,
    };
    write_json(&files.metrics_path(), &metrics_file)?;
    let names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
    let mut csv = format!("id,loss,k,{}\n", names.join(","));
    let row = |id: &str, loss: f64, k: String, m: &Metrics| {
        let vals: Vec<String> = m.values().iter().map(|v| v.to_string()).collect();
        format!("{},{loss},{k},{}\n", csv_field(id), vals.join(","))
    };
    for s in &metrics_file.samples {
        csv.push_str(&row(&s.id, s.loss, s.k.to_string(), &s.metrics.overall));
    }
    csv.push_str(&row(
        "mean",
        mean_loss,
        String::new(),
        &metrics_file.mean.overall,
    ));
    let path = files.metrics_csv_path();
    write_atomic(&path, csv.as_bytes()).map_err(io(&path))?;
    Ok(Run {
        dir: dir.to_owned(),
        manifest: manifest.clone(),
        scores,
        metrics: metrics_file,
    })
}

/// Write the run `manifest` into `dir` with `scores` computed already (by a model with the same
/// fingerprint: the same model given twice), each sample's file as [`score_run`] writes it.
pub fn write_run(
    dir: &Path,
    manifest: &Manifest,
    scores: Vec<SampleScores>,
) -> Result<Run, RunError> {
    write_manifest(dir, manifest)?;
    for (i, s) in scores.iter().enumerate() {
        write_sample(dir, i, manifest, s)?;
    }
    finish(dir, manifest, scores)
}

/// Quote a CSV field when it needs it.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// Load a finished run directory.
pub fn load(dir: &Path) -> Result<Run, RunError> {
    let manifest = read_manifest(dir)?.ok_or_else(|| RunError::Invalid {
        path: dir.to_owned(),
        message: format!(
            "no {}: not a circuitdiff run directory",
            RunDir::manifest_name()
        ),
    })?;
    let files = RunDir::new(dir);
    let mut metrics: MetricsFile = read_json(&files.metrics_path())?;
    metrics.derive_relative_intensity();
    let mut scores = Vec::with_capacity(manifest.samples.len());
    for i in 0..manifest.samples.len() {
        let invalid = |message: String| RunError::Invalid {
            path: files.sample_path(i),
            message,
        };
        match read_sample(dir, i, &manifest)? {
            Some(Ok(s)) => scores.push(s),
            Some(Err(defect)) => {
                return Err(invalid(format!(
                    "{defect}; re-run the command that wrote this run (the same `circuitdiff \
                     score` or `circuitdiff study` into this directory) to recompute it"
                )))
            }
            None => {
                return Err(invalid(
                    "missing: the run did not finish; re-run it to complete".into(),
                ))
            }
        }
    }
    Ok(Run {
        dir: dir.to_owned(),
        manifest,
        scores,
        metrics,
    })
}

/// A token sequence to score, as `circuitdiff score` reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreSample {
    /// Stable id used to pair samples across runs (default: the position in the file).
    #[serde(default)]
    pub id: Option<String>,
    pub prompt_ids: Vec<u32>,
    pub answer_ids: Vec<u32>,
}

impl ScoreSample {
    /// The sample's id: its own, else its position `index` in the list.
    pub fn id_at(&self, index: usize) -> String {
        self.id.clone().unwrap_or_else(|| index.to_string())
    }
}

/// Read a `score --samples` file: a JSON list of samples, at least one.
pub fn read_samples(path: &Path) -> Result<Vec<ScoreSample>, RunError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let invalid = |message: String| RunError::Invalid {
        path: path.to_owned(),
        message,
    };
    let samples: Vec<ScoreSample> = serde_json::from_str(&text).map_err(|e| {
        invalid(format!(
            "expected a JSON list of {{\"prompt_ids\": [...], \"answer_ids\": [...]}}: {e}"
        ))
    })?;
    if samples.is_empty() {
        return Err(invalid("no samples".into()));
    }
    let mut ids = std::collections::HashSet::new();
    if let Some(dup) = samples
        .iter()
        .enumerate()
        .map(|(i, s)| s.id_at(i))
        .find(|id| !ids.insert(id.clone()))
    {
        return Err(invalid(format!("sample id `{dup}` appears twice")));
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `metrics.json` as written before relative intensity existed: two samples, one layer.
    const OLD_METRICS_JSON: &str = r#"{
      "options": {"kurtosis_of_abs": false, "entropy_bins": null},
      "num_edges": 3,
      "mean": {
        "overall": {"intensity": 0.6, "entropy": 1.0, "entropy_normalized": 0.9,
          "kurtosis": -1.5, "gini": 0.2, "top1": 0.4, "top5": 0.4, "top10": 0.4,
          "edges50": 2.0, "edges90": 3.0},
        "per_layer": [{"intensity": 0.3, "entropy": 0.0, "entropy_normalized": 0.0,
          "kurtosis": 0.0, "gini": 0.0, "top1": 1.0, "top5": 1.0, "top10": 1.0,
          "edges50": 1.0, "edges90": 1.0}]
      },
      "samples": [
        {"id": "q0", "loss": 2.0, "k": 3, "metrics": {
          "overall": {"intensity": 0.5, "entropy": 1.0, "entropy_normalized": 0.9,
            "kurtosis": -1.5, "gini": 0.2, "top1": 0.4, "top5": 0.4, "top10": 0.4,
            "edges50": 2.0, "edges90": 3.0},
          "per_layer": [{"intensity": 0.25, "entropy": 0.0, "entropy_normalized": 0.0,
            "kurtosis": 0.0, "gini": 0.0, "top1": 1.0, "top5": 1.0, "top10": 1.0,
            "edges50": 1.0, "edges90": 1.0}]}},
        {"id": "q1", "loss": 0.0, "k": 3, "metrics": {
          "overall": {"intensity": 0.7, "entropy": 1.0, "entropy_normalized": 0.9,
            "kurtosis": -1.5, "gini": 0.2, "top1": 0.4, "top5": 0.4, "top10": 0.4,
            "edges50": 2.0, "edges90": 3.0},
          "per_layer": [{"intensity": 0.35, "entropy": 0.0, "entropy_normalized": 0.0,
            "kurtosis": 0.0, "gini": 0.0, "top1": 1.0, "top5": 1.0, "top10": 1.0,
            "edges50": 1.0, "edges90": 1.0}]}}
      ]
    }"#;

    #[test]
    fn an_old_metrics_file_loads_and_gains_relative_intensity() {
        let mut file: MetricsFile = serde_json::from_str(OLD_METRICS_JSON).unwrap();
        assert_eq!(file.mean.overall.relative_intensity, 0.0);
        assert_eq!(file.samples[0].metrics.overall.relative_intensity, 0.0);
        let before = file.clone();

        file.derive_relative_intensity();
        // Sample q0: loss 2; q1: loss 0 (saturated), so 0; the mean vector: mean loss 1.
        assert_eq!(file.mean_loss(), 1.0);
        let relative = |m: &VectorMetrics| {
            std::iter::once(&m.overall)
                .chain(&m.per_layer)
                .map(|m| m.relative_intensity)
                .collect::<Vec<_>>()
        };
        assert_eq!(relative(&file.mean), [0.6, 0.3]);
        assert_eq!(relative(&file.samples[0].metrics), [0.25, 0.125]);
        assert_eq!(relative(&file.samples[1].metrics), [0.0, 0.0]);
        // Nothing else changes.
        let strip = |mut f: MetricsFile| {
            f.mean.derive_relative_intensity(0.0);
            for s in &mut f.samples {
                s.metrics.derive_relative_intensity(0.0);
            }
            f
        };
        assert_eq!(strip(file.clone()), before);

        // Written again, the field is there, and deriving it once more changes no bit.
        let json = serde_json::to_string(&file).unwrap();
        assert!(json.contains("\"relative_intensity\":0.125"), "{json}");
        let mut again: MetricsFile = serde_json::from_str(&json).unwrap();
        again.derive_relative_intensity();
        assert_eq!(again, file);
    }

    #[test]
    fn a_samples_file_with_an_id_twice_is_refused_naming_it() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("samples.json");
        let one = r#"{"prompt_ids": [1], "answer_ids": [2]}"#;
        // The first sample's id is its position, 0, which the second names again.
        let text = format!(r#"[{one}, {{"id": "0", "prompt_ids": [1], "answer_ids": [2]}}]"#);
        std::fs::write(&path, text).unwrap();
        let err = read_samples(&path).unwrap_err().to_string();
        assert!(err.contains("samples.json") && err.contains("sample id `0` appears twice"));
        std::fs::write(&path, format!("[{one}, {one}]")).unwrap();
        let read = read_samples(&path).unwrap();
        assert_eq!([read[0].id_at(0), read[1].id_at(1)], ["0", "1"]);
    }

    #[test]
    fn the_mean_loss_of_no_samples_is_zero() {
        assert_eq!(mean_loss(std::iter::empty()), 0.0);
        assert_eq!(mean_loss([1.0, 2.0, 4.5].into_iter()), 2.5);
    }
}
