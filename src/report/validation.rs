//! Is the circuit real? (method.md §7) The check of EAP on the models at hand: exact effects of
//! each chosen sample's top and random edges (every edge, on a small graph), faithfulness
//! curves, and the verdict of the exact effects on each headline conclusion (method.md §8).
//!
//! ```text
//! RUN/exact/NNNNNN.json   one model's exact effects and faithfulness curve on sample NNNNNN,
//!                         written as each sample completes (an interrupted run resumes)
//! RUN/validation.json     (`score`) the run's agreement and curves
//! comparison.json         (`study`) `validation`: both runs', the verdict on each headline
//!                         conclusion, and k50/k80/k90, CPR and CMD paired
//! ```

use super::run::{Run, RunError, ScoreSample};
pub use super::verdict::{EdgeScope, Robustness, Verdict};
use crate::attribution::compare::{adjust, paired, CompareOptions, PairedStat};
use crate::attribution::exact::{
    by_magnitude, chosen_edges, curve_grid, Ablation, AblationError, Agreement, Area, Curve,
    EdgeEffect, EdgeSet, ExactOptions, Reach,
};
use crate::attribution::metrics::{metrics, Metric, MetricOptions};
use crate::fsutil::write_atomic;
use crate::model::Model;
use crate::progress::{CancelToken, Progress};
use crate::side::PerSide;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// How many scored samples get exact effects: all of them, or a seeded sample of a number
/// (0: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleCount {
    All,
    Count(usize),
}

impl std::fmt::Display for SampleCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::All => f.write_str("all"),
            Self::Count(n) => write!(f, "{n}"),
        }
    }
}

impl std::str::FromStr for SampleCount {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(Self::All),
            n => n
                .parse()
                .map(Self::Count)
                .map_err(|_| format!("'{s}': expected a number of samples or `all`")),
        }
    }
}

impl Serialize for SampleCount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::All => s.serialize_str("all"),
            Self::Count(n) => s.serialize_u64(*n as u64),
        }
    }
}

impl<'de> Deserialize<'de> for SampleCount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(usize),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Count(n) => Ok(Self::Count(n)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// The check's settings: which samples, which edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExactConfig {
    pub samples: SampleCount,
    #[serde(flatten)]
    pub options: ExactOptions,
}

impl Default for ExactConfig {
    /// A study's default: a seeded 20 of the paired samples, 32 top and 32 random edges each.
    fn default() -> Self {
        Self {
            samples: SampleCount::Count(20),
            options: ExactOptions::default(),
        }
    }
}

impl ExactConfig {
    /// The indices (ascending) of the samples of `n` that get exact effects: all, or a sample
    /// drawn with the options' seed (the same for both models of a study).
    pub fn chosen(&self, n: usize) -> Vec<usize> {
        let count = match self.samples {
            SampleCount::All => n,
            SampleCount::Count(c) => c.min(n),
        };
        if count == n {
            return (0..n).collect();
        }
        let mut rng = StdRng::seed_from_u64(self.options.seed);
        let mut picked = rand::seq::index::sample(&mut rng, n, count).into_vec();
        picked.sort_unstable();
        picked
    }
}

/// One model's exact effects and faithfulness curve on one sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleCheck {
    /// The sample's index in the run.
    pub index: usize,
    pub id: String,
    pub options: ExactOptions,
    pub effects: Vec<EdgeEffect>,
    pub curve: Curve,
}

impl SampleCheck {
    fn edges(&self) -> Vec<((usize, usize), EdgeSet)> {
        self.effects
            .iter()
            .map(|e| ((e.source, e.destination), e.set))
            .collect()
    }

    /// Whether every real edge of the graph got its exact effect (the curve's last circuit
    /// holds every real edge).
    pub fn covers_all(&self) -> bool {
        self.curve.edges.last() == Some(&self.effects.len())
    }

    /// (EAP, exact) of the edges chosen for this model: every edge when the check covers
    /// all, else its own top edges and the random ones.
    fn own_pairs(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        let all = self.covers_all();
        self.effects
            .iter()
            .filter(move |e| all || e.set != EdgeSet::OtherTop)
            .map(|e| (e.eap, e.exact))
    }

    /// The effects a verdict is judged on: every edge when the check covers all, else the
    /// union of both models' top edges.
    fn scoped(&self) -> impl Iterator<Item = &EdgeEffect> + '_ {
        let all = self.covers_all();
        self.effects
            .iter()
            .filter(move |e| all || matches!(e.set, EdgeSet::Top | EdgeSet::OtherTop))
    }
}

