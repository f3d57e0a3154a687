//! The embedded default: the study on the demo zoo's three pairs (base → GRPO, base → PPO,
//! base → DPO) on the held-out built-in task, a summary of how intensity, entropy and
//! kurtosis moved under each algorithm, and the GRPO run's trajectory along its checkpoints.

pub use super::demo_dir::{DemoDir, PAIRS, REAL, TRAJECTORY};
use super::demo_real;
use super::dir::{Counts, Discordant, StudyConfig, StudyDir};
use super::job::{run_study, StudyError, StudyOutcome};
use super::ladder::Rung;
use super::trajectory::{run_trajectory, TrajectoryOutcome};
use super::trajectory_dir::TrajectoryConfig;
use crate::attribution::compare::{CompareOptions, PairedStat};
use crate::attribution::metrics::Metric;
use crate::model::LoadOptions;
use crate::progress::{CancelToken, Progress};
use crate::report::comparison::Comparison;
use crate::report::saturation::Saturation;
use crate::report::span::ScoredSpan;
use crate::report::table::{Cell, Table};
use crate::report::train_log::LogSource;
use crate::report::trajectory::{AnswerSource, QuestionSet};
use crate::report::validation::{Brief, SampleCount, Validation};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// α of the demo: the whole answer (K = ⌊0.99 · T̄⌋, about 24 of the zoo's 25-token answers).
/// The first tokens copy the question's operands, and a model is nearly certain of them: with
/// only those (the study's α = 0.05 scores one token; 0.25 scores six) almost every sample is
/// saturated (method.md §7), while the sums it works out keep the loss of whole answers above
/// the threshold.
pub const ALPHA: f64 = 0.99;

/// The study of the pair base → `tuned` of the zoo in `zoo`.
pub fn config(zoo: &Path, tuned: &str) -> StudyConfig {
    let spec = |name: &str| {
        crate::assets::display_path(&zoo.join(name))
            .display()
            .to_string()
    };
    let mut cfg = StudyConfig::new(spec("base"), spec(tuned));
    cfg.generation.max_new_tokens = 40;
    cfg.select.alpha = ALPHA;
    cfg.batch = 32;
    cfg
}

/// The demo's trajectory: the pair's study settings along the zoo's ladder of `tuned` (the
/// base, the kept checkpoints, the final model), each checkpoint scored on its own answers.
pub fn trajectory_config(zoo: &Path, tuned: &str) -> Result<TrajectoryConfig, StudyError> {
    let found =
        super::ladder::discover(&[zoo.join(tuned).display().to_string()], None, None, None)?;
    let shown = |p: &str| {
        crate::assets::display_path(Path::new(p))
            .display()
            .to_string()
    };
    let checkpoints = found
        .rungs
        .into_iter()
        .map(|r| Rung {
            spec: shown(&r.spec),
            ..r
        })
        .collect();
    let train_log = found
        .log
        .map(|l| LogSource::LabCsv(crate::assets::display_path(l.path())));
    let mut study = config(zoo, tuned);
    study.exact.samples = SampleCount::Count(0);
    Ok(TrajectoryConfig {
        checkpoints,
        answers: AnswerSource::Own,
        questions: QuestionSet::Ends,
        train_log,
        shard: None,
        study,
    })
}

/// One pair's headline: accuracies and the paired statistics of [`Metric::HEADLINE`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairSummary {
    pub tuned: String,
    pub base_accuracy: f64,
    pub tuned_accuracy: f64,
    /// The questions both accuracies are over (0 in summaries written before it was recorded).
    #[serde(default)]
    pub asked: usize,
    /// The questions exactly one model got right, for McNemar's test of the accuracy change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discordant: Option<Discordant>,
    pub n: usize,
    pub k: usize,
    pub stats: Vec<PairedStat>,
    /// Both models' losses and the saturated share of their samples.
    #[serde(default)]
    pub saturation: Option<Saturation>,
    /// The family the stats' adjusted p-values are corrected over (all the comparison's
    /// metrics, not only these), in words; empty in summaries written before it existed.
    #[serde(default)]
    pub family: String,
    /// The check of EAP against exact effects, in brief.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<Brief>,
    /// The answer tokens scored: K, T̄ and how K was chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span: Option<ScoredSpan>,
}

/// Where `demo` takes the real pair's results (demo_dir::REAL) from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RealSource {
    /// Recompute its study and trajectory from the zoo's adapters and this base model file.
    Recompute(PathBuf),
    /// Copy the shipped results from this demo folder (none when it holds none).
    Shipped(PathBuf),
}

