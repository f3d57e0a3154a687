//! Paired comparison of a base run and a tuned run: samples matched by id, every metric
//! compared with `attribution::compare::paired`, written as `comparison.json` and `.csv`.

use super::run::{Run, RunError};
use super::saturation::Saturation;
use super::span::{ScoredSpan, DEFAULT_MIN_K};
use super::validation::Validation;
use crate::attribution::compare::{adjust, paired, CompareOptions, PairedStat};
use crate::attribution::metrics::{Metric, Metrics};
use crate::attribution::pair::{graph_difference, GraphShape};
use crate::fsutil::write_atomic;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Which run one model of the comparison is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub dir: String,
    pub model: String,
    pub fingerprint: String,
}

impl RunInfo {
    fn of(run: &Run) -> Self {
        Self {
            dir: run.dir.display().to_string(),
            model: run.manifest.model.spec.clone(),
            fingerprint: run.manifest.model.fingerprint.clone(),
        }
    }
}

/// Metrics of the mean score vector of both runs, at one level (overall or one layer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeanVector {
    /// `all`, a layer number, or `logits`.
    pub group: String,
    pub base: Metrics,
    pub tuned: Metrics,
}

/// `comparison.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub base: RunInfo,
    pub tuned: RunInfo,
    pub options: CompareOptions,
    pub n: usize,
    /// Paired statistics of each per-sample metric, their p-values adjusted as one family.
    pub metrics: Vec<PairedStat>,
    /// The family of tests the adjusted p-values are corrected over, in words ("Holm–Bonferroni
    /// over the 11 metrics of this comparison"); empty in comparisons written before it was
    /// recorded.
    #[serde(default)]
    pub family: String,
    /// Metrics of the two mean vectors, overall then per layer (when both graphs have the same
    /// number of layers).
    pub mean_vectors: Vec<MeanVector>,
    /// Both models' per-sample losses in brief and the share of saturated samples (absent
    /// from comparisons written before it was recorded).
    #[serde(default)]
    pub saturation: Option<Saturation>,
    /// The check of EAP against exact effects on a subset of the pairs (method.md §7): absent
    /// when the study asked for none, and from comparisons of runs (`compare`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<Validation>,
    /// The answer tokens scored (method.md §8): absent from comparisons written before it was
    /// recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span: Option<ScoredSpan>,
    /// Every paired sample's scores are equal (the same model given twice, say): every
    /// difference is 0.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub identical: bool,
}

/// The pairs (base index, tuned index) of the samples both runs scored, in base order; an
/// error listing the unpaired ids when the runs scored different samples.
pub(crate) fn pair_by_id(base: &Run, tuned: &Run) -> Result<Vec<(usize, usize)>, RunError> {
    let index = |run: &Run| -> HashMap<String, usize> {
        run.metrics
            .samples
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.clone(), i))
            .collect()
    };
    let (bi, ti) = (index(base), index(tuned));
    let only = |a: &Run, other: &HashMap<String, usize>| -> Vec<String> {
        a.metrics
            .samples
            .iter()
            .filter(|s| !other.contains_key(&s.id))
            .map(|s| s.id.clone())
            .collect()
    };
    let (only_base, only_tuned) = (only(base, &ti), only(tuned, &bi));
    if only_base.is_empty() && only_tuned.is_empty() {
        return Ok(base
            .metrics
            .samples
            .iter()
            .enumerate()
            .map(|(i, s)| (i, ti[&s.id]))
            .collect());
    }
    let list = |v: &[String]| {
        let shown: Vec<_> = v.iter().take(20).cloned().collect();
        let more = v.len().saturating_sub(20);
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        format!("[{}]{more}", shown.join(", "))
    };
    Err(RunError::Invalid {
        path: tuned.dir.clone(),
        message: format!(
            "the runs score different samples, so they cannot be paired: only in {}: {}; only in {}: {}",
            base.dir.display(),
            list(&only_base),
            tuned.dir.display(),
            list(&only_tuned)
        ),
    })
}

/// Metrics of both mean vectors: overall, then per layer when the graphs have as many layers.
fn mean_vectors(base: &Run, tuned: &Run) -> Vec<MeanVector> {
    let (bm, tm) = (&base.metrics.mean, &tuned.metrics.mean);
    let mut out = vec![MeanVector {
        group: "all".into(),
        base: bm.overall,
        tuned: tm.overall,
    }];
    if bm.per_layer.len() == tm.per_layer.len() {
        let last = bm.per_layer.len().saturating_sub(1);
        for (l, (b, t)) in bm.per_layer.iter().zip(&tm.per_layer).enumerate() {
            out.push(MeanVector {
                group: if l == last {
                    "logits".into()
                } else {
                    l.to_string()
                },
                base: *b,
                tuned: *t,
            });
        }
    }
    out
}