/// A sample's check as its file holds it: the check's fields and the SHA-256 of the check's
/// compact JSON, which a resumed run verifies before it reuses the file.
#[derive(Serialize, Deserialize)]
struct CheckFile {
    #[serde(flatten)]
    check: SampleCheck,
    sha256: String,
}

impl CheckFile {
    fn of(check: &SampleCheck) -> Result<Self, serde_json::Error> {
        let bytes = serde_json::to_vec(check)?;
        Ok(Self {
            check: check.clone(),
            sha256: format!("{:x}", Sha256::digest(&bytes)),
        })
    }
}

/// The check in the file at `path` when it holds one whose checksum matches; a file that does not
/// (damaged, or of an older format) is reported with a warning (a progress note), to be
/// recomputed. `None` too when there is no file.
fn read_check(path: &Path, progress: &mut dyn Progress) -> Option<SampleCheck> {
    let bytes = std::fs::read(path).ok()?;
    let defect = match serde_json::from_slice::<CheckFile>(&bytes) {
        Ok(file) => match CheckFile::of(&file.check) {
            Ok(fresh) if fresh.sha256 == file.sha256 => return Some(file.check),
            Ok(_) => "checksum mismatch (damaged)".to_owned(),
            Err(e) => e.to_string(),
        },
        Err(e) => format!("not an exact-effect file ({e})"),
    };
    progress.note(&format!(
        "warning: {}: {defect}; recomputing",
        path.display()
    ));
    None
}

/// Where sample `index`'s check of a run lives.
pub fn sample_path(run_dir: &Path, index: usize) -> PathBuf {
    run_dir.join("exact").join(format!("{index:06}.json"))
}

/// The top edges by |S| of sample `index` of `run`.
fn top_edges(run: &Run, index: usize, k: usize) -> Vec<(usize, usize)> {
    let mut ranked = by_magnitude(&run.manifest.graph, &run.scores[index].dense);
    ranked.truncate(k);
    ranked
}