/// Run the three studies into `out/<pair>/` (each resumable), the zoo's GRPO trajectory, and
/// the real pair as `real` says, and write `out/summary.md` and `out/summary.json`. `None`
/// when cancelled.
pub fn run_demo(
    zoo: &Path,
    out: &Path,
    real: &RealSource,
    progress: &mut dyn Progress,
    cancel: &CancelToken,
) -> Result<Option<Vec<PairSummary>>, StudyError> {
    // The root's own files (the summaries) are this run's too: a second demo is refused at once.
    let _lock = crate::lock::DirLock::acquire(out)?;
    let mut summaries: Vec<PairSummary> = real_pair(zoo, out, real, progress, cancel)?
        .into_iter()
        .collect();
    if cancel.is_cancelled() {
        return Ok(None);
    }
    for tuned in PAIRS {
        progress.note(&format!("study: base → {tuned}"));
        let outcome = run_study(
            &config(zoo, tuned),
            &LoadOptions::default(),
            &DemoDir::new(out).study_dir(tuned),
            progress,
            cancel,
        )?;
        let StudyOutcome::Finished(result) = outcome else {
            return Ok(None);
        };
        summaries.push(summary(tuned, &result.0, &result.1));
    }
    let (tuned, _) = TRAJECTORY;
    progress.note(&format!("trajectory: base → {tuned} along its checkpoints"));
    let outcome = run_trajectory(
        &trajectory_config(zoo, tuned)?,
        &LoadOptions::default(),
        &DemoDir::new(out).trajectory_dir(),
        progress,
        cancel,
    )?;
    if !matches!(outcome, TrajectoryOutcome::Finished(_)) {
        return Ok(None);
    }
    let demo = DemoDir::new(out);
    super::dir::write_json(&demo.summary_path(), &summaries)?;
    super::dir::write_text(&demo.summary_md_path(), &render(&summaries))?;
    Ok(Some(summaries))
}

/// The real pair's study and trajectory, recomputed or copied; its summary, `None` when
/// nothing was shipped or when cancelled.
fn real_pair(
    zoo: &Path,
    out: &Path,
    real: &RealSource,
    progress: &mut dyn Progress,
    cancel: &CancelToken,
) -> Result<Option<PairSummary>, StudyError> {
    let demo = DemoDir::new(out);
    let study = StudyDir::new(demo.real_study_dir());
    match real {
        RealSource::Recompute(base) => {
            progress.note(&format!("study: {} → its GRPO fine-tune", base.display()));
            let outcome = run_study(
                &demo_real::config(zoo, base)?,
                &LoadOptions::default(),
                study.root(),
                progress,
                cancel,
            )?;
            let StudyOutcome::Finished(result) = outcome else {
                return Ok(None);
            };
            progress.note("trajectory: the GRPO fine-tune along its checkpoints");
            let outcome = run_trajectory(
                &demo_real::trajectory_config(zoo, base)?,
                &LoadOptions::default(),
                &demo.real_trajectory_dir(),
                progress,
                cancel,
            )?;
            Ok(matches!(outcome, TrajectoryOutcome::Finished(_))
                .then(|| summary(REAL.name, &result.0, &result.1)))
        }
        RealSource::Shipped(shipped) => {
            if !demo_real::copy_shipped(shipped, out)? {
                return Ok(None);
            }
            progress.note(&format!(
                "{}: the shipped results (to recompute them, {})",
                REAL.name,
                demo_real::recompute_hint()
            ));
            let (Some(cmp), Some(counts)) = (study.read_comparison()?, study.read_counts()?) else {
                return Ok(None);
            };
            Ok(Some(summary(REAL.name, &cmp, &counts)))
        }
    }
}

/// One pair's summary from its study's comparison and counts.
fn summary(tuned: &str, cmp: &Comparison, counts: &Counts) -> PairSummary {
    let acc = |c: usize| c as f64 / counts.asked.max(1) as f64;
    PairSummary {
        tuned: tuned.to_owned(),
        base_accuracy: acc(counts.models.base.correct),
        tuned_accuracy: acc(counts.models.tuned.correct),
        asked: counts.asked,
        discordant: counts.discordant,
        n: cmp.n,
        k: counts.k,
        stats: headline(cmp),
        family: cmp.family.clone(),
        check: cmp.validation.as_ref().map(Validation::brief),
        saturation: cmp.saturation,
        span: cmp.span,
    }
}

/// The scored span's line and its warning, when the summary records them.
fn span_lines(s: &mut String, span: Option<&ScoredSpan>) {
    if let Some(span) = span {
        let _ = writeln!(s, "Scored: {}.\n", span.describe());
        if let Some(w) = span.warning() {
            let _ = writeln!(s, "> **Warning**: {w}.\n");
        }
    }
}