/// Refuse two runs whose per-sample metrics are different quantities: runs of other graphs
/// (the pair check's graph shape), at another cut K, or with other metric options.
pub fn check_pairable(base: &Run, tuned: &Run) -> Result<(), RunError> {
    let (b, t) = (&base.manifest, &tuned.manifest);
    let entropy = |bins: Option<usize>| bins.map_or("mass".to_owned(), |n| format!("{n} bins"));
    let graph = graph_difference(
        GraphShape::of_graph(&b.graph),
        GraphShape::of_graph(&t.graph),
    );
    let sides = [
        ("cut K", b.method.cut.to_string(), t.method.cut.to_string()),
        (
            "kurtosis of |s|",
            b.method.metrics.kurtosis_of_abs.to_string(),
            t.method.metrics.kurtosis_of_abs.to_string(),
        ),
        (
            "entropy",
            entropy(b.method.metrics.entropy_bins),
            entropy(t.method.metrics.entropy_bins),
        ),
    ];
    let differences: Vec<String> = graph
        .map(|g| g.to_string())
        .into_iter()
        .chain(
            sides
                .iter()
                .filter(|(_, b, t)| b != t)
                .map(|(what, b, t)| format!("{what} {b} vs {t}")),
        )
        .collect();
    if differences.is_empty() {
        return Ok(());
    }
    Err(RunError::NotPairable {
        differences: differences.join(", "),
        base: base.dir.clone(),
        tuned: tuned.dir.clone(),
    })
}

/// Pair `base` and `tuned` by sample id and compare every metric.
pub fn compare(base: &Run, tuned: &Run, opts: &CompareOptions) -> Result<Comparison, RunError> {
    let pairs = pair_by_id(base, tuned)?;
    let mut metrics = Vec::new();
    for metric in Metric::ALL {
        let value = |run: &Run, i: usize| run.metrics.samples[i].metrics.overall.get(metric);
        let b: Vec<f64> = pairs.iter().map(|&(i, _)| value(base, i)).collect();
        let t: Vec<f64> = pairs.iter().map(|&(_, j)| value(tuned, j)).collect();
        metrics.push(paired(metric, &b, &t, opts).map_err(|e| RunError::Invalid {
            path: tuned.dir.clone(),
            message: e.to_string(),
        })?);
    }
    let size = adjust(&mut metrics, opts.correction);
    Ok(Comparison {
        base: RunInfo::of(base),
        tuned: RunInfo::of(tuned),
        options: opts.clone(),
        n: pairs.len(),
        metrics,
        family: opts
            .correction
            .family(&format!("the {size} metrics of this comparison")),
        mean_vectors: mean_vectors(base, tuned),
        saturation: Some(Saturation::of(base, tuned)),
        validation: None,
        span: Some(ScoredSpan {
            n: pairs.len(),
            ..ScoredSpan::of(base, DEFAULT_MIN_K)
        }),
        identical: pairs
            .iter()
            .all(|&(i, j)| base.scores[i].dense == tuned.scores[j].dense),
    })
}

/// The comparison as CSV: one row per metric, every field at full precision.
pub fn to_csv(c: &Comparison) -> String {
    super::table::Table::exact(&c.metrics).csv()
}

/// Write `comparison.json` and `comparison.csv` into `dir`. A run inside `dir` (a study's
/// `base/` and `tuned/`) is recorded by its path relative to `dir`, so that the folder can be
/// moved or shipped; readers resolve a relative path against the comparison's folder.
pub fn write(dir: &Path, c: &Comparison) -> Result<(), RunError> {
    std::fs::create_dir_all(dir).map_err(|source| RunError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let relative = |info: &RunInfo| RunInfo {
        dir: Path::new(&info.dir)
            .strip_prefix(dir)
            .ok()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| info.dir.clone(), |p| p.display().to_string()),
        ..info.clone()
    };
    let c = Comparison {
        base: relative(&c.base),
        tuned: relative(&c.tuned),
        ..c.clone()
    };
    let json = path(dir);
    crate::fsutil::write_json(&json, &c).map_err(|source| RunError::Io { path: json, source })?;
    let csv = csv_path(dir);
    write_atomic(&csv, to_csv(&c).as_bytes()).map_err(|source| RunError::Io { path: csv, source })
}

/// The comparison written into `dir` (a study's directory or `compare --out`): the one owner
/// of its file name.
pub fn path(dir: &Path) -> PathBuf {
    dir.join("comparison.json")
}

/// The comparison's statistics as CSV, beside [`path`].
pub fn csv_path(dir: &Path) -> PathBuf {
    dir.join("comparison.csv")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Drop every trace of relative intensity: the stat of that metric and the field of every
    /// metrics object, as in a file written before it existed.
    fn strip(v: &mut Value) {
        match v {
            Value::Array(items) => {
                items.retain(|i| i["metric"] != "relative_intensity");
                items.iter_mut().for_each(strip);
            }
            Value::Object(map) => {
                map.remove("relative_intensity");
                map.values_mut().for_each(strip);
            }
            _ => {}
        }
    }

    #[test]
    fn an_old_comparison_without_relative_intensity_loads() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/study/comparison.json"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let now: Comparison = serde_json::from_str(&text).unwrap();
        let names: Vec<Metric> = now.metrics.iter().map(|s| s.metric).collect();
        assert_eq!(names, Metric::ALL);

        let mut old: Value = serde_json::from_str(&text).unwrap();
        strip(&mut old);
        assert!(!old.to_string().contains("relative_intensity"));
        let old: Comparison = serde_json::from_value(old).unwrap();
        assert_eq!(old.metrics.len(), Metric::ALL.len() - 1);
        assert!(old
            .metrics
            .iter()
            .all(|s| s.metric != Metric::RelativeIntensity));
        for v in &old.mean_vectors {
            assert_eq!(
                (v.base.relative_intensity, v.tuned.relative_intensity),
                (0.0, 0.0)
            );
        }
        assert_eq!(
            old.mean_vectors[0].base.intensity,
            now.mean_vectors[0].base.intensity
        );
    }
}