/// Check the samples `chosen` of `run` (scored by `model` on `samples`): exact effects of each
/// sample's top edges, of `other`'s top edges on the same sample when given (a study measures
/// both models on the union), and of a seeded random sample of the rest, and the sample's
/// faithfulness curve. Files already written with the same edges are read back; `None` when
/// cancelled.
#[allow(clippy::too_many_arguments)]
pub fn check_run(
    stage: &str,
    model: &Model,
    run: &Run,
    other: Option<&Run>,
    samples: &[ScoreSample],
    chosen: &[usize],
    opts: &ExactOptions,
    progress: &mut dyn Progress,
    cancel: &CancelToken,
) -> Result<Option<Vec<SampleCheck>>, RunError> {
    let graph = &run.manifest.graph;
    progress.start(stage, chosen.len() as u64);
    let mut out = Vec::with_capacity(chosen.len());
    for (done, &i) in chosen.iter().enumerate() {
        let id = &run.manifest.samples[i].id;
        let others = match other {
            Some(o) => {
                let j = o
                    .manifest
                    .samples
                    .iter()
                    .position(|s| s.id == *id)
                    .ok_or_else(|| RunError::Invalid {
                        path: o.dir.clone(),
                        message: format!("no sample `{id}` to pair with {}", run.dir.display()),
                    })?;
                top_edges(o, j, opts.top)
            }
            None => Vec::new(),
        };
        let top = top_edges(run, i, opts.top);
        let seed = opts.seed.wrapping_add(i as u64);
        let edges = chosen_edges(graph, &top, &others, opts.others(graph), seed);
        let path = sample_path(&run.dir, i);
        let grid = curve_grid(graph.num_edges());
        let kept = read_check(&path, progress).filter(|c| {
            c.options == *opts && c.id == *id && c.edges() == edges && c.curve.edges == grid
        });
        let check = match kept {
            Some(c) => c,
            None => {
                if cancel.is_cancelled() {
                    return Ok(None);
                }
                let s = &samples[i];
                let dense = &run.scores[i].dense;
                let ablation = Ablation::new(
                    model,
                    graph,
                    id,
                    (&s.prompt_ids, &s.answer_ids),
                    run.manifest.method.cut,
                    opts.batch,
                )?
                .cancelled_by(cancel);
                let measured = ablation
                    .effects(dense, &edges)
                    .and_then(|effects| Ok((effects, ablation.faithfulness(dense)?)));
                let (effects, curve) = match measured {
                    Ok(m) => m,
                    Err(AblationError::Cancelled) => return Ok(None),
                    Err(AblationError::Tensor(e)) => return Err(e.into()),
                };
                let check = SampleCheck {
                    index: i,
                    id: id.clone(),
                    options: *opts,
                    effects,
                    curve,
                };
                let file = CheckFile::of(&check).map_err(|e| RunError::Invalid {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                write_json(&path, &file)?;
                check
            }
        };
        out.push(check);
        progress.set(done as u64 + 1);
    }
    Ok(Some(out))
}

/// Write a run's check to `RUN/validation.json`.
pub fn write_run_check(run_dir: &Path, check: &RunCheck) -> Result<(), RunError> {
    write_json(&run_dir.join("validation.json"), check)
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), RunError> {
    let io = |source| RunError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let json = serde_json::to_vec_pretty(value).map_err(|e| RunError::Invalid {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    write_atomic(path, &json).map_err(io)
}

/// One model's check over its chosen samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunCheck {
    /// The checked samples' ids.
    pub samples: Vec<String>,
    /// EAP vs exact over every sample's top and random edges (every edge, when the check
    /// covers all), pooled.
    pub agreement: Agreement,
    /// Over the top edges only, and over the other edges only (random, or all the rest).
    pub agreement_top: Agreement,
    pub agreement_random: Agreement,
    /// Per sample, over its top and random edges (or every edge).
    pub per_sample: Vec<Agreement>,
    /// (EAP, exact) of every pooled top edge, and of every other edge (random, or all the
    /// rest): the scatter.
    pub top: Vec<(f64, f64)>,
    pub random: Vec<(f64, f64)>,
    /// Each sample's faithfulness curve.
    pub curves: Vec<Curve>,
}

impl RunCheck {
    pub fn of(checks: &[SampleCheck]) -> Self {
        let of_sets = |sets: &[EdgeSet]| -> Vec<(f64, f64)> {
            checks
                .iter()
                .flat_map(|c| c.effects.iter())
                .filter(|e| sets.contains(&e.set))
                .map(|e| (e.eap, e.exact))
                .collect()
        };
        let top = of_sets(&[EdgeSet::Top]);
        let random = of_sets(&[EdgeSet::Random, EdgeSet::Rest]);
        let pooled: Vec<(f64, f64)> = checks.iter().flat_map(SampleCheck::own_pairs).collect();
        Self {
            samples: checks.iter().map(|c| c.id.clone()).collect(),
            agreement: Agreement::of(&pooled),
            agreement_top: Agreement::of(&top),
            agreement_random: Agreement::of(&random),
            per_sample: checks
                .iter()
                .map(|c| Agreement::of(&c.own_pairs().collect::<Vec<_>>()))
                .collect(),
            top,
            random,
            curves: checks.iter().map(|c| c.curve.clone()).collect(),
        }
    }

    /// Each sample's circuit size reaching `reach`.
    pub fn reach(&self, reach: Reach) -> Vec<f64> {
        self.curves
            .iter()
            .map(|c| c.edges_to(reach) as f64)
            .collect()
    }

    /// Each sample's `area` (CPR or CMD); `None` when a curve lacks the sizes it needs.
    pub fn area(&self, area: Area) -> Option<Vec<f64>> {
        self.curves.iter().map(|c| c.area(area)).collect()
    }
}

/// The agreement in one line.
fn agreement_line(a: &Agreement, samples: usize) -> String {
    let corr = |v: Option<f64>| v.map_or("—".to_owned(), |v| format!("{v:.2}"));
    format!(
        "Pearson {}, Spearman {}, same sign {:.0} %, median |S − ΔL| / |ΔL| {} ({} edges of {samples} samples)",
        corr(a.pearson),
        corr(a.spearman),
        100.0 * a.sign_agreement,
        a.median_relative_error
            .map_or("—".to_owned(), |v| format!("{:.0} %", 100.0 * v)),
        a.n,
    )
}

impl RunCheck {
    /// One line: the agreement in brief.
    pub fn line(&self) -> String {
        agreement_line(&self.agreement, self.samples.len())
    }
}

/// The study's check of EAP on its pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    pub options: ExactOptions,
    pub runs: PerSide<RunCheck>,
    /// The edges the verdicts' metrics are computed over.
    pub scope: EdgeScope,
    /// EAP vs exact over the verdicts' edges, pooled over the checked questions, per model.
    pub scope_agreement: PerSide<Agreement>,
    /// The significance level the verdicts read adjusted p-values against.
    pub significance_level: f64,
    /// The family EAP's p-values of the verdicts are adjusted over, in words.
    pub family: String,
    /// The headline metrics over the verdicts' edges, with their verdicts; empty when fewer
    /// than two questions were checked.
    pub robustness: Vec<Robustness>,
    /// k50, k80, k90 paired over the checked questions.
    pub reach: Vec<PairedStat<Reach>>,
    /// CPR and CMD paired over the checked questions (with k50, k80, k90 one family).
    pub areas: Vec<PairedStat<Area>>,
    /// The family the faithfulness summaries' p-values are adjusted over, in words.
    pub faithfulness_family: String,
}

/// The headline metrics over each question's scoped edges, from EAP and from exact effects,
/// with their verdicts; each side's p-values adjusted over the headline metrics.
fn robustness(
    checks: PerSide<&[SampleCheck]>,
    metric_opts: &MetricOptions,
    compare: &CompareOptions,
) -> Vec<Robustness> {
    let value = |c: &SampleCheck, metric: Metric, exact: bool| -> f64 {
        let values: Vec<f32> = c
            .scoped()
            .map(|e| (if exact { e.exact } else { e.eap }) as f32)
            .collect();
        metrics(&values, c.curve.loss_clean, metric_opts).get(metric)
    };
    let family = |exact: bool| -> Vec<PairedStat> {
        let mut stats: Vec<PairedStat> = Metric::HEADLINE
            .into_iter()
            .filter_map(|metric| {
                let [b, t] = [checks.base, checks.tuned].map(|cs| {
                    cs.iter()
                        .map(|c| value(c, metric, exact))
                        .collect::<Vec<_>>()
                });
                paired(metric, &b, &t, compare).ok()
            })
            .collect();
        adjust(&mut stats, compare.correction);
        stats
    };
    let (eap, exact) = (family(false), family(true));
    let level = compare.significance_level();
    eap.into_iter()
        .filter_map(|eap| {
            let exact = exact.iter().find(|x| x.metric == eap.metric)?.clone();
            let (verdict, reason) = Verdict::of(&eap, &exact, level);
            Some(Robustness {
                metric: eap.metric,
                eap,
                exact,
                verdict,
                reason,
            })
        })
        .collect()
}

/// k50, k80, k90 and CPR, CMD paired over the checked questions, their p-values adjusted as
/// one family; the family's size.
fn faithfulness_stats(
    runs: &PerSide<RunCheck>,
    compare: &CompareOptions,
) -> (Vec<PairedStat<Reach>>, Vec<PairedStat<Area>>, usize) {
    let mut reach: Vec<PairedStat<Reach>> = Reach::ALL
        .into_iter()
        .filter_map(|r| paired(r, &runs.base.reach(r), &runs.tuned.reach(r), compare).ok())
        .collect();
    let mut areas: Vec<PairedStat<Area>> = Area::ALL
        .into_iter()
        .filter_map(|a| paired(a, &runs.base.area(a)?, &runs.tuned.area(a)?, compare).ok())
        .collect();
    let raw: Vec<f64> = reach
        .iter()
        .map(|s| s.p_value)
        .chain(areas.iter().map(|s| s.p_value))
        .collect();
    let adjusted = compare.correction.adjust(&raw);
    let slots = reach
        .iter_mut()
        .map(|s| &mut s.p_adjusted)
        .chain(areas.iter_mut().map(|s| &mut s.p_adjusted));
    for (slot, p) in slots.zip(adjusted) {
        *slot = p;
    }
    let size = raw.iter().filter(|p| !p.is_nan()).count();
    (reach, areas, size)
}

impl Validation {
    /// Pair both models' checks of the same questions (same order).
    pub fn of(
        checks: PerSide<&[SampleCheck]>,
        options: ExactOptions,
        metric_opts: &MetricOptions,
        compare: &CompareOptions,
    ) -> Self {
        let runs = checks.map(|_, c| RunCheck::of(c));
        let all = checks.base.first().filter(|c| c.covers_all());
        let scope = match all {
            Some(c) => EdgeScope::All {
                edges: c.effects.len(),
            },
            None => EdgeScope::TopUnion { top: options.top },
        };
        let scope_agreement = checks.map(|_, cs| {
            let pairs: Vec<(f64, f64)> = cs
                .iter()
                .flat_map(|c| c.scoped().map(|e| (e.eap, e.exact)))
                .collect();
            Agreement::of(&pairs)
        });
        let robustness = robustness(checks, metric_opts, compare);
        let (reach, areas, size) = faithfulness_stats(&runs, compare);
        let correction = compare.correction;
        Self {
            options,
            runs,
            scope,
            scope_agreement,
            significance_level: compare.significance_level(),
            family: correction.family(&format!(
                "the {} headline metrics of EAP's scores on these edges and questions",
                robustness.len()
            )),
            robustness,
            reach,
            areas,
            faithfulness_family: correction
                .family(&format!("the {size} faithfulness summaries of this check")),
        }
    }

    /// The check in brief, without its points and curves.
    pub fn brief(&self) -> Brief {
        Brief {
            samples: self.runs.base.samples.len(),
            agreement: self.runs.as_ref().map(|_, r| r.agreement),
            scope: self.scope,
            scope_agreement: self.scope_agreement,
            significance_level: self.significance_level,
            family: self.family.clone(),
            robustness: self.robustness.clone(),
            reach: self.reach.clone(),
            areas: self.areas.clone(),
            faithfulness_family: self.faithfulness_family.clone(),
        }
    }
}

/// A study's check in brief (the demo's summary): agreement, verdicts, faithfulness levels
/// and summaries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Brief {
    /// Questions checked.
    pub samples: usize,
    pub agreement: PerSide<Agreement>,
    pub scope: EdgeScope,
    pub scope_agreement: PerSide<Agreement>,
    pub significance_level: f64,
    pub family: String,
    pub robustness: Vec<Robustness>,
    pub reach: Vec<PairedStat<Reach>>,
    pub areas: Vec<PairedStat<Area>>,
    pub faithfulness_family: String,
}

/// Pearson, Spearman and the same-sign share, in a few words.
fn correlations(a: &Agreement) -> String {
    let corr = |v: Option<f64>| v.map_or("—".to_owned(), |v| format!("{v:.2}"));
    format!(
        "Pearson {}, Spearman {}, same sign {:.0} %",
        corr(a.pearson),
        corr(a.spearman),
        100.0 * a.sign_agreement
    )
}

impl Brief {
    /// The verdicts' heading: the edges, the questions, the agreement there and the family.
    pub fn verdicts_heading(&self) -> String {
        let agreement: Vec<String> = self
            .scope_agreement
            .iter()
            .map(|(side, a)| format!("{side} {}", correlations(a)))
            .collect();
        format!(
            "Verdicts on {} over {} checked questions (EAP against the exact effects on these \
             edges: {}); EAP's p adjusted by {}, significance level {}",
            self.scope,
            self.samples,
            agreement.join("; "),
            self.family,
            self.significance_level
        )
    }

    /// The check in a few lines of text (the CLI's summary and the demo's).
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .agreement
            .iter()
            .map(|(side, a)| {
                format!(
                    "EAP vs exact effects, {side}: {}",
                    agreement_line(a, self.samples)
                )
            })
            .collect();
        if !self.robustness.is_empty() {
            out.push(self.verdicts_heading());
            out.extend(self.robustness.iter().map(|r| {
                format!(
                    "{} on {}, {} questions: {} ({})",
                    r.metric, self.scope, r.eap.n, r.verdict, r.reason
                )
            }));
        }
        let paired = |name: String, s: (f64, f64, f64, f64)| {
            format!(
                "{name} {} vs {} (p = {}, adjusted p = {})",
                crate::report::table::Cell::Value(s.0).text(),
                crate::report::table::Cell::Value(s.1).text(),
                crate::report::table::Cell::P(s.2).text(),
                crate::report::table::Cell::AdjustedP(s.3).text()
            )
        };
        let parts: Vec<String> = self
            .reach
            .iter()
            .map(|r| paired(r.metric.to_string(), summary(r)))
            .chain(
                self.areas
                    .iter()
                    .map(|a| paired(a.metric.to_string(), summary(a))),
            )
            .collect();
        if !parts.is_empty() {
            out.push(format!(
                "Edges for faithfulness, base vs tuned: {}; adjusted by {}",
                parts.join(", "),
                self.faithfulness_family
            ));
        }
        out
    }
}

/// Base mean, tuned mean, p and adjusted p of a paired statistic.
fn summary<M>(s: &PairedStat<M>) -> (f64, f64, f64, f64) {
    (s.base_mean, s.tuned_mean, s.p_value, s.p_adjusted)
}