fn headline(cmp: &Comparison) -> Vec<PairedStat> {
    Metric::HEADLINE
        .iter()
        .filter_map(|&metric| cmp.metrics.iter().find(|m| m.metric == metric).cloned())
        .collect()
}

/// How a metric moved: up or down when its adjusted p is below the significance level of the
/// demo's comparisons, else unchanged.
fn change(s: &PairedStat) -> &'static str {
    let significant = s.p_adjusted < CompareOptions::default().significance_level();
    match (significant, s.mean_diff > 0.0) {
        (false, _) => "no significant change",
        (true, true) => "rose",
        (true, false) => "fell",
    }
}

/// `summary.md`: per pair, accuracies, how each headline metric moved, and links to the pair's
/// figures and report.
pub fn render(summaries: &[PairSummary]) -> String {
    let mut s = String::from(
        "# circuitdiff demo: what each fine-tune changed\n\n\
         Block-level edge attribution, each fine-tune against its base, paired over the \
         questions both models answered correctly: a real language model (SmolLM2-135M-Instruct \
         and its GRPO LoRA fine-tune on two-number sums, `smollm2_grpo`) and the demo zoo's toy \
         pairs on the held-out built-in task (`builtin:arith`). p: two-sided Wilcoxon \
         signed-rank; adjusted p: corrected for multiple comparisons over all the metrics of \
         each comparison (named under each table); a change is read from the adjusted p at the \
         significance level 0.05; CI: bootstrap 95 % interval of the mean difference; accuracy: \
         exact McNemar test of the paired grades.\n",
    );
    for p in summaries {
        let title = if p.tuned == REAL.name {
            "SmolLM2-135M-Instruct → GRPO (LoRA)".to_owned()
        } else {
            format!("base → {}", p.tuned)
        };
        let mcnemar = p
            .discordant
            .map(|d| format!(" on {} questions ({})", p.asked, d.words()))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "\n## {title}\n\nAccuracy {:.1} % → {:.1} %{mcnemar}; {} paired questions, K = {}.\n",
            100.0 * p.base_accuracy,
            100.0 * p.tuned_accuracy,
            p.n,
            p.k
        );
        span_lines(&mut s, p.span.as_ref());
        let mut table = Table::paired(&p.stats);
        let changes = p.stats.iter().map(|m| Cell::Text(change(m).into()));
        table.push_column("change (adjusted p)", changes);
        s.push_str(&table.markdown());
        if !p.family.is_empty() {
            let _ = writeln!(s, "\nAdjusted p: {}.", p.family);
        }
        if let Some(sat) = &p.saturation {
            let _ = writeln!(s, "\n{}.", sat.line());
            if let Some(w) = sat.warning() {
                let _ = writeln!(s, "\n> **Warning**: {w}.");
            }
        }
        if let Some(check) = &p.check {
            s.push('\n');
            for line in check.lines() {
                let _ = writeln!(s, "- {line}.");
            }
        }
        let figures = format!("{}/figures", p.tuned);
        let _ = writeln!(
            s,
            "\n![circuit graph, tuned − base]({figures}/circuit_difference.png)\n\n\
             Figures: circuit graph of [base]({figures}/circuit_base.svg), \
             [tuned]({figures}/circuit_tuned.svg) and \
             [tuned − base]({figures}/circuit_difference.svg); \
             [mean-score heatmaps]({figures}/heatmap.svg); all of them in [{}/report.md]({}/report.md).",
            p.tuned, p.tuned
        );
    }
    if summaries.iter().any(|p| p.tuned == REAL.name) {
        let folder = REAL.trajectory;
        let _ = writeln!(
            s,
            "\n## SmolLM2-135M-Instruct → GRPO, checkpoint by checkpoint\n\n\
             The real pair's study along the run's kept checkpoints beside its reward and \
             held-out accuracy: [{folder}/report.md]({folder}/report.md).\n\n\
             ![entropy over training]({folder}/figures/trajectory_entropy.png)"
        );
    }
    let (tuned, folder) = TRAJECTORY;
    let _ = writeln!(
        s,
        "\n## base → {tuned}, checkpoint by checkpoint\n\n\
         The same study along the {tuned} run's kept checkpoints, one fixed question set (those \
         the base and the final model both answer correctly) scored at every step beside the \
         trainer's reward: [{folder}/report.md]({folder}/report.md).\n\n\
         ![entropy over training]({folder}/figures/trajectory_entropy.png)"
    );
    s
}
